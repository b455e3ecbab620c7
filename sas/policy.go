package sas

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Permission is a set of IoT Hub access rights.
type Permission uint8

// The rights a shared access policy can grant, as the IoT Hub docs name them.
const (
	RegistryRead Permission = 1 << iota
	RegistryWrite
	ServiceConnect
	DeviceConnect
)

// allPermissions is every defined right, in the order Azure lists them.
var allPermissions = [...]struct {
	p    Permission
	name string
}{
	{RegistryRead, "RegistryRead"},
	{RegistryWrite, "RegistryWrite"},
	{ServiceConnect, "ServiceConnect"},
	{DeviceConnect, "DeviceConnect"},
}

const knownPermissions = RegistryRead | RegistryWrite | ServiceConnect | DeviceConnect

// Has reports whether p includes every right in q.
func (p Permission) Has(q Permission) bool { return p&q == q }

// String lists the rights as Azure lists a policy's "rights", e.g.
// "RegistryRead, RegistryWrite, ServiceConnect"; "" for none. Undefined bits
// are shown as a hex number so that they are not silently dropped.
func (p Permission) String() string {
	var parts []string
	for _, e := range allPermissions {
		if p&e.p != 0 {
			parts = append(parts, e.name)
		}
	}
	if rest := p &^ knownPermissions; rest != 0 {
		parts = append(parts, fmt.Sprintf("Permission(%#x)", uint8(rest)))
	}
	return strings.Join(parts, ", ")
}

// ParsePermission parses a list of rights separated by commas and/or spaces
// (Azure's JSON uses "RegistryRead, ServiceConnect", the az CLI takes
// "RegistryRead ServiceConnect"). Names are case-insensitive; the docs'
// "RegistryReadWrite" means RegistryRead and RegistryWrite. "" is no rights.
func ParsePermission(s string) (Permission, error) {
	var p Permission
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if asciiEqualFold(f, "RegistryReadWrite") {
			p |= RegistryRead | RegistryWrite
			continue
		}
		found := false
		for _, e := range allPermissions {
			if asciiEqualFold(f, e.name) {
				p |= e.p
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%w: unknown permission %q", ErrMalformed, truncate(f, 32))
		}
	}
	return p, nil
}

