package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/metrics"
)

// newMetrics makes the hub's metrics when --metrics-addr asks for them
// (nil otherwise: the hub and the front ends then record nothing). core
// gives the hub once it runs, for the registry's counts.
func newMetrics(f *serveFlags, core func() *hub.Hub) *metrics.Metrics {
	if f.metricsAddr == "" {
		return nil
	}
	return metrics.New(func(ctx context.Context) (metrics.Registry, error) {
		h := core()
		if h == nil {
			return metrics.Registry{}, errors.New("the hub is starting")
		}
		ds, ss, err := h.Statistics(ctx)
		if err != nil {
			return metrics.Registry{}, err
		}
		lag, err := h.IndexLag(ctx)
		if err != nil {
			return metrics.Registry{}, err
		}
		return metrics.Registry{Devices: int64(ds.TotalDeviceCount), EnabledDevices: int64(ds.EnabledDeviceCount),
			DisabledDevices: int64(ds.DisabledDeviceCount), ConnectedDevices: int64(ss.ConnectedDeviceCount), IndexLag: lag}, nil
	})
}

// metricsAddr is --metrics-addr as a listening address: a bare port
// (":9090" or "9090") is on loopback, since metrics are served without
// TLS or authentication; a host:port is taken as given.
func metricsAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return net.JoinHostPort("127.0.0.1", addr)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// serveMetrics serves /metrics, /healthz and /readyz on --metrics-addr
// (plain HTTP). Ready means the hub answers (Hub.Ready), its listeners
// are open (serving, set once they are and cleared at shutdown), and the
// extra checks pass (an embedded cluster's quorum). listens is the
// address it listens on (a port 0 chosen).
func serveMetrics(m *metrics.Metrics, addr string, core *hub.Hub, serving *atomic.Bool, log *slog.Logger, extra ...metrics.Check) (stop func(), listens string, err error) {
	ln, err := listen(metricsAddr(addr), "--metrics-addr")
	if err != nil {
		return nil, "", err
	}
	checks := []metrics.Check{
		{Name: "store", Run: core.Ready},
		{Name: "listeners", Run: func(context.Context) error {
			if !serving.Load() {
				return errors.New("the hub's listeners are not open (starting or shutting down)")
			}
			return nil
		}},
	}
	checks = append(checks, extra...)
	srv := &http.Server{Handler: m.Handler(checks), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener", "err", err)
		}
	}()
	log.Info("metrics", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}

// streamStats reads the hub's JetStream streams for the metrics: those
// whose names begin with twinhub's prefixes (KV_twinhub-... buckets and
// twinhub-... streams), so that other users of an external NATS stay out.
func streamStats(nc *nats.Conn) func(ctx context.Context) ([]metrics.Stream, error) {
	return func(ctx context.Context) ([]metrics.Stream, error) {
		streams, err := jetstream.Streams(ctx, nc)
		out := make([]metrics.Stream, 0, len(streams))
		for _, s := range streams {
			out = append(out, metrics.Stream{Name: s.Name, Bytes: s.Bytes, Messages: s.Messages})
		}
		return out, err
	}
}

// queueStats reads the lengths of the hub's queues for the metrics.
func queueStats(nc *nats.Conn) func(ctx context.Context) ([]metrics.Queue, error) {
	return func(ctx context.Context) ([]metrics.Queue, error) {
		lengths, err := jetstream.QueueLengths(ctx, nc)
		out := make([]metrics.Queue, 0, len(lengths))
		for name, n := range lengths {
			out = append(out, metrics.Queue{Name: name, Messages: n})
		}
		return out, err
	}
}
