package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testKey is base64("twinhub-test-key-0123456789abcdef"), the key used for
// the vectors produced by the real SDKs below.
const testKey = "dHdpbmh1Yi10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"

var testExpiry = time.Unix(1700000000, 0)

// Tokens produced by the real Node.js SDK: npm install azure-iot-common
// (1.13.3) and azure-iot-device (1.18.4) / azure-iothub (1.16.6) in a scratch
// folder, then, with key = testKey and expiry = 1700000000:
//
//	device:  common.SharedAccessSignature.create(common.encodeUriComponentStrict("myhub.example/devices/dev1"), null, key, expiry).toString()
//	         (exactly what azure-iot-device's SakAuthenticationProvider and its
//	         shared_access_signature.create do; both printed the same string)
//	module:  the same with "myhub.example/devices/dev1/modules/mod1"
//	special: the same with "myhub.example/devices/d(1)*!'x+y" (Node escapes
//	         !'()* with lower-case hex, e.g. %2a)
//	service: common.SharedAccessSignature.create("myhub.example", "iothubowner", key, expiry).toString()
//	         (as azure-iothub's Client does: sr is the raw host, skn before se)
const (
	nodeDeviceToken  = "SharedAccessSignature sr=myhub.example%2Fdevices%2Fdev1&sig=BCl58ubs4%2FtlXzrURa%2B2eTrrF1c%2FU2GphQNTtJ7su9g%3D&se=1700000000"
	nodeModuleToken  = "SharedAccessSignature sr=myhub.example%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=NrPbXNcTSYVjIndGwIF5z5VcsbZYNSFVjJ4GL3ftLUI%3D&se=1700000000"
	nodeSpecialToken = "SharedAccessSignature sr=myhub.example%2Fdevices%2Fd%281%29%2a%21%27x%2By&sig=0FH2O1IrWqfgVcrZSA0SKloEgcsv8c1tALpItMZPMqI%3D&se=1700000000"
	nodeServiceToken = "SharedAccessSignature sr=myhub.example&sig=E6q%2FQgceDX%2Bvut1E5qsw10uPZLVmJ8vJeNcCY2dgwmQ%3D&skn=iothubowner&se=1700000000"
)

// Tokens produced by github.com/amenzhinsky/iothub v0.9.1 (go run of a
// scratch program calling common.NewSharedAccessSignature(...).String() the
// way its MQTT transports do, with key = testKey, expiry = 1700000000):
//
//	device: sr = the host name (iotdevice/transport/mqtt/mqtt.go)
//	module: sr = url.QueryEscape(host + "/devices/dev1/modules/mod1"),
//	        which String() escapes a second time (mqtt_module.go)
const (
	amzDeviceToken = "SharedAccessSignature sr=myhub.example&sig=E6q%2FQgceDX%2Bvut1E5qsw10uPZLVmJ8vJeNcCY2dgwmQ%3D&se=1700000000"
	amzModuleToken = "SharedAccessSignature sr=myhub.example%252Fdevices%252Fdev1%252Fmodules%252Fmod1&sig=jsOqrE5iaJj3GpZjUgpqrI7k2hwYQ%2FSw7eZ6SUuwj4M%3D&se=1700000000"
)

// refSign is the documented algorithm written out independently of the
// package: base64(HMAC-SHA256(base64-decode(key), encodedResource + "\n" + expiry)).
func refSign(t testing.TB, key, encodedResource, expiry string) string {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(encodedResource + "\n" + expiry))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestSignMatchesDocumentedAlgorithm(t *testing.T) {
	k, _ := base64.StdEncoding.DecodeString(testKey)
	cases := []struct {
		resource, encoded string
		expiry            time.Time
	}{
		{"myhub.example", "myhub.example", testExpiry},
		{"myhub.example/devices/dev1", "myhub.example%2Fdevices%2Fdev1", testExpiry},
		{"myhub.example/devices/d(1)*!'x+y", "myhub.example%2Fdevices%2Fd%281%29%2A%21%27x%2By", testExpiry},
		{"h/devices/a b%c~d_e.f-g", "h%2Fdevices%2Fa%20b%25c~d_e.f-g", time.Unix(0, 0)},
		{"h/devices/\u00e9", "h%2Fdevices%2F%C3%A9", time.Unix(1, 999999999)},
	}
	for _, c := range cases {
		se := fmt.Sprint(c.expiry.Unix())
		want := refSign(t, testKey, c.encoded, se)
		if got := Sign(c.resource, k, c.expiry); got != want {
			t.Errorf("Sign(%q) = %s, want %s", c.resource, got, want)
		}
		if got := escape(c.resource); got != c.encoded {
			t.Errorf("escape(%q) = %q, want %q", c.resource, got, c.encoded)
		}
	}
}

