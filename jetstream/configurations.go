package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// ConfigurationBucket keeps configurations by id (twinhub.EncodeID).
const ConfigurationBucket = "twinhub-configurations"

// Configurations is the JetStream store of configurations.
type Configurations struct {
	kv jetstream.KeyValue
}

var _ twinhub.ConfigurationStore = (*Configurations)(nil)

// storedConfiguration is a configuration with the version its etag comes
// from, which the REST shape leaves out.
type storedConfiguration struct {
	twinhub.Configuration
	Version int64 `json:"version"`
}

// OpenConfigurations creates or opens the bucket.
func OpenConfigurations(ctx context.Context, nc *nats.Conn, replicas int) (*Configurations, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ConfigurationBucket,
		Description: "twinhub automatic device and module configurations",
		Storage:     jetstream.FileStorage,
		Replicas:    keepReplicas(ctx, js, "KV_"+ConfigurationBucket, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", ConfigurationBucket, err)
	}
	return &Configurations{kv: kv}, nil
}

func encodeConfiguration(c *twinhub.Configuration) ([]byte, error) {
	return json.Marshal(storedConfiguration{Configuration: *c, Version: c.Version})
}

func decodeConfiguration(data []byte) (*twinhub.Configuration, error) {
	var s storedConfiguration
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	c := s.Configuration
	c.Version = s.Version
	return &c, nil
}

func (s *Configurations) CreateConfiguration(ctx context.Context, c *twinhub.Configuration) error {
	b, err := encodeConfiguration(c)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, twinhub.EncodeID(c.ID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return twinhub.ErrExists
	}
	return err
}

func (s *Configurations) Configuration(ctx context.Context, id string) (*twinhub.Configuration, uint64, error) {
	e, err := s.kv.Get(ctx, twinhub.EncodeID(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, twinhub.ErrNotFound
	} else if err != nil {
		return nil, 0, err
	}
	c, err := decodeConfiguration(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("configuration %s: %w", id, err)
	}
	return c, e.Revision(), nil
}

func (s *Configurations) UpdateConfiguration(ctx context.Context, c *twinhub.Configuration, rev uint64) error {
	b, err := encodeConfiguration(c)
	if err != nil {
		return err
	}
	_, err = s.kv.Update(ctx, twinhub.EncodeID(c.ID), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return twinhub.ErrConflict
	}
	return err
}

func (s *Configurations) DeleteConfiguration(ctx context.Context, id string, rev uint64) error {
	if rev == 0 {
		if _, _, err := s.Configuration(ctx, id); err != nil {
			return err
		}
	}
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := s.kv.Purge(ctx, twinhub.EncodeID(id), opts...)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return twinhub.ErrConflict
	}
	return err
}

func (s *Configurations) Configurations(ctx context.Context) ([]*twinhub.Configuration, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var all []*twinhub.Configuration
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				sort.SliceStable(all, func(a, b int) bool { return all[a].CreatedTimeUtc.Before(all[b].CreatedTimeUtc.Time) })
				return all, nil
			}
			c, err := decodeConfiguration(e.Value())
			if err != nil {
				return nil, fmt.Errorf("configuration %s: %w", e.Key(), err)
			}
			all = append(all, c)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
