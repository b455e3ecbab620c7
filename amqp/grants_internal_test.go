package amqp

import (
	"fmt"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
)

// TestGrantSet: a device's grant is found by its identity, a renewal
// (its audience again) updates the grant its links hold, a grant for a
// new audience leaves the earlier valid for the links that hold it, and
// revoking an identity ends its grant and leaves the policies'.
func TestGrantSet(t *testing.T) {
	later, earlier := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	d1, m := twinhub.DeviceKey("d1"), twinhub.ModuleKey("d1", "m")
	var s grantSet
	if len(s.forIdentity(d1)) != 0 {
		t.Fatal("an empty set grants something")
	}
	g1 := s.put(grant{audience: "hub/devices/d1", token: "t1", device: d1, expires: earlier})
	gm := s.put(grant{audience: "hub/devices/d1/modules/m", token: "tm", device: m, expires: later})
	gp := s.put(grant{audience: "hub", token: "tp", policy: "service", expires: later})
	if g1.valid() || !gm.valid() || !gp.valid() {
		t.Error("an expired grant is valid, or a live one is not")
	}
	if renewed := s.put(grant{audience: "hub/devices/d1", token: "t1'", device: d1, expires: later}); renewed != g1 || !g1.valid() || g1.token != "t1'" {
		t.Errorf("a renewal did not update the grant the links hold (valid %v, token %q)", g1.valid(), g1.token)
	}
	if got := s.forIdentity(d1); len(got) != 2 || got[0] != g1 || got[1] != gp {
		t.Errorf("forIdentity(d1): %v, want its grant, then the policy's", tokens(got))
	}
	if got := s.forIdentity(twinhub.DeviceKey("d3")); len(got) != 1 || got[0] != gp {
		t.Errorf("forIdentity(d3): %v, want the policy's grant", tokens(got))
	}
	if again := s.put(grant{audience: "hub", token: "tp'", policy: "service", expires: later}); again != gp || len(s.policies) != 1 {
		t.Errorf("a policy's renewal made a second grant (%d)", len(s.policies))
	}
	// A second spelling of d1's audience: a grant of its own, found
	// first; a renewal of the first spelling still updates the first.
	other := s.put(grant{audience: "amqps://hub/devices/d1", token: "t1x", device: d1, expires: later})
	if other == g1 || !g1.valid() {
		t.Error("a grant for a second audience of d1 replaced the first, or ended it")
	}
	if got := s.forIdentity(d1); len(got) != 3 || got[0] != other || got[1] != g1 || got[2] != gp {
		t.Errorf("forIdentity(d1): %v, want its newest grant, its first, then the policy's", tokens(got))
	}
	if renewed := s.put(grant{audience: "hub/devices/d1", token: "t1''", device: d1, expires: later}); renewed != g1 || g1.token != "t1''" {
		t.Errorf("renewing the first audience after a second was put made a new grant (token of the first %q)", g1.token)
	}
	s.revoke(func(k twinhub.Key) bool { return k.DeviceID == "d1" }) // d1 and its module
	if g1.valid() || other.valid() || gm.valid() || len(s.forIdentity(m)) != 1 || len(s.forIdentity(d1)) != 1 {
		t.Error("a revoked identity's grant is still valid, or still found")
	}
	if !gp.valid() || len(s.policies) != 1 {
		t.Error("revoking d1 ended the policy's grant")
	}
}

func tokens(gs []*grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.token)
	}
	return out
}

// BenchmarkDeviceGrant finds the grant of one device of a connection that
// multiplexes 4,000 (bench sessions-amqp's), as a link's attach does, and
// checks it as each of its messages does: in the grantSet, and in a list
// scanned by audience, as the connection kept its grants before (the
// baseline, measured in the same run).
func BenchmarkDeviceGrant(b *testing.B) {
	const n = 4000
	later := time.Now().Add(time.Hour)
	var set grantSet
	var list []grant
	keys := make([]twinhub.Key, n)
	for i := range n {
		keys[i] = twinhub.DeviceKey(fmt.Sprintf("bench-a1b2c3-sessions-amqp-%05d", i))
		g := grant{audience: "hub.example/devices/" + keys[i].DeviceID, token: "t", device: keys[i], expires: later}
		set.put(g)
		list = append(list, g)
	}
	b.Run("set", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i%n]
			i++
			if gs := set.forIdentity(k); len(gs) != 1 || !gs[0].valid() {
				b.Fatal("no grant")
			}
		}
	})
	b.Run("list", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i%n]
			i++
			var found *grant
			for j := range list {
				if list[j].device == k {
					found = &list[j]
					break
				}
			}
			valid := false
			for j := range list {
				if list[j].audience == found.audience {
					valid = time.Now().Before(list[j].expires)
					break
				}
			}
			if !valid {
				b.Fatal("no grant")
			}
		}
	})
}
