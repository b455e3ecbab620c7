package jetstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/certs"
)

// clusterTLS is a node's route TLS from the CA in caDir, its certificate
// in a folder of its own.
func clusterTLS(t *testing.T, caDir, host string) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{certs.CAFile, certs.CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	c, err := certs.ClusterTLS(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hostOf is the host of a host:port.
func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// clusterAddrs are the cluster addresses of the test nodes: a loopback
// address each (127.0.0.84-86, kept for these tests) on NATS's route
// port, outside the ephemeral range, whose ports the kernel also gives the
// many outgoing connections of a test run (a port picked free a moment
// ago can be taken by one of them before a node binds it).
func clusterAddrs() (addrs, routes []string) {
	for i := range 3 {
		a := fmt.Sprintf("127.0.0.%d:6222", 84+i)
		addrs, routes = append(addrs, a), append(routes, "nats://"+a)
	}
	return addrs, routes
}

// startNodes starts a node of each of opts at once (each waits at start
// for a JetStream leader, which needs a quorum of them), named node0,
// node1, ... with folders of their own; those that start are closed when
// the test ends.
func startNodes(t *testing.T, opts []EmbeddedOptions) ([]*Embedded, []error) {
	t.Helper()
	nodes := make([]*Embedded, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		o.Dir, o.NodeName = t.TempDir(), fmt.Sprint("node", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = StartEmbedded(o)
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			t.Cleanup(n.Close)
		}
	}
	return nodes, errs
}

// getRetrying reads k for up to 30 s while the store answers 503
// ServiceUnavailable: a node that has just joined, or whose stream is
// electing a leader, may have no responder for a read yet (CI saw "no
// responders available for request" right after the first write), and a
// client of the hub gets the 503 and tries again.
func getRetrying(ctx context.Context, s *Store, k twinhub.Key) (*twinhub.Record, uint64, error) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, rev, err := s.Get(ctx, k)
		var e *twinhub.Error
		if err == nil || !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r, rev, err
		}
	}
}

// TestEmbeddedCluster: three embedded servers given each other's cluster
// addresses form one cluster; a registry of three replicas written
// through one node is read through another, and goes on taking writes
// with one of the three nodes gone (a quorum of two).
func TestEmbeddedCluster(t *testing.T) {
	addrs, routes := clusterAddrs()
	caDir := t.TempDir() // the CA the nodes share, as they share a hub's
	if err := certs.EnsureCA(caDir); err != nil {
		t.Fatal(err)
	}
	var tlsConfs []*tls.Config
	for _, a := range addrs {
		tlsConfs = append(tlsConfs, clusterTLS(t, caDir, hostOf(a)))
	}
	var opts []EmbeddedOptions
	for i := range 3 {
		opts = append(opts, EmbeddedOptions{Cluster: addrs[i], Routes: routes, ClusterSecret: "s3cret", ClusterTLS: tlsConfs[i]})
	}
	nodes, errs := startNodes(t, opts)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	// Every node knows the cluster's JetStream leader before a store is
	// opened through it: under CI's load a node that had not caught up
	// left its requests unanswered for the whole minute of openRetry.
	for i, n := range nodes {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			err := n.Quorum()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d, 2 min after it started: %v", i, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := OpenStore(ctx, nodes[0].Conn, StoreOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenStore(ctx, nodes[2].Conn, StoreOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("the registry's stream: %d replicas configured, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	k := twinhub.DeviceKey("d1")
	// Right after the streams are placed, a write may go unanswered while
	// the new stream gets ready (503 ServiceUnavailable, as a client of
	// the hub would see it, and try again); one that timed out may still
	// have been stored.
	var rev uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		rev, err = a.Create(ctx, k, deviceRecord("d1"))
		if errors.Is(err, twinhub.ErrExists) {
			_, rev, err = a.Get(ctx, k)
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := getRetrying(ctx, c, k)
	if err != nil || got.Device.DeviceID != "d1" || gotRev != rev {
		t.Fatalf("read through another node: %+v rev %d (want %d) %v", got, gotRev, rev, err)
	}

	// One node goes: the other two still make a quorum.
	nodes[1].Close()
	r2 := deviceRecord("d1")
	r2.Twin.Tags = map[string]any{"after": "a node left"}
	var newRev uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if newRev, err = a.Update(ctx, k, r2, rev); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("a write with one node of three gone: %v", err)
	}
	got, gotRev, err = getRetrying(ctx, c, k)
	if err != nil || gotRev != newRev || got.Twin.Tags["after"] != "a node left" {
		t.Fatalf("after a node left: %+v rev %d (want %d) %v", got, gotRev, newRev, err)
	}
	// Writes at the same revision at once: one wins, the others are
	// conflicts, whichever code the replicated stream gives them (10071,
	// or 10164 while another write of the key is in flight).
	oneWins(t, "writes at one revision", twinhub.ErrConflict, func() error {
		_, err := a.Update(ctx, k, r2, newRev)
		return err
	})
	// Creates of one identity at once: one is made, the others exist.
	oneWins(t, "creates of one identity", twinhub.ErrExists, func() error {
		_, err := a.Create(ctx, twinhub.DeviceKey("d2"), deviceRecord("d2"))
		return err
	})
	// Two of three make a quorum, once they have a meta leader (the node
	// that left may have been it).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := nodes[0].Quorum()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two of three nodes up: %v", err)
		}
	}
	// A second goes: the last one, leader or follower, says it has no
	// quorum once it stops hearing from the others.
	nodes[2].Close()
	for deadline := time.Now().Add(30 * time.Second); nodes[0].Quorum() == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("one node of three up, and it still reports a quorum")
		}
	}
}

