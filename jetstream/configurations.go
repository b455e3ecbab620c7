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
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{Bucket: ConfigurationBucket, Description: "twinhub automatic device and module configurations"}, replicas)
	if err != nil {
		return nil, err
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
	if keyMissing(err) {
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
	var all []*twinhub.Configuration
	err := lastValues(ctx, s.kv, ">", func(key string, value []byte) error {
		c, err := decodeConfiguration(value)
		if err != nil {
			return fmt.Errorf("configuration %s: %w", key, err)
		}
		all = append(all, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].CreatedTimeUtc.Before(all[b].CreatedTimeUtc.Time) })
	return all, nil
}
