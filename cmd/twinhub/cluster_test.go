package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// TestHAProxyConfig: every hub port of the front goes to the same port of
// each node; Debian's haproxy accepts the configuration when installed;
// what is not an address is refused.
func TestHAProxyConfig(t *testing.T) {
	cfg, err := haproxyConfig(haproxyOptions{front: "10.0.0.10", nodes: []string{"10.0.0.1", "node-2.example.com", "::1"}, maxconn: 100, readyzPort: 9464})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"maxconn 100\n",
		"bind 10.0.0.10:443\n",
		"bind 10.0.0.10:8883\n",
		"bind 10.0.0.10:5671\n",
		"server n1 10.0.0.1:8883 check inter 500ms fall 2 rise 2 port 9464\n",
		"server n2 node-2.example.com:5671 check",
		"server n3 [::1]:443 check",
		"option httpchk GET /readyz\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, cfg)
		}
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err == nil {
		for _, readyz := range []int{0, 9464} {
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			conf, _ := haproxyConfig(haproxyOptions{front: "127.0.0.1", nodes: []string{"127.0.0.2", "127.0.0.3"}, maxconn: 100, readyzPort: readyz})
			os.WriteFile(path, []byte(conf), 0o600)
			if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
				t.Errorf("haproxy -c refuses the configuration: %v\n%s\n%s", err, out, conf)
			}
		}
	}
	for _, bad := range []haproxyOptions{
		{front: "10.0.0.10", nodes: []string{"10.0.0.1\n  server evil 1.2.3.4"}, maxconn: 1},
		{front: "", nodes: []string{"10.0.0.1"}, maxconn: 1},
		{front: "10.0.0.10", nodes: []string{"10.0.0.1"}, maxconn: 0},
		{front: "10.0.0.10", nodes: []string{"10.0.0.1"}, maxconn: 1, readyzPort: 70000},
	} {
		if _, err := haproxyConfig(bad); err == nil {
			t.Errorf("haproxyConfig(%+v) is accepted", bad)
		}
	}
}
