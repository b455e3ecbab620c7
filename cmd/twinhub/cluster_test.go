package main

import (
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub/jetstream"
)

// TestPrintClusterStatus: the table names every node with its devices,
// the meta leader, and each stream's replicas with their state.
func TestPrintClusterStatus(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	s := clusterStatus{
		AskedNode: "n1",
		Nodes: []jetstream.NodeStatus{
			{Name: "n1", Started: now.Add(-time.Hour), Addresses: map[string]string{"https": "10.0.0.1:443"}, Connections: map[string]int{"mqtt": 7, "amqp": 2}},
			{Name: "n2", Started: now.Add(-time.Minute), Connections: map[string]int{"mqtt": 5}},
		},
		Meta: &jetstream.MetaStatus{Leader: "n2", Size: 3, Peers: []jetstream.PeerStatus{{Name: "n1", Current: true}, {Name: "n3", Offline: true, ActiveMs: 9000}}},
		Streams: []jetstream.StreamStatus{
			{Name: "KV_twinhub-registry", Replicas: 3, Leader: "n1", Messages: 12, Bytes: 3400, Peers: []jetstream.PeerStatus{{Name: "n2", Current: true}, {Name: "n3", Lag: 4}}},
		},
	}
	var b strings.Builder
	printClusterStatus(&b, s, now)
	out := b.String()
	for _, want := range []string{
		"Nodes answering n1: 2",
		"n1    1h0m0s  10.0.0.1:443",
		"leader n2",
		"n3    offline  9s ago",
		"KV_twinhub-registry  3         n1      12        3400   n2 current, n3 behind by 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the status table lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	printClusterStatus(&b, clusterStatus{AskedNode: "n1", StreamsError: "no quorum"}, now)
	if !strings.Contains(b.String(), "Streams: unreadable: no quorum") {
		t.Errorf("a status without streams:\n%s", b.String())
	}
}
