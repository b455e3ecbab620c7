package hub

import (
	"context"
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
