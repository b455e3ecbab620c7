package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SettingsBucket holds what every node of a hub must agree on and which a
// node's data folder cannot be trusted to hold alone: the hub's identity
// (host name, shared access policies) and its CA. With them in JetStream,
// a node that joins a cluster serves the same hub as the others without
// copying files by hand, and a node of another hub is told so.
const SettingsBucket = "twinhub-settings"

// Settings is the settings bucket: one document per key, opaque here.
// Nodes read and write it as they start, when a new cluster's bucket may
// not have a leader yet, so each call is tried again while JetStream is
// unavailable (openRetry).
type Settings struct{ kv jetstream.KeyValue }

// OpenSettings creates or opens the bucket.
func OpenSettings(ctx context.Context, nc *nats.Conn, replicas int) (*Settings, error) {
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{Bucket: SettingsBucket, Description: "twinhub identity (host name, shared access policies) and CA, shared by every node"}, replicas)
	if err != nil {
		return nil, err
	}
	return &Settings{kv: kv}, nil
}

// Get returns the document under key and its revision; found is false
// when there is none.
func (s *Settings) Get(ctx context.Context, key string) (data []byte, rev uint64, found bool, err error) {
	e, err := openRetry(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return s.kv.Get(ctx, key) })
	if keyMissing(err) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, storeError(err)
	}
	return e.Value(), e.Revision(), true, nil
}

// Agree returns the document under key and its revision, storing proposed
// first when there is none. Of nodes that start at once with different
// proposals, the first stored wins and all of them get it; created tells
// whether it was this one's.
//
// The bucket's reads may be answered by any of its replicas (direct
// gets), and one that has not applied the winner's write yet says there
// is none: after losing the Create, a node reads again until it sees the
// winner's document (for up to about 5 s).
func (s *Settings) Agree(ctx context.Context, key string, proposed []byte) (stored []byte, rev uint64, created bool, err error) {
	lost := false
	for range 50 {
		data, rev, found, err := s.Get(ctx, key)
		if err != nil {
			return nil, 0, false, err
		}
		if found {
			return data, rev, false, nil
		}
		if lost {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil, 0, false, ctx.Err()
			}
			continue
		}
		rev, err = openRetry(ctx, func(ctx context.Context) (uint64, error) { return s.kv.Create(ctx, key, proposed) })
		if err == nil {
			return proposed, rev, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, false, storeError(err)
		}
		lost = true // another node stored one between the Get and the Create
	}
	return nil, 0, false, fmt.Errorf("setting %s: no value could be agreed on", key)
}

// Replace stores data under key if the document is still at revision rev.
func (s *Settings) Replace(ctx context.Context, key string, data []byte, rev uint64) error {
	_, err := openRetry(ctx, func(ctx context.Context) (uint64, error) { return s.kv.Update(ctx, key, data, rev) })
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("setting %s changed meanwhile on another node; start again", key)
	}
	return storeError(err)
}
