package sas

import (
	"fmt"
	"strings"
)

// ConnectionString is a parsed IoT Hub connection string, either a hub's
// (HostName, SharedAccessKeyName, SharedAccessKey) or a device's or module's
// (HostName, DeviceId[, ModuleId], SharedAccessKey or x509=true).
type ConnectionString struct {
	HostName, DeviceID, ModuleID, SharedAccessKeyName, SharedAccessKey, GatewayHostName string
	X509                                                                                bool
}

// connKeys lists the keys in the order Azure prints them.
var connKeys = [...]string{"HostName", "DeviceId", "ModuleId", "SharedAccessKeyName", "SharedAccessKey", "GatewayHostName", "x509"}

// field returns a pointer to the string field for connKeys[i] (i < 6).
func (c *ConnectionString) field(i int) *string {
	switch i {
	case 0:
		return &c.HostName
	case 1:
		return &c.DeviceID
	case 2:
		return &c.ModuleID
	case 3:
		return &c.SharedAccessKeyName
	case 4:
		return &c.SharedAccessKey
	case 5:
		return &c.GatewayHostName
	}
	return nil
}

// ParseConnectionString parses "Key=value;Key=value". Keys are those of
// connKeys, matched case-insensitively as users retype them ("DeviceID",
// "X509"); a value runs to the next ";" and may contain "=" (base64 padding).
// Spaces around keys and values and empty segments (a trailing ";") are
// ignored. The result must make sense: a HostName, and either
//   - x509=true with a DeviceId (and no SharedAccessKey), or
//   - a SharedAccessKey in base64 with a DeviceId and/or SharedAccessKeyName;
//
// a ModuleId needs a DeviceId. Errors wrap ErrMalformed (ErrBadKey for a key
// that is not base64) and never quote a value.
func ParseConnectionString(s string) (ConnectionString, error) {
	var (
		c    ConnectionString
		seen [len(connKeys)]bool
	)
	for part := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return ConnectionString{}, fmt.Errorf("%w: connection string segment is not Key=value", ErrMalformed)
		}
		idx := -1
		for i, name := range connKeys {
			if asciiEqualFold(k, name) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return ConnectionString{}, fmt.Errorf("%w: unknown connection string key %q (want one of %s)",
				ErrMalformed, truncate(k, 32), strings.Join(connKeys[:], ", "))
		}
		name := connKeys[idx]
		if seen[idx] {
			return ConnectionString{}, fmt.Errorf("%w: connection string has %s twice", ErrMalformed, name)
		}
		seen[idx] = true
		if v == "" {
			return ConnectionString{}, fmt.Errorf("%w: connection string has an empty %s", ErrMalformed, name)
		}
		if idx == len(connKeys)-1 {
			switch {
			case asciiEqualFold(v, "true"):
				c.X509 = true
			case asciiEqualFold(v, "false"):
			default:
				return ConnectionString{}, fmt.Errorf("%w: connection string x509 must be true or false", ErrMalformed)
			}
			continue
		}
		*c.field(idx) = v
	}
	if err := c.validate(); err != nil {
		return ConnectionString{}, err
	}
	return c, nil
}

func (c ConnectionString) validate() error {
	switch {
	case c.HostName == "":
		return fmt.Errorf("%w: connection string lacks HostName", ErrMalformed)
	case c.ModuleID != "" && c.DeviceID == "":
		return fmt.Errorf("%w: connection string has ModuleId but no DeviceId", ErrMalformed)
	case c.X509 && c.DeviceID == "":
		return fmt.Errorf("%w: connection string has x509=true but no DeviceId", ErrMalformed)
	case c.X509 && (c.SharedAccessKey != "" || c.SharedAccessKeyName != ""):
		return fmt.Errorf("%w: connection string has both x509=true and a shared access key", ErrMalformed)
	case c.X509:
		return nil
	case c.SharedAccessKey == "":
		return fmt.Errorf("%w: connection string lacks SharedAccessKey (or x509=true)", ErrMalformed)
	case c.DeviceID == "" && c.SharedAccessKeyName == "":
		return fmt.Errorf("%w: connection string has neither DeviceId nor SharedAccessKeyName", ErrMalformed)
	}
	if _, err := decodeKey(c.SharedAccessKey); err != nil {
		return fmt.Errorf("%w (SharedAccessKey in connection string)", err)
	}
	return nil
}

// String returns the connection string in the order Azure prints it
// (HostName;DeviceId;ModuleId;SharedAccessKeyName;SharedAccessKey;
// GatewayHostName;x509=true), omitting empty fields. It contains the key:
// print it for a user who asked for it, never into a log.
func (c ConnectionString) String() string {
	var b strings.Builder
	for i, name := range connKeys[:len(connKeys)-1] {
		v := *c.field(i)
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(v)
	}
	if c.X509 {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString("x509=true")
	}
	return b.String()
}
