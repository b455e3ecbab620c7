package amqp

import (
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
)

func selectorFilterOf(s string) wire.Map {
	return wire.Map{{Key: selectorFilter, Value: wire.Described{Descriptor: selectorFilterCode, Value: s}}}
}

// TestPositionOf: the selector filters the Event Hubs SDKs send read as
// the positions they mean; others are refused.
func TestPositionOf(t *testing.T) {
	ms := time.UnixMilli(1700000000000)
	for _, c := range []struct {
		filter wire.Map
		want   twinhub.EventPosition
	}{
		{nil, twinhub.EventPosition{}},
		{selectorFilterOf("amqp.annotation.x-opt-offset > '-1'"), twinhub.EventPosition{}},
		{selectorFilterOf("amqp.annotation.x-opt-offset > '@latest'"), twinhub.EventPosition{Latest: true}},
		{selectorFilterOf("amqp.annotation.x-opt-offset >= '12'"), twinhub.EventPosition{Sequence: 12, Inclusive: true}},
		{selectorFilterOf(" amqp.annotation.x-opt-sequence-number > 7 "), twinhub.EventPosition{Sequence: 7}},
		{selectorFilterOf("amqp.annotation.x-opt-enqueued-time > '1700000000000'"), twinhub.EventPosition{After: ms.Add(time.Millisecond - time.Nanosecond)}},
		{selectorFilterOf("amqp.annotation.x-opt-enqueuedtimeutc >= 1700000000000"), twinhub.EventPosition{After: ms.Add(-time.Nanosecond)}},
	} {
		p, err := positionOf(c.filter)
		if err != nil || p.Latest != c.want.Latest || p.Sequence != c.want.Sequence || p.Inclusive != c.want.Inclusive || !p.After.Equal(c.want.After) {
			t.Errorf("%v: %+v, %v; want %+v", c.filter, p, err, c.want)
		}
	}
	for _, bad := range []wire.Map{
		selectorFilterOf("amqp.annotation.x-opt-offset > 'x'"),
		selectorFilterOf("amqp.annotation.x-opt-partition-key = 'a'"),
		selectorFilterOf("DROP TABLE"),
		{{Key: wire.Symbol("apache.org:other"), Value: "x"}},
	} {
		if _, err := positionOf(bad); err == nil {
			t.Errorf("%v: taken", bad)
		}
	}
}

// FuzzEventHubAddress: any link address and selector a client sends is
// read or refused, never a panic; a partition address read back names
// the same parts.
func FuzzEventHubAddress(f *testing.F) {
	f.Add("twinhub/ConsumerGroups/$Default/Partitions/0", "amqp.annotation.x-opt-offset > '-1'")
	f.Add("hub/consumergroups/%24Default/partitions/3", "amqp.annotation.x-opt-enqueued-time > '1700000000000'")
	f.Add("messages/events/", "amqp.annotation.x-opt-sequence-number >= 9223372036854775807")
	f.Add("a//b/c/d", "")
	f.Fuzz(func(t *testing.T, address, filter string) {
		if p, ok := parsePartitionAddress(address); ok {
			if p.entity == "" || p.group == "" || p.partition == "" {
				t.Errorf("%q read as %+v", address, p)
			}
		}
		redirectedAddress(address)
		normalizeAddress(address)
		positionOf(selectorFilterOf(filter))
	})
}