func TestNodeSDKVectors(t *testing.T) {
	// NewToken writes exactly what the Node device SDK writes for plain ids.
	for _, c := range []struct{ resource, want string }{
		{"myhub.example/devices/dev1", nodeDeviceToken},
		{"myhub.example/devices/dev1/modules/mod1", nodeModuleToken},
	} {
		got, err := NewToken(c.resource, "", testKey, testExpiry)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("NewToken(%q) =\n %s\nwant (Node SDK)\n %s", c.resource, got, c.want)
		}
	}
	// Every SDK token parses, verifies and covers what it should.
	for _, c := range []struct {
		name, token, covers, keyName string
	}{
		{"node device", nodeDeviceToken, "myhub.example/devices/dev1", ""},
		{"node module", nodeModuleToken, "myhub.example/devices/dev1/modules/mod1", ""},
		{"node special id", nodeSpecialToken, "myhub.example/devices/d(1)*!'x+y/messages/events", ""},
		{"node service", nodeServiceToken, "MyHub.Example", "iothubowner"},
		{"amenzhinsky device", amzDeviceToken, "myhub.example/devices/dev1", ""},
		{"amenzhinsky module", amzModuleToken, "myhub.example/devices/dev1/modules/mod1", ""},
	} {
		tok, err := ParseToken(c.token)
		if err != nil {
			t.Errorf("%s: ParseToken: %v", c.name, err)
			continue
		}
		if err := tok.Verify(testKey); err != nil {
			t.Errorf("%s: Verify: %v", c.name, err)
		}
		if !tok.Covers(c.covers) {
			t.Errorf("%s: resource %q does not cover %q", c.name, tok.Resource, c.covers)
		}
		if tok.KeyName != c.keyName || !tok.Expiry.Equal(testExpiry) {
			t.Errorf("%s: skn %q se %v", c.name, tok.KeyName, tok.Expiry)
		}
	}
	// Our service token differs from Node's only in field order.
	ours, err := NewToken("myhub.example", "iothubowner", testKey, testExpiry)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ParseToken(ours)
	b, _ := ParseToken(nodeServiceToken)
	if a.Signature != b.Signature || a.Resource != b.Resource || a.KeyName != b.KeyName || !a.Expiry.Equal(b.Expiry) {
		t.Errorf("service token %s differs from Node's %s", ours, nodeServiceToken)
	}
}

