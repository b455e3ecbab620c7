package jetstream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// SessionBucket keeps MQTT sessions by identity (twinhub.EncodeKey).
const SessionBucket = "twinhub-sessions"

// Sessions is twinhub.SessionStore on a KV bucket whose entries expire
// expiry after they were last saved (the bucket's MaxAge).
type Sessions struct{ kv jetstream.KeyValue }

var _ twinhub.SessionStore = (*Sessions)(nil)

// OpenSessions creates or opens the bucket, with the expiry given (an
// existing bucket takes it as its new MaxAge).
func OpenSessions(ctx context.Context, nc *nats.Conn, replicas int, expiry time.Duration) (*Sessions, error) {
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{
		Bucket:      SessionBucket,
		Description: "twinhub MQTT sessions (CleanSession=0) by identity: their subscriptions",
		History:     1,
		TTL:         expiry,
	}, replicas)
	if err != nil {
		return nil, err
	}
	return &Sessions{kv: kv}, nil
}

func (s *Sessions) LoadSession(ctx context.Context, k twinhub.Key) ([]byte, bool, error) {
	e, err := s.kv.Get(ctx, twinhub.EncodeKey(k))
	if keyMissing(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storeError(err)
	}
	return e.Value(), true, nil
}

func (s *Sessions) SaveSession(ctx context.Context, k twinhub.Key, data []byte) error {
	_, err := s.kv.Put(ctx, twinhub.EncodeKey(k), data)
	return storeError(err)
}

func (s *Sessions) DeleteSession(ctx context.Context, k twinhub.Key) error {
	// Purge, not Delete: nothing of the session is kept, not even the
	// marker.
	return storeError(s.kv.Purge(ctx, twinhub.EncodeKey(k)))
}
