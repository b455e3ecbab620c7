// Package hubtest starts a hub on an embedded JetStream in a temporary
// folder, for the tests of the packages that sit on the hub.
package hubtest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

// Host is the host name of test hubs.
const Host = "hub.example"

// Hub is a running test hub with its policies.
type Hub struct {
	*twinhub.Hub
	Policies []sas.Policy
}

// New starts a hub that stops when the test ends.
func New(t testing.TB) *Hub {
	t.Helper()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); e.Close() })
	store, err := jetstream.OpenStore(ctx, e.Conn, jetstream.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	policies, err := sas.DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	h, err := twinhub.New(ctx, twinhub.Config{
		Host: Host, Policies: policies, Store: store, Bus: jetstream.NewBus(e.Conn),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Hub{Hub: h, Policies: policies}
}

// Policy returns the named policy.
func (h *Hub) Policy(name string) sas.Policy {
	for _, p := range h.Policies {
		if p.Name == name {
			return p
		}
	}
	panic("hubtest: no policy " + name)
}

// ServiceToken is an hour-long SAS token of the named policy.
func (h *Hub) ServiceToken(policy string) string {
	p := h.Policy(policy)
	tok, err := sas.NewToken(Host, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		panic(err)
	}
	return tok
}