func TestParseToken(t *testing.T) {
	valid := []struct {
		in   string
		want Token
	}{
		{nodeDeviceToken, Token{Resource: "myhub.example/devices/dev1", Signature: "BCl58ubs4/tlXzrURa+2eTrrF1c/U2GphQNTtJ7su9g=", Expiry: time.Unix(1700000000, 0).UTC()}},
		{"SharedAccessSignature se=12&skn=service&sig=abc%3D&sr=https%3A%2F%2Fh", Token{Resource: "https://h", Signature: "abc=", Expiry: time.Unix(12, 0).UTC(), KeyName: "service"}},
		{"SharedAccessSignature sig=a+b&se=0&sr=h%2fdevices%2fx%2By", Token{Resource: "h/devices/x+y", Signature: "a+b", Expiry: time.Unix(0, 0).UTC()}},
		{"SharedAccessSignature sr=h&sig=s&se=0001700000000", Token{Resource: "h", Signature: "s", Expiry: time.Unix(1700000000, 0).UTC()}},
		{"SharedAccessSignature sr=h&sig=s==&se=9223372036854775807", Token{Resource: "h", Signature: "s==", Expiry: time.Unix(9223372036854775807, 0).UTC()}},
	}
	for _, c := range valid {
		got, err := ParseToken(c.in)
		if err != nil {
			t.Errorf("ParseToken(%q): %v", c.in, err)
			continue
		}
		if got.Resource != c.want.Resource || got.Signature != c.want.Signature || got.KeyName != c.want.KeyName || !got.Expiry.Equal(c.want.Expiry) {
			t.Errorf("ParseToken(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}

	long := "SharedAccessSignature sr=" + strings.Repeat("a", MaxTokenLength) + "&sig=s&se=1"
	invalid := []struct{ name, in, msg string }{
		{"empty", "", "does not start"},
		{"no prefix", "sr=h&sig=s&se=1", "does not start"},
		{"lower-case prefix", "sharedaccesssignature sr=h&sig=s&se=1", "does not start"},
		{"no space", "SharedAccessSignaturesr=h&sig=s&se=1", "does not start"},
		{"two spaces", "SharedAccessSignature  sr=h&sig=s&se=1", "space"},
		{"prefix only", "SharedAccessSignature ", "no fields"},
		{"trailing space", "SharedAccessSignature sr=h&sig=s&se=1 ", "space"},
		{"non-ASCII", "SharedAccessSignature sr=hé&sig=s&se=1", "non-ASCII"},
		{"too long", long, "longer than"},
		{"missing sr", "SharedAccessSignature sig=s&se=1", `lacks field "sr"`},
		{"missing sig", "SharedAccessSignature sr=h&se=1", `lacks field "sig"`},
		{"missing se", "SharedAccessSignature sr=h&sig=s&skn=p", `lacks field "se"`},
		{"duplicate sr", "SharedAccessSignature sr=h&sr=h&sig=s&se=1", "duplicate"},
		{"duplicate skn", "SharedAccessSignature sr=h&sig=s&se=1&skn=a&skn=b", "duplicate"},
		{"duplicate se", "SharedAccessSignature sr=h&sig=s&se=1&se=2", "duplicate"},
		{"unknown field", "SharedAccessSignature sr=h&sig=s&se=1&foo=bar", "unknown"},
		{"upper-case name", "SharedAccessSignature SR=h&sig=s&se=1", "unknown"},
		{"no equals", "SharedAccessSignature sr=h&sig=s&se=1&skn", "name=value"},
		{"empty name", "SharedAccessSignature sr=h&=x&sig=s&se=1", "name=value"},
		{"trailing ampersand", "SharedAccessSignature sr=h&sig=s&se=1&", "name=value"},
		{"empty sr", "SharedAccessSignature sr=&sig=s&se=1", "empty"},
		{"empty skn", "SharedAccessSignature sr=h&sig=s&se=1&skn=", "empty"},
		{"negative se", "SharedAccessSignature sr=h&sig=s&se=-1", "decimal"},
		{"plus se", "SharedAccessSignature sr=h&sig=s&se=+1", "decimal"},
		{"float se", "SharedAccessSignature sr=h&sig=s&se=1.5", "decimal"},
		{"hex se", "SharedAccessSignature sr=h&sig=s&se=0x10", "decimal"},
		{"overflow se", "SharedAccessSignature sr=h&sig=s&se=9223372036854775808", "out of range"},
		{"bad escape", "SharedAccessSignature sr=h%zz&sig=s&se=1", "URL-encoded"},
		{"truncated escape", "SharedAccessSignature sr=h&sig=s%2&se=1", "URL-encoded"},
		{"NUL", "SharedAccessSignature sr=h%00&sig=s&se=1", "control"},
		{"newline", "SharedAccessSignature sr=h&sig=s&se=1&skn=a%0Ab", "control"},
		{"invalid UTF-8", "SharedAccessSignature sr=h%FF&sig=s&se=1", "UTF-8"},
	}
	for _, c := range invalid {
		_, err := ParseToken(c.in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseToken(%q) error %v, want ErrMalformed", c.name, c.in, err)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.msg)
		}
	}
}

// Errors must never carry a signature or key, so that they can be logged.
func TestErrorsHideSecrets(t *testing.T) {
	const secret = "S3cr3tS1gnatur3Zz"
	tokens := []string{
		"SharedAccessSignature sr=h&sig=" + secret + "%zz&se=1",
		"SharedAccessSignature sr=h&sig=" + secret + "%00&se=1",
		"SharedAccessSignature sr=h&sig=" + secret + "&sig=" + secret + "&se=1",
		"SharedAccessSignature sr=h&sig=" + secret + "&se=x",
		"SharedAccessSignature sr=h&sig=" + secret + "&se=1&" + secret + "=1",
		"SharedAccessSignature sr=h&sig=" + secret + "&se=1",
	}
	for _, tok := range tokens {
		var errs []error
		_, err := ParseToken(tok)
		errs = append(errs, err)
		_, err = Authenticate(tok, []Policy{{Name: "p", PrimaryKey: testKey}}, "h", time.Unix(0, 0))
		errs = append(errs, err)
		if parsed, err := ParseToken(tok); err == nil {
			errs = append(errs, parsed.Verify(testKey), parsed.Verify(secret+"!"))
			if s := fmt.Sprintf("%v %+v %#v %s", parsed, parsed, parsed, parsed); strings.Contains(s, secret) {
				t.Errorf("formatting a Token shows its signature: %s", s)
			}
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		}
	}
	_, err := NewToken("h", "", secret+"!", testExpiry)
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), secret) {
		t.Errorf("NewToken with a bad key: %v", err)
	}
}

func TestNewToken(t *testing.T) {
	cases := []struct {
		resource, keyName string
		expiry            time.Time
		want              string // with SIG standing for the reference signature
		encodedResource   string
	}{
		{"myhub.example", "iothubowner", testExpiry, "SharedAccessSignature sr=myhub.example&sig=SIG&se=1700000000&skn=iothubowner", "myhub.example"},
		{"myhub.example/devices/a(b)", "", testExpiry.Add(999 * time.Millisecond), "SharedAccessSignature sr=myhub.example%2Fdevices%2Fa%28b%29&sig=SIG&se=1700000000", "myhub.example%2Fdevices%2Fa%28b%29"},
		{"h", "my policy", time.Unix(0, 0), "SharedAccessSignature sr=h&sig=SIG&se=0&skn=my%20policy", "h"},
	}
	for _, c := range cases {
		got, err := NewToken(c.resource, c.keyName, testKey, c.expiry)
		if err != nil {
			t.Errorf("NewToken(%q): %v", c.resource, err)
			continue
		}
		sig := refSign(t, testKey, c.encodedResource, fmt.Sprint(c.expiry.Unix()))
		sig = strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(sig)
		if want := strings.Replace(c.want, "SIG", sig, 1); got != want {
			t.Errorf("NewToken(%q) = %s, want %s", c.resource, got, want)
		}
		tok, err := ParseToken(got)
		if err != nil || tok.Resource != c.resource || tok.KeyName != c.keyName || tok.Verify(testKey) != nil {
			t.Errorf("NewToken(%q) does not round-trip: %v %v", c.resource, tok, err)
		}
	}

	errCases := []struct {
		name, resource, key string
		expiry              time.Time
		want                error
	}{
		{"empty resource", "", testKey, testExpiry, ErrMalformed},
		{"empty key", "h", "", testExpiry, ErrBadKey},
		{"bad key", "h", "not base64!", testExpiry, ErrBadKey},
		{"before 1970", "h", testKey, time.Unix(-1, 0), ErrMalformed},
	}
	for _, c := range errCases {
		if _, err := NewToken(c.resource, "", c.key, c.expiry); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}

func TestVerify(t *testing.T) {
	other, _ := GenerateKey()
	tok, _ := ParseToken(nodeDeviceToken)
	tampered := func(f func(*Token)) Token { c := tok; f(&c); return c }
	handmade := Token{Resource: "myhub.example/devices/dev1", Expiry: testExpiry}
	k, _ := base64.StdEncoding.DecodeString(testKey)
	handmade.Signature = Sign(handmade.Resource, k, testExpiry)
	// As the Event Hubs SDKs sign: the key's text is the HMAC key.
	eventHubs := Token{Resource: "sb://myhub.example/myhub/$management", Expiry: testExpiry}
	eventHubs.Signature = Sign(eventHubs.Resource, []byte(testKey), testExpiry)

	cases := []struct {
		name string
		tok  Token
		keys []string
		want error
	}{
		{"primary", tok, []string{testKey, other}, nil},
		{"secondary", tok, []string{other, testKey}, nil},
		{"unpadded key", tok, []string{strings.TrimRight(testKey, "=")}, nil},
		{"empty secondary skipped", tok, []string{testKey, ""}, nil},
		{"hand-built token", handmade, []string{testKey}, nil},
		{"Event Hubs' signature", eventHubs, []string{other, testKey}, nil},
		{"Event Hubs' signature, wrong key", eventHubs, []string{other}, ErrSignature},
		{"wrong key", tok, []string{other}, ErrSignature},
		{"wrong keys", tok, []string{other, other}, ErrSignature},
		{"bad key", tok, []string{testKey, "%%%"}, ErrBadKey},
		{"no keys", tok, nil, ErrBadKey},
		{"only empty keys", tok, []string{"", ""}, ErrBadKey},
		{"tampered resource", tampered(func(t *Token) { t.rawResource = "myhub.example%2Fdevices%2Fdev2" }), []string{testKey}, ErrSignature},
		{"tampered expiry", tampered(func(t *Token) { t.rawExpiry = "1700000001" }), []string{testKey}, ErrSignature},
		{"tampered signature", tampered(func(t *Token) { t.Signature = "A" + t.Signature[1:] }), []string{testKey}, ErrSignature},
		{"empty signature", tampered(func(t *Token) { t.Signature = "" }), []string{testKey}, ErrSignature},
		{"hand-built, other expiry", Token{Resource: handmade.Resource, Signature: handmade.Signature, Expiry: testExpiry.Add(time.Second)}, []string{testKey}, ErrSignature},
	}
	for _, c := range cases {
		err := c.tok.Verify(c.keys...)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCheckTime(t *testing.T) {
	tok := Token{Expiry: testExpiry}
	cases := []struct {
		now  time.Time
		want error
	}{
		{testExpiry.Add(-time.Hour), nil},
		{testExpiry.Add(-time.Nanosecond), nil},
		{testExpiry, ErrExpired},
		{testExpiry.Add(time.Second), ErrExpired},
	}
	for _, c := range cases {
		if err := tok.CheckTime(c.now); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("CheckTime(%v) = %v, want %v", c.now, err, c.want)
		}
	}
	if err := (Token{}).CheckTime(time.Now()); !errors.Is(err, ErrExpired) {
		t.Errorf("zero token: %v", err)
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		sr, resource string
		want         bool
	}{
		{"myhub.example", "myhub.example", true},
		{"myhub.example", "myhub.example/devices/dev1", true},
		{"MyHub.Example", "myhub.example/devices/dev1", true},
		{"myhub.example", "MYHUB.EXAMPLE", true},
		{"myhub.example/devices/dev1", "myhub.example/devices/dev1", true},
		{"myhub.example/devices/dev1", "myhub.example/devices/dev1/modules/m", true},
		{"myhub.example/devices/dev1", "MYHUB.example/devices/dev1/messages/events", true},
		{"myhub.example/devices/dev1", "myhub.example/devices/dev10", false},
		{"myhub.example/devices/dev1", "myhub.example/devices/DEV1", false},
		{"myhub.example/devices/dev1", "myhub.example/devices", false},
		{"myhub.example/devices/dev1", "myhub.example", false},
		{"myhub.example/devices", "myhub.example/devices/x", true},
		{"myhub.example/devices", "myhub.example/devicesx", false},
		{"myhub.example", "myhub.example2", false},
		{"myhub.example", "other.example/devices/dev1", false},
		{"myhub.example/", "myhub.example/devices/x", true},
		{"myhub.example/devices/dev1/", "myhub.example/devices/dev1", true},
		{"myhub.example/devices/dev1", "myhub.example/devices/dev1/", true},
		{"https://myhub.example", "myhub.example/devices/dev1", true},
		{"https://myhub.example/devices/dev1", "myhub.example/devices/dev1", true},
		{"myhub.example", "https://myhub.example/devices/x", true},
		{"HTTPS://MYHUB.EXAMPLE/", "myhub.example", true},
		{"https://myhub.example/devices/dev1", "myhub.example/devices/dev2", false},
		{"myhub.example%2Fdevices%2Fdev1%2Fmodules%2Fmod1", "myhub.example/devices/dev1/modules/mod1", true},
		{"myhub.example%2Fdevices%2Fdev1", "myhub.example/devices/dev2", false},
		{"myhub.example/devices/a%2Fb", "myhub.example/devices/a/b", false},
		{"myhub.example/devices/a%2Fb", "myhub.example/devices/a%2Fb", true},
		{"", "myhub.example", false},
		{"myhub.example", "", false},
		{"/devices/x", "/devices/x", false},
		{"/", "/", false},
	}
	for _, c := range cases {
		if got := (Token{Resource: c.sr}).Covers(c.resource); got != c.want {
			t.Errorf("Token{Resource: %q}.Covers(%q) = %v, want %v", c.sr, c.resource, got, c.want)
		}
	}
}

func TestTokenString(t *testing.T) {
	tok, _ := ParseToken(nodeServiceToken)
	want := "SharedAccessSignature sr=myhub.example&sig=REDACTED&se=1700000000&skn=iothubowner"
	if got := tok.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got := fmt.Sprintf("%#v", tok); strings.Contains(got, tok.Signature) {
		t.Errorf("%%#v shows the signature: %s", got)
	}
}

func BenchmarkVerify(b *testing.B) {
	tok, err := ParseToken(nodeDeviceToken)
	if err != nil {
		b.Fatal(err)
	}
	other, _ := GenerateKey()
	b.ReportAllocs()
	for b.Loop() {
		if err := tok.Verify(other, testKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseToken(nodeModuleToken); err != nil {
			b.Fatal(err)
		}
	}
}
