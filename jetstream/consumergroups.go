package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// ConsumerGroupBucket is the KV bucket of the Event Hubs endpoint's
// consumer groups: one key a group, twinhub.EncodeID of its name in
// lower case, holding the group's JSON.
const ConsumerGroupBucket = "twinhub-consumer-groups"

// ConsumerGroups is twinhub.ConsumerGroupStore on a KV bucket.
type ConsumerGroups struct {
	kv jetstream.KeyValue
}

var _ twinhub.ConsumerGroupStore = (*ConsumerGroups)(nil)

// OpenConsumerGroups creates or opens the bucket.
func OpenConsumerGroups(ctx context.Context, nc *nats.Conn, replicas int) (*ConsumerGroups, error) {
	kv, err := openBucket(ctx, nc, jetstream.KeyValueConfig{Bucket: ConsumerGroupBucket, Description: "twinhub consumer groups of the Event Hubs-compatible endpoint"}, replicas)
	if err != nil {
		return nil, err
	}
	return &ConsumerGroups{kv: kv}, nil
}

func groupKey(name string) string { return twinhub.EncodeID(strings.ToLower(name)) }

func (s *ConsumerGroups) CreateConsumerGroup(ctx context.Context, g twinhub.ConsumerGroup) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, groupKey(g.Name), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return twinhub.ErrExists
	}
	return err
}

func (s *ConsumerGroups) ConsumerGroup(ctx context.Context, name string) (twinhub.ConsumerGroup, error) {
	e, err := s.kv.Get(ctx, groupKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return twinhub.ConsumerGroup{}, twinhub.ErrNotFound
	}
	if err != nil {
		return twinhub.ConsumerGroup{}, err
	}
	var g twinhub.ConsumerGroup
	return g, json.Unmarshal(e.Value(), &g)
}

func (s *ConsumerGroups) ConsumerGroups(ctx context.Context) ([]twinhub.ConsumerGroup, error) {
	var groups []twinhub.ConsumerGroup
	err := lastValues(ctx, s.kv, ">", func(_ string, value []byte) error {
		var g twinhub.ConsumerGroup
		if err := json.Unmarshal(value, &g); err != nil {
			return err
		}
		groups = append(groups, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(groups, func(i, j int) bool { return strings.ToLower(groups[i].Name) < strings.ToLower(groups[j].Name) })
	return groups, nil
}

func (s *ConsumerGroups) DeleteConsumerGroup(ctx context.Context, name string) error {
	k := groupKey(name)
	if _, err := s.kv.Get(ctx, k); errors.Is(err, jetstream.ErrKeyNotFound) {
		return twinhub.ErrNotFound
	} else if err != nil {
		return err
	}
	return s.kv.Purge(ctx, k)
}
