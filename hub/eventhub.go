package hub

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/twinhub/twinhub"
)

// The Event Hubs-compatible endpoint over the telemetry: one entity whose
// partitions are the telemetry's, read from positions the readers keep.

// DefaultEventHubName is the entity name of a hub on host: the host's
// first label (IoT Hub's names its hub), or "twinhub" for an IP address.
func DefaultEventHubName(host string) string {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(strings.Trim(host, "[]")) != nil || host == "" {
		return "twinhub"
	}
	name, _, _ := strings.Cut(host, ".")
	return name
}

// EventHubName is the name of the Event Hubs-compatible entity.
func (h *Hub) EventHubName() string { return h.eventHub }

// partitioned is the telemetry store, when its partitions can be read
// from a position; else a 503 that says so.
func (h *Hub) partitioned() (twinhub.PartitionedTelemetryStore, error) {
	if p, ok := h.telemetry.(twinhub.PartitionedTelemetryStore); ok {
		return p, nil
	}
	return nil, twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub keeps no telemetry that Event Hubs readers can read")
}

// EventPartitions is the telemetry's partition count.
func (h *Hub) EventPartitions() (int, error) {
	p, err := h.partitioned()
	if err != nil {
		return 0, err
	}
	return p.Partitions(), nil
}

// EventPartitionInfo describes partition p of the telemetry.
func (h *Hub) EventPartitionInfo(ctx context.Context, p int) (twinhub.PartitionInfo, error) {
	s, err := h.partitioned()
	if err != nil {
		return twinhub.PartitionInfo{}, err
	}
	return s.PartitionInfo(ctx, p)
}

// ReadEventPartition reads partition p of the telemetry from a position;
// see PartitionedTelemetryStore.ReadPartition.
func (h *Hub) ReadEventPartition(ctx context.Context, p int, from twinhub.EventPosition, fn func(*twinhub.Event) error) error {
	s, err := h.partitioned()
	if err != nil {
		return err
	}
	return s.ReadPartition(ctx, p, from, fn)
}

// ConsumerGroups lists the consumer groups, $Default first.
func (h *Hub) ConsumerGroups(ctx context.Context) ([]twinhub.ConsumerGroup, error) {
	groups := []twinhub.ConsumerGroup{{Name: twinhub.DefaultConsumerGroup}}
	if h.groups == nil {
		return groups, nil
	}
	more, err := h.groups.ConsumerGroups(ctx)
	return append(groups, more...), err
}

// CreateConsumerGroup makes a consumer group: 400 for a name Event Hubs
// would refuse, 409 ConsumerGroupAlreadyExists for one that exists (in
// any case), 503 for a hub that keeps none.
func (h *Hub) CreateConsumerGroup(ctx context.Context, name string) (twinhub.ConsumerGroup, error) {
	if err := twinhub.ValidateConsumerGroupName(name); err != nil {
		return twinhub.ConsumerGroup{}, err
	}
	if h.groups == nil {
		return twinhub.ConsumerGroup{}, twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub keeps no consumer groups")
	}
	g := twinhub.ConsumerGroup{Name: name, Created: twinhub.Now()}
	if err := h.groups.CreateConsumerGroup(ctx, g); err != nil {
		if errors.Is(err, twinhub.ErrExists) {
			return twinhub.ConsumerGroup{}, twinhub.Errorf(http.StatusConflict, "ConsumerGroupAlreadyExists", "consumer group %s exists", name)
		}
		return twinhub.ConsumerGroup{}, err
	}
	return g, nil
}

// DeleteConsumerGroup removes a consumer group; $Default stays (400).
func (h *Hub) DeleteConsumerGroup(ctx context.Context, name string) error {
	if strings.EqualFold(name, twinhub.DefaultConsumerGroup) {
		return twinhub.ErrInvalid("consumer group %s cannot be deleted", twinhub.DefaultConsumerGroup)
	}
	if h.groups == nil {
		return twinhub.ErrConsumerGroupNotFound(name)
	}
	err := h.groups.DeleteConsumerGroup(ctx, name)
	if errors.Is(err, twinhub.ErrNotFound) {
		return twinhub.ErrConsumerGroupNotFound(name)
	}
	return err
}

// CheckConsumerGroup says whether a consumer group exists (404
// ConsumerGroupNotFound when not).
func (h *Hub) CheckConsumerGroup(ctx context.Context, name string) error {
	if strings.EqualFold(name, twinhub.DefaultConsumerGroup) {
		return nil
	}
	if h.groups == nil {
		return twinhub.ErrConsumerGroupNotFound(name)
	}
	_, err := h.groups.ConsumerGroup(ctx, name)
	if errors.Is(err, twinhub.ErrNotFound) {
		return twinhub.ErrConsumerGroupNotFound(name)
	}
	return err
}
