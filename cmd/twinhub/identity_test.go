package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/jetstream"
)

func openDir(t *testing.T) datadir.Dir {
	t.Helper()
	d, err := datadir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startNATS starts an embedded NATS server with JetStream in dir until
// the test ends and returns its connection.
func startNATS(t *testing.T, dir string) *nats.Conn {
	t.Helper()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e.Conn
}

// discard is a logger that writes nothing.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func loadCA(t *testing.T, d datadir.Dir) certs.CA {
	t.Helper()
	ca, err := certs.LoadCA(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestSharedIdentity: the first node stores its identity and CA in the
// store; a node with an empty data folder serves the same hub; a node
// with another hub's CA is refused; --hostname renames the hub for every
// node; hub.json is rewritten from the store.
func TestSharedIdentity(t *testing.T) {
	nc := startNATS(t, t.TempDir())
	ctx := context.Background()
	start := func(d datadir.Dir, hostname string) (datadir.Hub, error) {
		h, _, err := sharedIdentity(ctx, d, nc, &serveFlags{hostname: hostname, replicas: 1}, discard)
		return h, err
	}

	first := openDir(t)
	h1, err := start(first, "hub.example")
	if err != nil {
		t.Fatal(err)
	}
	if h1.HostName != "hub.example" || len(h1.Policies) == 0 {
		t.Fatalf("first node's identity: %+v", h1)
	}
	if onDisk, err := first.LoadHub(); err != nil || onDisk.HostName != "hub.example" {
		t.Errorf("first node's hub.json: %+v, %v", onDisk, err)
	}

	second := openDir(t)
	h2, err := start(second, "")
	if err != nil {
		t.Fatal(err)
	}
	if h2.HostName != h1.HostName || !slices.Equal(h2.Policies, h1.Policies) {
		t.Errorf("an empty data folder got %+v, the first node serves %+v", h2, h1)
	}
	if !loadCA(t, second).Same(loadCA(t, first)) {
		t.Error("the second node's CA is not the first's")
	}
	if onDisk, err := second.LoadHub(); err != nil || !slices.Equal(onDisk.Policies, h1.Policies) {
		t.Errorf("second node's hub.json: %+v, %v", onDisk, err)
	}

	stranger := openDir(t)
	if err := certs.EnsureCA(stranger.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := start(stranger, ""); err == nil || !strings.Contains(err.Error(), "another hub's") {
		t.Errorf("a data folder with another CA: %v, want a refusal", err)
	}

	if h, err := start(second, "renamed.example"); err != nil || h.HostName != "renamed.example" {
		t.Fatalf("renaming: %+v, %v", h, err)
	}
	edited, err := first.LoadHub()
	if err != nil {
		t.Fatal(err)
	}
	edited.Policies[0].PrimaryKey = "edited by hand"
	if err := first.SaveHub(edited); err != nil {
		t.Fatal(err)
	}
	h, err := start(first, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.HostName != "renamed.example" || !slices.Equal(h.Policies, h1.Policies) {
		t.Errorf("the first node restarted serves %+v, want the store's renamed identity", h)
	}
	if onDisk, _ := first.LoadHub(); !slices.Equal(onDisk.Policies, h1.Policies) {
		t.Errorf("hub.json edited by hand was not rewritten from the store: %+v", onDisk)
	}
}

// TestSharedIdentityFromOldDataFolder: a data folder from before the
// identity moved into the store keeps its host name, keys and CA.
func TestSharedIdentityFromOldDataFolder(t *testing.T) {
	d := openDir(t)
	old, err := datadir.NewHub("old.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SaveHub(old); err != nil {
		t.Fatal(err)
	}
	if err := certs.EnsureCA(d.Path); err != nil {
		t.Fatal(err)
	}
	ca := loadCA(t, d)
	h, _, err := sharedIdentity(context.Background(), d, startNATS(t, d.File("jetstream")), &serveFlags{replicas: 1}, discard)
	if err != nil {
		t.Fatal(err)
	}
	if h.HostName != "old.example" || !slices.Equal(h.Policies, old.Policies) {
		t.Errorf("identity after the move: %+v, want %+v", h, old)
	}
	if !loadCA(t, d).Same(ca) {
		t.Error("the CA changed")
	}
}

// TestSharedIdentityWaitsForTheNamedNode: in a new cluster, a node with no
// identity of its own waits for the node started with --hostname, rather
// than racing it with an identity named localhost.
func TestSharedIdentityWaitsForTheNamedNode(t *testing.T) {
	nc := startNATS(t, t.TempDir())
	ctx := context.Background()
	named, unnamed := openDir(t), openDir(t)
	if err := certs.EnsureCA(named.Path); err != nil {
		t.Fatal(err)
	}
	ca := loadCA(t, named)
	if err := ca.Write(unnamed.Path); err != nil {
		t.Fatal(err)
	}
	got := make(chan datadir.Hub, 1)
	go func() {
		h, _, err := sharedIdentity(ctx, unnamed, nc, &serveFlags{replicas: 1, cluster: "127.0.0.1:6222"}, discard)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	select {
	case h := <-got:
		t.Fatalf("the unnamed node did not wait: %+v", h)
	case <-time.After(500 * time.Millisecond):
	}
	want, _, err := sharedIdentity(ctx, named, nc, &serveFlags{replicas: 1, cluster: "127.0.0.2:6222", hostname: "hub.example"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	if h := <-got; h.HostName != "hub.example" || !slices.Equal(h.Policies, want.Policies) {
		t.Errorf("the unnamed node serves %+v, the named one %+v", h, want)
	}
}
