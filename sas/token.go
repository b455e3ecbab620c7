// Package sas implements the shared access signature (SAS) tokens, connection
// strings and shared access policies of Azure IoT Hub, so that tokens minted
// by the official Azure IoT SDKs verify against twinhub unchanged.
//
// A token looks like
//
//	SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded signature>&se=<expiry>[&skn=<policy>]
//
// and its signature is base64(HMAC-SHA256(base64-decode(key), sr + "\n" + se)),
// where sr is the resource as the client URL-encoded it.
//
// Secrets (keys, signatures, whole tokens) never appear in the errors of this
// package, so callers may log them.
package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so that a transport can map them to a status code (all of them are a
// 401 or a CONNACK refusal to a client) with errors.Is.
var (
	// ErrMalformed: a token or connection string that cannot be parsed.
	ErrMalformed = errors.New("sas: malformed")
	// ErrExpired: the token's se is not in the future.
	ErrExpired = errors.New("sas: token expired")
	// ErrSignature: the signature matches none of the keys.
	ErrSignature = errors.New("sas: signature mismatch")
	// ErrUnknownPolicy: the token names no policy (skn), or one that does not exist.
	ErrUnknownPolicy = errors.New("sas: unknown shared access policy")
	// ErrResource: the token's resource does not cover the resource accessed.
	ErrResource = errors.New("sas: token resource does not cover the requested resource")
	// ErrBadKey: a key is not valid base64 (or there is no usable key).
	ErrBadKey = errors.New("sas: bad key")
)

// MaxTokenLength is the longest token ParseToken accepts. Real tokens are a
// few hundred bytes; the bound keeps a hostile MQTT password or Authorization
// header from costing more than a little parsing.
const MaxTokenLength = 4096

// tokenPrefix starts every token; the SDKs all write it with one space.
const tokenPrefix = "SharedAccessSignature "

// Token is a parsed SharedAccessSignature.
type Token struct {
	Resource  string    // sr, URL-decoded, e.g. "myhub.example/devices/dev1"
	Signature string    // sig, URL-decoded base64
	Expiry    time.Time // se
	KeyName   string    // skn, "" for device tokens

	// rawResource and rawExpiry are sr and se exactly as they appeared in the
	// token. The signature covers these bytes, not a re-encoding of Resource:
	// the SDKs disagree on how to encode (Node's azure-iothub signs the host
	// unencoded, azure-iot-device escapes !'()* with lower-case hex, Python
	// upper-case, amenzhinsky/iothub double-encodes module resources), and each
	// signs exactly what it sends. They are empty for a Token built by hand, in
	// which case Verify signs the canonical encoding of Resource and Expiry.
	rawResource string
	rawExpiry   string
}

// String returns the token with its signature redacted, so that a Token that
// ends up in a log line or an error (%v) does not leak a usable credential.
func (t Token) String() string {
	b := strings.Builder{}
	b.WriteString(tokenPrefix)
	b.WriteString("sr=")
	b.WriteString(escape(t.Resource))
	b.WriteString("&sig=REDACTED&se=")
	b.WriteString(strconv.FormatInt(t.Expiry.Unix(), 10))
	if t.KeyName != "" {
		b.WriteString("&skn=")
		b.WriteString(escape(t.KeyName))
	}
	return b.String()
}

// GoString is String, so that %#v does not leak the signature either.
func (t Token) GoString() string { return "sas.Token(" + strconv.Quote(t.String()) + ")" }

// encode returns the token string with canonical encoding (as NewToken
// writes it), including the signature.
func (t Token) encode() string {
	s := tokenPrefix + "sr=" + escape(t.Resource) +
		"&sig=" + escape(t.Signature) +
		"&se=" + strconv.FormatInt(t.Expiry.Unix(), 10)
	if t.KeyName != "" {
		s += "&skn=" + escape(t.KeyName)
	}
	return s
}

// ParseToken parses "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]".
// Fields may come in any order (the Node SDK writes skn before se, the others
// after). sr, sig and se are required; a field given twice, an unknown field,
// an empty value, an se that is not a non-negative decimal number of seconds,
// a value that does not URL-decode to printable UTF-8, and input longer than
// MaxTokenLength are errors wrapping ErrMalformed. Values are decoded with
// path semantics: "+" stays "+" (device ids may contain it; no SDK writes a
// space as "+" in a token since ids cannot contain spaces).
func ParseToken(s string) (Token, error) {
	if len(s) > MaxTokenLength {
		return Token{}, fmt.Errorf("%w: token is %d bytes, longer than %d", ErrMalformed, len(s), MaxTokenLength)
	}
	body, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, fmt.Errorf("%w: token does not start with %q", ErrMalformed, tokenPrefix)
	}
	if body == "" {
		return Token{}, fmt.Errorf("%w: token has no fields", ErrMalformed)
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; c <= ' ' || c >= 0x7f {
			return Token{}, fmt.Errorf("%w: token contains a space, control or non-ASCII byte at offset %d", ErrMalformed, len(tokenPrefix)+i)
		}
	}
	var (
		t    Token
		seen [4]bool // sr, sig, se, skn
	)
	for part := range strings.SplitSeq(body, "&") {
		name, raw, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return Token{}, fmt.Errorf("%w: token field is not name=value", ErrMalformed)
		}
		idx := -1
		switch name {
		case "sr":
			idx = 0
		case "sig":
			idx = 1
		case "se":
			idx = 2
		case "skn":
			idx = 3
		default:
			return Token{}, fmt.Errorf("%w: unknown token field %q", ErrMalformed, truncate(name, 16))
		}
		if seen[idx] {
			return Token{}, fmt.Errorf("%w: duplicate token field %q", ErrMalformed, name)
		}
		seen[idx] = true
		if raw == "" {
			return Token{}, fmt.Errorf("%w: token field %q is empty", ErrMalformed, name)
		}
		if idx == 2 {
			sec, err := parseSeconds(raw)
			if err != nil {
				return Token{}, err
			}
			t.Expiry = time.Unix(sec, 0).UTC()
			t.rawExpiry = raw
			continue
		}
		v, err := url.PathUnescape(raw)
		if err != nil {
			// err would quote the offending escape, which for sig is part of a secret.
			return Token{}, fmt.Errorf("%w: token field %q is not URL-encoded correctly", ErrMalformed, name)
		}
		if !printable(v) {
			return Token{}, fmt.Errorf("%w: token field %q decodes to invalid UTF-8 or control characters", ErrMalformed, name)
		}
		switch idx {
		case 0:
			t.Resource, t.rawResource = v, raw
		case 1:
			t.Signature = v
		case 3:
			t.KeyName = v
		}
	}
	for i, name := range [...]string{"sr", "sig", "se"} {
		if !seen[i] {
			return Token{}, fmt.Errorf("%w: token lacks field %q", ErrMalformed, name)
		}
	}
	return t, nil
}

