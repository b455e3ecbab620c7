package amqp

import (
	"time"

	"github.com/twinhub/twinhub"
)

// grantSet is a connection's grants: each device's or module's by
// identity, the policies' in a list. A device's links find its grant by
// identity when they attach, and keep it to check its expiry at each
// message. In one list, a connection that multiplexes thousands of
// devices (a gateway's, or bench sessions-amqp's 4,000) compared strings
// with half of them each time: about a tenth of the hub's CPU while
// those devices attached, and a scan at every message of theirs.
// Guarded by the connection's mu.
type grantSet struct {
	// byIdentity is the last grant put for each device or module (a
	// device renews its token for the same audience).
	byIdentity map[twinhub.Key]*grant
	// policies are the policies' grants, in the order they were put (a
	// connection has few).
	policies []*grant
}

// put keeps g. A renewal (a grant for the audience of one there is, for
// the same identity) takes the place of the earlier grant, so that the
// links that hold it see the new expiry.
func (s *grantSet) put(g grant) *grant {
	if g.policy != "" {
		for _, p := range s.policies {
			if p.audience == g.audience {
				*p = g
				return p
			}
		}
		p := &g
		s.policies = append(s.policies, p)
		return p
	}
	if old := s.byIdentity[g.device]; old != nil && old.audience == g.audience {
		*old = g
		return old
	}
	if s.byIdentity == nil {
		s.byIdentity = map[twinhub.Key]*grant{}
	}
	p := &g
	s.byIdentity[g.device] = p
	return p
}

// forIdentity is the grants that may let the connection act as k: its
// own, then the policies'.
func (s *grantSet) forIdentity(k twinhub.Key) []*grant {
	own := s.byIdentity[k]
	if own == nil {
		return s.policies
	}
	return append([]*grant{own}, s.policies...)
}

// revoke ends the grants of the identities that match (the links that
// hold them find them no longer valid); the policies' stay.
func (s *grantSet) revoke(match func(twinhub.Key) bool) {
	for k, g := range s.byIdentity {
		if match(k) {
			g.revoked = true
			delete(s.byIdentity, k)
		}
	}
}

// valid says whether g is still a grant of the connection, unexpired.
// Called with the connection's mu held.
func (g *grant) valid() bool { return !g.revoked && time.Now().Before(g.expires) }
