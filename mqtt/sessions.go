package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// subscriptions records which of the IoT Hub filters a session holds, and
// at which QoS: 0 means not subscribed, otherwise granted QoS + 1.
type subscriptions [numFilters]byte

func (s subscriptions) has(f Filter) bool { return s[f] != 0 }

func (s subscriptions) empty() bool { return s == subscriptions{} }

// filterNames name the filters in a saved session; a name never changes
// once saved sessions use it.
var filterNames = [numFilters]string{
	FilterTwinResponses: "twinResponses",
	FilterDesired:       "desired",
	FilterMethods:       "methods",
	FilterC2D:           "c2d",
	FilterModuleInputs:  "inputs",
}

// savedSession is a session as the SessionStore keeps it: each filter
// subscribed to, with the QoS granted.
type savedSession struct {
	Subscriptions map[string]byte `json:"subscriptions"`
}

func (s subscriptions) encode() []byte {
	saved := savedSession{Subscriptions: map[string]byte{}}
	for f, q := range s {
		if q != 0 {
			saved.Subscriptions[filterNames[f]] = q - 1
		}
	}
	data, _ := json.Marshal(saved) // a map of strings to bytes always encodes
	return data
}

// decodeSession reads a saved session. A filter it does not know (saved
// by a newer version) is left out rather than refused.
func decodeSession(data []byte) (subscriptions, error) {
	var saved savedSession
	var s subscriptions
	if err := json.Unmarshal(data, &saved); err != nil {
		return s, fmt.Errorf("a saved MQTT session: %w", err)
	}
	for name, qos := range saved.Subscriptions {
		if qos > 1 {
			return subscriptions{}, fmt.Errorf("a saved MQTT session: QoS %d for %q", qos, name)
		}
		for f, n := range filterNames {
			if n != "" && n == name {
				s[f] = qos + 1
			}
		}
	}
	return s, nil
}

// memorySessions is the SessionStore of a server given none: sessions in
// this process's memory, lost when it ends.
type memorySessions struct {
	mu     sync.Mutex
	m      map[twinhub.Key]memorySession
	expiry time.Duration
}

type memorySession struct {
	data    []byte
	expires time.Time
}

var _ twinhub.SessionStore = (*memorySessions)(nil)

func newMemorySessions(expiry time.Duration) *memorySessions {
	return &memorySessions{m: map[twinhub.Key]memorySession{}, expiry: expiry}
}

func (s *memorySessions) LoadSession(_ context.Context, k twinhub.Key) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[k]
	if !ok || time.Now().After(st.expires) {
		return nil, false, nil
	}
	return st.data, true, nil
}

func (s *memorySessions) SaveSession(_ context.Context, k twinhub.Key, data []byte) error {
	s.mu.Lock()
	s.m[k] = memorySession{data: data, expires: time.Now().Add(s.expiry)}
	s.mu.Unlock()
	return nil
}

func (s *memorySessions) DeleteSession(_ context.Context, k twinhub.Key) error {
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
	return nil
}

// sweep forgets expired sessions now and then, until ctx ends.
func (s *memorySessions) sweep(ctx context.Context) {
	t := time.NewTicker(min(s.expiry, 10*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for k, st := range s.m {
				if now.After(st.expires) {
					delete(s.m, k)
				}
			}
			s.mu.Unlock()
		}
	}
}