// oneWins runs write from eight goroutines at once: exactly one must
// succeed and the others fail with lost.
func oneWins(t *testing.T, what string, lost error, write func() error) {
	t.Helper()
	results := make(chan error, 8)
	for range cap(results) {
		go func() { results <- write() }()
	}
	won := 0
	for range cap(results) {
		switch err := <-results; {
		case err == nil:
			won++
		case !errors.Is(err, lost):
			t.Errorf("%s: %v, want %v", what, err, lost)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d %s succeeded, want 1", won, cap(results), what)
	}
}

// TestEmbeddedClusterRefusesStrangers: a node whose route certificate
// comes from another CA, or that knows another secret, is not let into a
// cluster of two good nodes that it routes to, and does not start.
// (nats-server bootstraps a new cluster only once every route it was
// given is up, so the good nodes list each other only.)
func TestEmbeddedClusterRefusesStrangers(t *testing.T) {
	for _, c := range []struct{ name, otherSecret string }{{"another CA", ""}, {"another secret", "not the secret"}} {
		t.Run(c.name, func(t *testing.T) {
			addrs, routes := clusterAddrs()
			goodCA, strangerCA := t.TempDir(), t.TempDir()
			for _, d := range []string{goodCA, strangerCA} {
				if err := certs.EnsureCA(d); err != nil {
					t.Fatal(err)
				}
			}
			confs := []*tls.Config{clusterTLS(t, goodCA, hostOf(addrs[0])), clusterTLS(t, goodCA, hostOf(addrs[1])), clusterTLS(t, strangerCA, hostOf(addrs[2]))}
			secrets := []string{"s3cret", "s3cret", "s3cret"}
			if c.otherSecret != "" {
				confs[2], secrets[2] = clusterTLS(t, goodCA, hostOf(addrs[2])), c.otherSecret
			}
			var opts []EmbeddedOptions
			for i := range 3 {
				r, wait := routes[:2], 30*time.Second // the good nodes know each other
				if i == 2 {
					r, wait = routes, 5*time.Second // the stranger knows them all
				}
				opts = append(opts, EmbeddedOptions{Cluster: addrs[i], Routes: r, ClusterSecret: secrets[i], ClusterTLS: confs[i], ClusterWait: wait})
			}
			nodes, errs := startNodes(t, opts)
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("the good nodes: %v, %v", errs[0], errs[1])
			}
			if errs[2] == nil {
				t.Error("the stranger started")
			}
			for i := range 2 {
				rz, err := nodes[i].Server.Routez(nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rz.Routes {
					if r.RemoteName != fmt.Sprint("node", 1-i) {
						t.Errorf("good node %d has a route to %q", i, r.RemoteName)
					}
				}
				if len(rz.Routes) == 0 {
					t.Errorf("good node %d has no route to the other", i)
				}
			}
		})
	}
}
