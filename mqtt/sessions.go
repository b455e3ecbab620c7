package mqtt

import (
	"context"
	"sync"
	"time"
)

// subscriptions records which of the IoT Hub filters a session holds, and
// at which QoS: 0 means not subscribed, otherwise granted QoS + 1.
type subscriptions [numFilters]byte

func (s subscriptions) has(f Filter) bool { return s[f] != 0 }

func (s subscriptions) empty() bool { return s == subscriptions{} }

// sessionStore keeps the subscriptions of sessions with CleanSession=0
// while their client is away, keyed by client id (one identity). The Node
// SDK relies on it: every 45 minutes it reconnects with a new token and
// does not subscribe again. Sessions live in this node's memory only; a
// device that reconnects to another node, or after a restart, starts with
// no subscriptions and gets session present = 0 in its CONNACK.
type sessionStore struct {
	mu     sync.Mutex
	m      map[string]storedSession
	expiry time.Duration
}

type storedSession struct {
	subs    subscriptions
	expires time.Time
}

func newSessionStore(expiry time.Duration) *sessionStore {
	return &sessionStore{m: map[string]storedSession{}, expiry: expiry}
}

// take removes and returns the stored session of clientID.
func (s *sessionStore) take(clientID string) (subscriptions, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[clientID]
	if !ok {
		return subscriptions{}, false
	}
	delete(s.m, clientID)
	if time.Now().After(st.expires) {
		return subscriptions{}, false
	}
	return st.subs, true
}

// put stores a session whose connection ended.
func (s *sessionStore) put(clientID string, subs subscriptions) {
	s.mu.Lock()
	s.m[clientID] = storedSession{subs: subs, expires: time.Now().Add(s.expiry)}
	s.mu.Unlock()
}

func (s *sessionStore) drop(clientID string) {
	s.mu.Lock()
	delete(s.m, clientID)
	s.mu.Unlock()
}

func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// sweep forgets expired sessions now and then, until ctx ends.
func (s *sessionStore) sweep(ctx context.Context) {
	t := time.NewTicker(min(s.expiry, 10*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for id, st := range s.m {
				if now.After(st.expires) {
					delete(s.m, id)
				}
			}
			s.mu.Unlock()
		}
	}
}
