package amqp

import (
	"time"

	"github.com/twinhub/twinhub"
)

// grantSet is a connection's grants: the devices' and modules' by
// identity, the policies' in a list. A device's links find its grant by
// identity when they attach, and keep it to check its expiry at each
// message. In one list, a connection that multiplexes thousands of
// devices (a gateway's, or bench sessions-amqp's 4,000) compared strings
// with half of them each time: about a tenth of the hub's CPU while
// those devices attached, and a scan at every message of theirs.
// Guarded by the connection's mu.
type grantSet struct {
	// byIdentity are the grants of each device or module, oldest first:
	// one, as a rule, which its renewals update (a client may spell its
	// audience two ways, and so have two).
	byIdentity map[twinhub.Key][]*grant
	// policies are the policies' grants, in the order they were put (a
	// connection has few).
	policies []*grant
}

// put keeps g. A renewal (a grant for the audience of one there is, of
// the same identity) updates that grant in place, so that the links that
// hold it see the new expiry.
func (s *grantSet) put(g grant) *grant {
	list := s.policies
	if g.policy == "" {
		list = s.byIdentity[g.device]
	}
	for _, p := range list {
		if p.audience == g.audience {
			*p = g
			return p
		}
	}
	p := &g
	if g.policy != "" {
		s.policies = append(s.policies, p)
		return p
	}
	if s.byIdentity == nil {
		s.byIdentity = map[twinhub.Key][]*grant{}
	}
	s.byIdentity[g.device] = append(list, p)
	return p
}

// forIdentity is the grants that may let the connection act as k: its
// own, newest first, then the policies'.
func (s *grantSet) forIdentity(k twinhub.Key) []*grant {
	own := s.byIdentity[k]
	if len(own) == 0 {
		return s.policies
	}
	out := make([]*grant, 0, len(own)+len(s.policies))
	for i := len(own) - 1; i >= 0; i-- {
		out = append(out, own[i])
	}
	return append(out, s.policies...)
}

// revoke ends the grants of the identities that match (the links that
// hold them find them no longer valid); the policies' stay.
func (s *grantSet) revoke(match func(twinhub.Key) bool) {
	for k, gs := range s.byIdentity {
		if match(k) {
			for _, g := range gs {
				g.revoked = true
			}
			delete(s.byIdentity, k)
		}
	}
}

// valid says whether g is still a grant of the connection, unexpired.
// Called with the connection's mu held.
func (g *grant) valid() bool { return !g.revoked && time.Now().Before(g.expires) }
