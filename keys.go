package twinhub

import (
	"fmt"
	"strconv"
	"strings"
)

// NATS KV keys and subjects allow only A-Z a-z 0-9 - _ / = and '.' as a
// separator, while device and module ids may also hold + % # * ? ! ( ) ,
// : = @ $ ' and '.'. EncodeID keeps letters, digits, '-' and '_' and writes
// every other byte as '=' and two hex digits, so that ids stay readable,
// case-sensitive and one token long.
func EncodeID(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

// DecodeID reverses EncodeID.
func DecodeID(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		c, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), nil
}

// EncodeKey is the store key and subject token of an identity: the device,
// or the device and module joined by '.'.
func EncodeKey(k Key) string {
	if k.ModuleID == "" {
		return EncodeID(k.DeviceID)
	}
	return EncodeID(k.DeviceID) + "." + EncodeID(k.ModuleID)
}

// DecodeKey reverses EncodeKey.
func DecodeKey(s string) (Key, error) {
	dev, mod, hasModule := strings.Cut(s, ".")
	d, err := DecodeID(dev)
	if err != nil {
		return Key{}, err
	}
	if !hasModule {
		return DeviceKey(d), nil
	}
	m, err := DecodeID(mod)
	if err != nil {
		return Key{}, err
	}
	return ModuleKey(d, m), nil
}