// MarshalText writes p as String does; it fails for undefined bits, which
// would not read back. encoding/json uses it, so a Permission is a JSON
// string such as "RegistryRead, RegistryWrite".
func (p Permission) MarshalText() ([]byte, error) {
	if p&^knownPermissions != 0 {
		return nil, fmt.Errorf("sas: cannot marshal undefined permission bits %#x", uint8(p&^knownPermissions))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads p as ParsePermission does.
func (p *Permission) UnmarshalText(b []byte) error {
	q, err := ParsePermission(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Policy is a hub-level shared access policy. Its JSON form is the one of
// the IoT Hub resource API's authorizationPolicies.
type Policy struct {
	Name         string     `json:"keyName"`
	PrimaryKey   string     `json:"primaryKey"`
	SecondaryKey string     `json:"secondaryKey"`
	Rights       Permission `json:"rights"`
}

// GenerateKey returns 32 random bytes in standard base64, the form of the
// keys Azure generates for policies and devices.
func GenerateKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sas: generating key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DefaultPolicies returns the five policies a new IoT hub has, each with
// fresh primary and secondary keys.
func DefaultPolicies() ([]Policy, error) {
	defs := [...]Policy{
		{Name: "iothubowner", Rights: RegistryRead | RegistryWrite | ServiceConnect | DeviceConnect},
		{Name: "service", Rights: ServiceConnect},
		{Name: "device", Rights: DeviceConnect},
		{Name: "registryRead", Rights: RegistryRead},
		{Name: "registryReadWrite", Rights: RegistryRead | RegistryWrite},
	}
	out := make([]Policy, 0, len(defs))
	for _, p := range defs {
		var err error
		if p.PrimaryKey, err = GenerateKey(); err != nil {
			return nil, err
		}
		if p.SecondaryKey, err = GenerateKey(); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Authenticate checks a service-side token: it parses token, requires an skn
// naming one of policies (names compare exactly), checks the expiry against
// now, verifies the signature with that policy's primary or secondary key,
// and requires the token's resource to cover resource (Token.Covers): the
// hub's host name for a hub-wide operation, or the host plus the path of
// what the operation touches, such as "myhub.example/devices/dev1". It
// returns the policy, whose Rights the caller checks against the operation.
//
// The docs allow service tokens scoped below the hub (sr "myhub/devices" for
// a registry reader); the SDKs themselves sign sr = the host name, which
// covers every resource of the hub.
//
// Errors wrap ErrMalformed, ErrUnknownPolicy, ErrExpired, ErrBadKey (a
// policy with a broken key), ErrSignature or ErrResource.
func Authenticate(token string, policies []Policy, resource string, now time.Time) (Policy, error) {
	var none *Verified
	return none.Authenticate(token, policies, resource, now)
}

// Verified remembers the service tokens whose signatures it has verified,
// so that a back end presenting the same token on every request (the
// service SDKs make one and use it until it nears its expiry) costs one
// HMAC, not one a request: verifying was 8% of the hub's CPU in REST twin
// reads. A token is known again only by its exact text, and only while
// its policy still has the keys that verified it; its expiry and resource
// are checked on every request as before, on the token as parsed the
// first time (parsing it again was 3.5% of the hub's CPU in REST twin
// reads). At most verifiedMax tokens are kept (then it starts afresh).
// The zero value is ready; nil remembers nothing.
type Verified struct {
	tokens sync.Map // token text -> *verifiedToken
	count  atomic.Int64
}

// verifiedToken is a token verified once: as parsed, and the keys that
// verified it.
type verifiedToken struct {
	t    Token
	keys policyKeys
}

const verifiedMax = 4096

// Authenticate is the package's Authenticate, with the signature
// verification remembered.
func (v *Verified) Authenticate(token string, policies []Policy, resource string, now time.Time) (Policy, error) {
	known := v.known(token)
	var t Token
	if known != nil {
		t = known.t
	} else {
		var err error
		if t, err = ParseToken(token); err != nil {
			return Policy{}, err
		}
	}
	if t.KeyName == "" {
		return Policy{}, fmt.Errorf("%w: token has no skn (a device token where a service token is needed)", ErrUnknownPolicy)
	}
	idx := -1
	for i := range policies {
		if policies[i].Name == t.KeyName {
			idx = i
			break
		}
	}
	if idx < 0 {
		return Policy{}, fmt.Errorf("%w: %q", ErrUnknownPolicy, truncate(t.KeyName, 64))
	}
	p := policies[idx]
	if err := t.CheckTime(now); err != nil {
		return Policy{}, err
	}
	if err := v.verify(token, t, p, known); err != nil {
		return Policy{}, fmt.Errorf("policy %q: %w", p.Name, err)
	}
	if !t.Covers(resource) {
		return Policy{}, fmt.Errorf("%w: token resource %q, wanted %q", ErrResource, truncate(t.Resource, 256), truncate(resource, 256))
	}
	return p, nil
}

// known is what v remembers of token, or nil.
func (v *Verified) known(token string) *verifiedToken {
	if v == nil {
		return nil
	}
	if e, ok := v.tokens.Load(token); ok {
		return e.(*verifiedToken)
	}
	return nil
}

// verify checks t's signature with p's keys, unless token was verified
// (known) with the keys p has now.
func (v *Verified) verify(token string, t Token, p Policy, known *verifiedToken) error {
	keys := policyKeys{p.PrimaryKey, p.SecondaryKey}
	if known != nil && known.keys == keys {
		return nil
	}
	if err := t.Verify(p.PrimaryKey, p.SecondaryKey); err != nil {
		return err
	}
	if v != nil {
		if v.count.Add(1) > verifiedMax {
			v.tokens.Clear()
			v.count.Store(1)
		}
		v.tokens.Store(token, &verifiedToken{t: t, keys: keys})
	}
	return nil
}

// policyKeys are the keys a policy had when it verified a token.
type policyKeys struct{ primary, secondary string }
