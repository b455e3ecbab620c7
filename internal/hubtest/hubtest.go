// Package hubtest starts a hub on an embedded JetStream in a temporary
// folder, for the tests of the packages that sit on the hub.
package hubtest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

// Host is the host name of test hubs unless WithHost names another.
const Host = "hub.example"

// Hub is a running test hub with its policies.
type Hub struct {
	*hub.Hub
	Policies []sas.Policy
	// Conn is a connection to the hub's embedded NATS server, for a test
	// that opens more of the JetStream backbone itself.
	Conn *nats.Conn
	opts options
}

// Option changes the hub New starts.
type Option func(*options)

type options struct {
	host      string
	messaging bool
	telemetry twinhub.TelemetryStore
	config    func(*hub.Config)
}

// WithHost names the hub host instead of Host, e.g. "localhost" for a
// test whose TLS certificate is issued for that name.
func WithHost(host string) Option { return func(o *options) { o.host = host } }

// WithMessaging gives the hub what `twinhub serve` gives it for messages:
// telemetry streams, cloud-to-device queues, stores of feedback and of
// file-upload notifications, and the Event Hubs endpoint's consumer
// groups, each with one replica. Without it telemetry is dropped and C2D refused.
func WithMessaging() Option { return func(o *options) { o.messaging = true } }

// WithConfig lets change the hub's configuration before it starts (and
// that of every Node of it), for a test that needs another setting.
func WithConfig(change func(*hub.Config)) Option {
	return func(o *options) { o.config = change }
}

// WithTelemetry gives the hub s as its telemetry store (and, unlike
// WithMessaging, no C2D queues or feedback), for a test that controls
// when events are stored.
func WithTelemetry(s twinhub.TelemetryStore) Option {
	return func(o *options) { o.telemetry = s }
}

// New starts a hub that stops when the test ends; its log is discarded.
func New(t testing.TB, opts ...Option) *Hub {
	t.Helper()
	o := options{host: Host}
	for _, opt := range opts {
		opt(&o)
	}
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	policies, err := sas.DefaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	return start(t, e.Conn, policies, o)
}

// Node starts another node of h's hub, as `twinhub serve --nats` does on
// a second machine: its own hub on h's NATS, with h's host name, policies
// and options, so that the two share every twin, device and message
// queue. It stops when the test ends.
func (h *Hub) Node(t testing.TB) *Hub {
	t.Helper()
	return start(t, h.Conn, h.Policies, h.opts)
}

// start runs a hub on nc until the test ends.
func start(t testing.TB, nc *nats.Conn, policies []sas.Policy, o options) *Hub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store, err := jetstream.OpenStore(ctx, nc, jetstream.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := hub.Config{Host: o.host, Policies: policies, Store: store, Bus: jetstream.NewBus(nc), Log: log}
	jobs, err := jetstream.OpenJobs(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.Jobs, c.ImportExportJobs = jobs, jobs
	if c.Configurations, err = jetstream.OpenConfigurations(ctx, nc, 1); err != nil {
		t.Fatal(err)
	}
	if o.messaging {
		if c.Telemetry, err = jetstream.OpenTelemetry(ctx, nc, jetstream.TelemetryOptions{Log: log}); err != nil {
			t.Fatal(err)
		}
		if c.C2D, err = jetstream.OpenC2D(ctx, nc, 1); err != nil {
			t.Fatal(err)
		}
		if c.Feedback, err = jetstream.OpenFeedback(ctx, nc, 1); err != nil {
			t.Fatal(err)
		}
		if c.FileNotifications, err = jetstream.OpenFileNotifications(ctx, nc, 1); err != nil {
			t.Fatal(err)
		}
		if c.ConsumerGroups, err = jetstream.OpenConsumerGroups(ctx, nc, 1); err != nil {
			t.Fatal(err)
		}
	}
	if o.telemetry != nil {
		c.Telemetry = o.telemetry
	}
	if o.config != nil {
		o.config(&c)
	}
	h, err := hub.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return &Hub{Hub: h, Policies: policies, Conn: nc, opts: o}
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
	tok, err := sas.NewToken(h.Host(), p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		panic(err)
	}
	return tok
}

// TwinReader is what Twin reads a twin from: a hub.Hub, or a Hub of this
// package.
type TwinReader interface {
	TwinJSON(ctx context.Context, k twinhub.Key) ([]byte, error)
}

// Twin returns the twin of k as GET /twins/{id} shows it, decoded, and
// fails the test if it cannot be read.
func Twin(t testing.TB, h TwinReader, k twinhub.Key) map[string]any {
	t.Helper()
	data, err := h.TwinJSON(context.Background(), k)
	if err != nil {
		t.Fatalf("reading the twin of %s: %v", k, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the twin of %s is not JSON: %v", k, err)
	}
	return doc
}
