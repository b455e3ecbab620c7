package sas

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const all = RegistryRead | RegistryWrite | ServiceConnect | DeviceConnect

func TestPermissionHas(t *testing.T) {
	cases := []struct {
		p, q Permission
		want bool
	}{
		{all, ServiceConnect, true},
		{all, all, true},
		{RegistryRead | RegistryWrite, RegistryRead, true},
		{RegistryRead, RegistryRead | RegistryWrite, false},
		{ServiceConnect, DeviceConnect, false},
		{0, RegistryRead, false},
		{0, 0, true},
	}
	for _, c := range cases {
		if got := c.p.Has(c.q); got != c.want {
			t.Errorf("%v.Has(%v) = %v, want %v", c.p, c.q, got, c.want)
		}
	}
}

func TestPermissionString(t *testing.T) {
	cases := []struct {
		p    Permission
		want string
	}{
		{0, ""},
		{RegistryRead, "RegistryRead"},
		{RegistryRead | RegistryWrite, "RegistryRead, RegistryWrite"},
		{DeviceConnect | RegistryWrite, "RegistryWrite, DeviceConnect"},
		{all, "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"},
		{ServiceConnect | 0x80, "ServiceConnect, Permission(0x80)"},
	}
	for _, c := range cases {
		if got := c.p.String(); got != c.want {
			t.Errorf("Permission(%d).String() = %q, want %q", uint8(c.p), got, c.want)
		}
	}
}

func TestParsePermission(t *testing.T) {
	cases := []struct {
		in   string
		want Permission
		err  bool
	}{
		{"", 0, false},
		{"RegistryRead", RegistryRead, false},
		{"RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect", all, false},
		{"DeviceConnect,ServiceConnect", ServiceConnect | DeviceConnect, false},
		{"RegistryReadWrite", RegistryRead | RegistryWrite, false},
		{"RegistryReadWrite, ServiceConnect", RegistryRead | RegistryWrite | ServiceConnect, false},
		{"registryread serviceconnect", RegistryRead | ServiceConnect, false},
		{"RegistryRead, RegistryRead", RegistryRead, false},
		{"RegistryRead, Bogus", 0, true},
		{"Registry Read", 0, true},
		{"Permission(0x80)", 0, true},
	}
	for _, c := range cases {
		got, err := ParsePermission(c.in)
		if c.err {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParsePermission(%q) error %v, want ErrMalformed", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParsePermission(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for p := Permission(0); p <= all; p++ {
		if q, err := ParsePermission(p.String()); err != nil || q != p {
			t.Errorf("round trip of %v: %v %v", p, q, err)
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	p := Policy{Name: "registryReadWrite", PrimaryKey: "a", SecondaryKey: "b", Rights: RegistryRead | RegistryWrite}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"keyName":"registryReadWrite","primaryKey":"a","secondaryKey":"b","rights":"RegistryRead, RegistryWrite"}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil || q != p {
		t.Errorf("unmarshal: %+v %v", q, err)
	}

	unmarshal := []struct {
		in   string
		want Permission
		err  bool
	}{
		{`{"rights":"RegistryReadWrite"}`, RegistryRead | RegistryWrite, false},
		{`{"rights":"ServiceConnect, DeviceConnect"}`, ServiceConnect | DeviceConnect, false},
		{`{"rights":""}`, 0, false},
		{`{"rights":null}`, 0, false},
		{`{"rights":"Everything"}`, 0, true},
		{`{"rights":3}`, 0, true},
	}
	for _, c := range unmarshal {
		var q Policy
		err := json.Unmarshal([]byte(c.in), &q)
		if c.err != (err != nil) || !c.err && q.Rights != c.want {
			t.Errorf("Unmarshal(%s) = %v, %v", c.in, q.Rights, err)
		}
	}
	if _, err := json.Marshal(Policy{Rights: 0x40}); err == nil {
		t.Error("marshalling undefined permission bits succeeded")
	}
}

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 32 || len(k) != 44 {
			t.Fatalf("key %q: %d bytes, %v", k, len(b), err)
		}
		if seen[k] {
			t.Fatal("repeated key")
		}
		seen[k] = true
	}
}

func TestDefaultPolicies(t *testing.T) {
	ps, err := DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name   string
		rights Permission
	}{
		{"iothubowner", all},
		{"service", ServiceConnect},
		{"device", DeviceConnect},
		{"registryRead", RegistryRead},
		{"registryReadWrite", RegistryRead | RegistryWrite},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d policies, want %d", len(ps), len(want))
	}
	keys := map[string]bool{}
	for i, w := range want {
		p := ps[i]
		if p.Name != w.name || p.Rights != w.rights {
			t.Errorf("policy %d = %s %v, want %s %v", i, p.Name, p.Rights, w.name, w.rights)
		}
		for _, k := range []string{p.PrimaryKey, p.SecondaryKey} {
			if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 || keys[k] {
				t.Errorf("policy %s: bad or repeated key", p.Name)
			}
			keys[k] = true
		}
	}
	again, _ := DefaultPolicies()
	if again[0].PrimaryKey == ps[0].PrimaryKey {
		t.Error("DefaultPolicies reuses keys")
	}
}