// parseSeconds parses se: plain decimal digits only (strconv alone would also
// take a sign), within int64.
func parseSeconds(raw string) (int64, error) {
	for i := 0; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return 0, fmt.Errorf("%w: token field \"se\" is not a decimal number of seconds", ErrMalformed)
		}
	}
	sec, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: token field \"se\" is out of range", ErrMalformed)
	}
	return sec, nil
}

// printable reports whether s is valid UTF-8 free of control characters, so
// that decoded values are safe to log and to compare.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// escape URL-encodes s the way the Azure SDKs encode sr: every byte but the
// RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) becomes %XX. That is
// JavaScript's encodeURIComponent plus escaping of ! ' ( ) *, which is what
// azure-iot-device (encodeUriComponentStrict) and the Python SDK
// (urllib.parse.quote(safe="")) do; hex digits are upper case as in Python
// and RFC 3986 (Node writes %2a etc. in lower case for those five).
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// NewToken returns the token string an Azure SDK would produce for resource
// (unencoded, e.g. "myhub.example/devices/dev1"), signed with key (base64) and
// naming keyName as skn when it is not "": sr and sig URL-encoded, se in whole
// seconds (sub-second parts of expiry are dropped), fields in the order
// sr, sig, se, skn as the Python and C# SDKs and the docs write them.
func NewToken(resource, keyName, key string, expiry time.Time) (string, error) {
	if resource == "" {
		return "", fmt.Errorf("%w: empty resource", ErrMalformed)
	}
	if expiry.Unix() < 0 {
		return "", fmt.Errorf("%w: expiry before 1970", ErrMalformed)
	}
	k, err := decodeKey(key)
	if err != nil {
		return "", err
	}
	t := Token{Resource: resource, Signature: Sign(resource, k, expiry), Expiry: expiry, KeyName: keyName}
	return t.encode(), nil
}

// Sign returns base64(HMAC-SHA256(key, escape(resource) + "\n" + seconds)),
// the signature of a token for resource (unencoded) expiring at expiry.
func Sign(resource string, key []byte, expiry time.Time) string {
	return sign(key, escape(resource), strconv.FormatInt(expiry.Unix(), 10))
}

// sign computes the signature over the encoded resource and expiry texts.
func sign(key []byte, encodedResource, expiry string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(encodedResource))
	m.Write([]byte{'\n'})
	m.Write([]byte(expiry))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// decodeKey decodes a base64 shared access key. Azure keys are standard,
