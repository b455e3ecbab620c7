package sas

import (
	"errors"
	"testing"
	"time"
)

// sentinels are the errors every failure must wrap.
var sentinels = []error{ErrMalformed, ErrExpired, ErrSignature, ErrUnknownPolicy, ErrResource, ErrBadKey}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		nodeDeviceToken, nodeModuleToken, nodeSpecialToken, nodeServiceToken, amzModuleToken,
		"SharedAccessSignature sr=h&sig=s&se=1&skn=p",
		"SharedAccessSignature se=0&sr=h%2Fdevices%2Fa%2Bb&sig=a+b",
		"SharedAccessSignature sr=h&sr=h&sig=s&se=1",
		"SharedAccessSignature sr=%zz&sig=s&se=99999999999999999999",
		"SharedAccessSignature ",
		"",
	} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	policies := []Policy{{Name: "iothubowner", PrimaryKey: testKey, Rights: RegistryRead}}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if _, aerr := Authenticate(s, policies, "myhub.example", now); aerr != nil && !wrapsSentinel(aerr) {
			t.Fatalf("Authenticate error wraps no sentinel: %v", aerr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseToken error is not ErrMalformed: %v", err)
			}
			return
		}
		if tok.Resource == "" || tok.Signature == "" || !printable(tok.Resource) || !printable(tok.KeyName) {
			t.Fatalf("ParseToken(%q) accepted %#v", s, tok)
		}
		// Must not panic, and a random signature essentially never matches.
		_ = tok.Covers("myhub.example/devices/dev1")
		_ = tok.CheckTime(now)
		if err := tok.Verify(testKey); err != nil && !errors.Is(err, ErrSignature) {
			t.Fatalf("Verify: %v", err)
		}
		// Re-encoding canonically reads back the same token.
		again, err := ParseToken(tok.encode())
		if err != nil {
			if len(tok.encode()) > MaxTokenLength { // canonical escaping can be longer
				return
			}
			t.Fatalf("re-parse of %q: %v", tok.encode(), err)
		}
		if again.Resource != tok.Resource || again.Signature != tok.Signature ||
			again.KeyName != tok.KeyName || !again.Expiry.Equal(tok.Expiry) {
			t.Fatalf("round trip changed %#v into %#v", tok, again)
		}
	})
}

func FuzzParseConnectionString(f *testing.F) {
	for _, s := range []string{
		"HostName=myhub.example;SharedAccessKeyName=iothubowner;SharedAccessKey=" + testKey,
		"HostName=myhub.example;DeviceId=dev1;ModuleId=m;SharedAccessKey=" + testKey + ";GatewayHostName=g",
		"HostName=h;DeviceId=d;x509=true",
		" hostname = h ; DEVICEID=d;X509=TRUE ;",
		"HostName=h;HostName=h",
		"HostName=h;DeviceId=a=b;SharedAccessKey=AAAA",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadKey) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrBadKey: %v", err)
			}
			return
		}
		if c.HostName == "" {
			t.Fatalf("accepted %q without HostName", s)
		}
		again, err := ParseConnectionString(c.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", c.String(), s, err)
		}
		if again != c {
			t.Fatalf("round trip changed %+v into %+v", c, again)
		}
		if again.String() != c.String() {
			t.Fatalf("String not stable: %q vs %q", c.String(), again.String())
		}
	})
}