func TestAuthenticate(t *testing.T) {
	ps, err := DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	owner, svc := ps[0], ps[1]
	broken := Policy{Name: "broken", PrimaryKey: "!!!", Rights: all}
	policies := append(ps, broken)
	const host = "myhub.example"
	now := time.Unix(1700000000, 0)
	exp := now.Add(time.Hour)
	mk := func(resource, keyName, key string, expiry time.Time) string {
		t.Helper()
		s, err := NewToken(resource, keyName, key, expiry)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	deviceKey, _ := GenerateKey()

	cases := []struct {
		name, token, host string
		want              string // policy name on success
		err               error
	}{
		{"owner primary", mk(host, "iothubowner", owner.PrimaryKey, exp), host, "iothubowner", nil},
		{"owner secondary", mk(host, "iothubowner", owner.SecondaryKey, exp), host, "iothubowner", nil},
		{"service", mk(host, "service", svc.PrimaryKey, exp), host, "service", nil},
		{"host case", mk("MyHub.Example", "service", svc.PrimaryKey, exp), host, "service", nil},
		{"https sr", mk("https://"+host, "service", svc.PrimaryKey, exp), host, "service", nil},
		{"scoped token, scoped request", mk(host+"/devices", "registryRead", ps[3].PrimaryKey, exp), host + "/devices/d1", "registryRead", nil},
		{"malformed", "Bearer x", host, "", ErrMalformed},
		{"device token", mk(host+"/devices/d1", "", deviceKey, exp), host, "", ErrUnknownPolicy},
		{"unknown policy", mk(host, "nobody", owner.PrimaryKey, exp), host, "", ErrUnknownPolicy},
		{"policy name case", mk(host, "IoTHubOwner", owner.PrimaryKey, exp), host, "", ErrUnknownPolicy},
		{"expired", mk(host, "iothubowner", owner.PrimaryKey, now), host, "", ErrExpired},
		{"other policy's key", mk(host, "service", owner.PrimaryKey, exp), host, "", ErrSignature},
		{"device key", mk(host, "iothubowner", deviceKey, exp), host, "", ErrSignature},
		{"policy with broken key", mk(host, "broken", owner.PrimaryKey, exp), host, "", ErrBadKey},
		{"other hub", mk("other.example", "iothubowner", owner.PrimaryKey, exp), host, "", ErrResource},
		{"device-scoped policy token", mk(host+"/devices/d1", "iothubowner", owner.PrimaryKey, exp), host, "", ErrResource},
		{"scoped token, wider request", mk(host+"/devices", "registryRead", ps[3].PrimaryKey, exp), host, "", ErrResource},
	}
	for _, c := range cases {
		p, err := Authenticate(c.token, policies, c.host, now)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || p.Name != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.name, p.Name, err, c.want)
		}
	}

	// The Node SDK's own service token, against a policy holding testKey.
	p, err := Authenticate(nodeServiceToken, []Policy{{Name: "iothubowner", PrimaryKey: testKey, Rights: all}}, host, now.Add(-time.Hour))
	if err != nil || p.Rights != all {
		t.Errorf("Node service token: %v %v", p, err)
	}
	// An empty secondary key must not let an empty-key signature in.
	emptyKeyToken := "SharedAccessSignature sr=" + host + "&sig=" + escape(Sign(host, nil, exp)) + "&se=" + "1700003600" + "&skn=p"
	if _, err := Authenticate(emptyKeyToken, []Policy{{Name: "p", PrimaryKey: testKey}}, host, now); !errors.Is(err, ErrSignature) {
		t.Errorf("empty secondary key: %v", err)
	}
}

// TestVerifiedAuthenticate: a remembered token still passes only while it
// has not expired, for resources it covers, and while its policy has the
// keys that verified it; other tokens are verified as ever, and a full
// memory starts afresh without refusing anyone.
func TestVerifiedAuthenticate(t *testing.T) {
	ps, err := DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	const host = "myhub.example"
	now := time.Unix(1700000000, 0)
	token, err := NewToken(host+"/devices", "iothubowner", ps[0].PrimaryKey, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var v Verified
	for range 3 {
		if p, err := v.Authenticate(token, ps, host+"/devices/d1", now); err != nil || p.Name != "iothubowner" {
			t.Fatalf("a good token: %v %v", p.Name, err)
		}
	}
	if _, err := v.Authenticate(token, ps, host+"/configurations", now); !errors.Is(err, ErrResource) {
		t.Errorf("a remembered token for a resource it does not cover: %v", err)
	}
	if _, err := v.Authenticate(token, ps, host+"/devices/d1", now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("a remembered token after its expiry: %v", err)
	}
	rotated := slices.Clone(ps)
	if rotated[0].PrimaryKey, err = GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Authenticate(token, rotated, host+"/devices/d1", now); !errors.Is(err, ErrSignature) {
		t.Errorf("a remembered token after its key was replaced: %v", err)
	}
	forged := token[:strings.Index(token, "sig=")+4] + "AAAA" + token[strings.Index(token, "sig=")+8:]
	if _, err := v.Authenticate(forged, ps, host+"/devices/d1", now); err == nil {
		t.Error("a token with another signature passes")
	}
	for i := range verifiedMax + 10 {
		tok, err := NewToken(host, "service", ps[1].PrimaryKey, now.Add(time.Duration(i+1)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Authenticate(tok, ps, host, now); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if n := v.count.Load(); n > verifiedMax {
		t.Errorf("%d tokens remembered, at most %d wanted", n, verifiedMax)
	}
	if _, err := v.Authenticate(token, ps, host+"/devices/d1", now); err != nil {
		t.Errorf("the first token after the memory filled: %v", err)
	}
}

// BenchmarkAuthenticate: a service token checked on every request, with
// the signature verified each time and remembered (Verified).
func BenchmarkAuthenticate(b *testing.B) {
	ps, err := DefaultPolicies()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	token, err := NewToken("myhub.example", "iothubowner", ps[0].PrimaryKey, now.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	var v Verified
	for _, c := range []struct {
		name string
		v    *Verified
	}{{"verify", nil}, {"remembered", &v}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.v.Authenticate(token, ps, "myhub.example/twins/d1", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