// padded base64; unpadded input is accepted too since it is unambiguous.
func decodeKey(key string) ([]byte, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty key", ErrBadKey)
	}
	enc := base64.StdEncoding
	if len(key)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	k, err := enc.DecodeString(key)
	if err != nil {
		// err would quote the offending position and byte: keep the key out of it.
		return nil, fmt.Errorf("%w: key is not valid base64", ErrBadKey)
	}
	return k, nil
}

// Verify checks the signature against each key (base64; typically a primary
// and a secondary key) in constant time, as IoT Hub signs (with the bytes
// the key encodes) or as Event Hubs does (with the key's text). Empty keys are skipped, so an unset
// secondary key can be passed as "" without becoming the empty HMAC key that
// anybody could sign with. It returns an error wrapping ErrBadKey if a key is
// not base64 or no key is given, and ErrSignature if no key matches.
func (t Token) Verify(keys ...string) error {
	resource, expiry := t.rawResource, t.rawExpiry
	if resource == "" {
		resource = escape(t.Resource)
	}
	if expiry == "" {
		expiry = strconv.FormatInt(t.Expiry.Unix(), 10)
	}
	decoded := make([][]byte, 0, 2)
	for i, key := range keys {
		if key == "" {
			continue
		}
		k, err := decodeKey(key)
		if err != nil {
			return fmt.Errorf("%w (key %d)", err, i)
		}
		decoded = append(decoded, k)
	}
	if len(decoded) == 0 {
		return fmt.Errorf("%w: no key to verify the token with", ErrBadKey)
	}
	if t.signedWithAny(decoded, resource, expiry) {
		return nil
	}
	// The Event Hubs SDKs sign with the key's text as the HMAC key, not
	// with the bytes it encodes (IoT Hub's way), and the hosted
	// Event Hubs-compatible endpoint takes their tokens: so does twinhub,
	// for any resource (either form needs the key). Tried only when the
	// IoT Hub form fails, so that the usual token costs no more HMACs.
	text := make([][]byte, 0, len(keys))
	for _, key := range keys {
		if key != "" {
			text = append(text, []byte(key))
		}
	}
	if t.signedWithAny(text, resource, expiry) {
		return nil
	}
	return fmt.Errorf("%w: for resource %q", ErrSignature, truncate(t.Resource, 256))
}

// signedWithAny reports whether one of keys signed the token, checking
// every key so that the time taken does not tell which one matched.
func (t Token) signedWithAny(keys [][]byte, resource, expiry string) bool {
	match := 0
	for _, k := range keys {
		want := sign(k, resource, expiry)
		match |= subtle.ConstantTimeCompare([]byte(want), []byte(t.Signature))
	}
	return match == 1
}

// CheckTime returns an error wrapping ErrExpired if now is not before the
// token's expiry.
func (t Token) CheckTime(now time.Time) error {
	if !now.Before(t.Expiry) {
		return fmt.Errorf("%w: expired at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

// Covers reports whether the token grants access to resource (unencoded, such
// as "myhub.example/devices/dev1/messages/events"): the token's resource must
// be a prefix of it by whole path segments ("h/a/b" covers "h/a/b/c", not
// "h/a/bc"). Host names compare case-insensitively (ASCII), paths exactly.
// Trailing slashes and a leading scheme such as "https://" on either side are
// ignored.
//
// A token resource without any "/" that still contains "%" is decoded once
// more: amenzhinsky/iothub URL-encodes module resources twice, so its sr
// decodes to "myhub.example%2Fdevices%2Fdev1%2Fmodules%2Fmod1". Host names
// cannot contain "%", so this reading is unambiguous, and it only matters for
// scope: the signature is still checked over the bytes the client sent.
func (t Token) Covers(resource string) bool {
	tr := t.Resource
	if !strings.Contains(tr, "/") && strings.Contains(tr, "%") {
		if u, err := url.PathUnescape(tr); err == nil {
			tr = u
		}
	}
	tHost, tPath := splitResource(tr)
	rHost, rPath := splitResource(resource)
	if tHost == "" || rHost == "" || !asciiEqualFold(tHost, rHost) {
		return false
	}
	if tPath == "" {
		return true
	}
	if !strings.HasPrefix(rPath, tPath) {
		return false
	}
	return len(rPath) == len(tPath) || rPath[len(tPath)] == '/'
}

// splitResource strips a scheme and trailing slashes and splits host from
// path; path is "" or starts with "/".
func splitResource(r string) (host, path string) {
	if i := strings.Index(r, "://"); i >= 0 && !strings.Contains(r[:i], "/") {
		r = r[i+3:]
	}
	r = strings.TrimRight(r, "/")
	if i := strings.IndexByte(r, '/'); i >= 0 {
		return r[:i], r[i:]
	}
	return r, ""
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
