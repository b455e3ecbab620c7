// Package jetstream keeps twinhub's state in NATS JetStream: identity
// records in a KV bucket (store.go) and the events that pass between nodes
// on core NATS subjects (bus.go). By default the NATS server runs inside
// the twinhub process with no listener of its own (server.go); with an
// external URL, several twinhub nodes share one NATS cluster.
package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbeddedOptions configure the in-process NATS server.
type EmbeddedOptions struct {
	// Dir is where JetStream keeps its files.
	Dir string
	// SyncAlways makes JetStream fsync every write before acknowledging
	// it, trading throughput (about 20x here) for durability on power loss.
	// Without it, acknowledged writes survive a crash of the process but
	// the last SyncInterval of writes may be lost if the machine loses power.
	SyncAlways bool
	// SyncInterval is how often JetStream flushes to disk (default 2 min).
	SyncInterval time.Duration
}

// Embedded is a NATS server with JetStream running in this process, and a
// client connection to it that does not go through the network.
type Embedded struct {
	Server *server.Server
	Conn   *nats.Conn
}

// StartEmbedded starts the in-process server and connects to it.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	opts := &server.Options{
		ServerName:         "twinhub",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           o.Dir,
		NoSigs:             true,
		NoLog:              true,
		SyncAlways:         o.SyncAlways,
		SyncInterval:       o.SyncInterval,
		JetStreamMaxMemory: 256 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start within 30s (data in %s)", o.Dir)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("twinhub"), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	return &Embedded{Server: ns, Conn: nc}, nil
}

// Close closes the connection and stops the server, flushing JetStream's
// files so that a restart finds every acknowledged write. (Drain would be
// asynchronous and race the server's shutdown.)
func (e *Embedded) Close() {
	e.Conn.Flush()
	e.Conn.Close()
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// Connect dials an external NATS server or cluster.
func Connect(url string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name("twinhub"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// keepReplicas is the replica count to configure a stream with: what was
// asked, but never fewer than the stream has. Streams are opened with
// create-or-update by every node, so one node started without --replicas
// must not take a cluster's copies away.
func keepReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	want = max(want, 1)
	if s, err := js.Stream(ctx, stream); err == nil {
		if info, err := s.Info(ctx); err == nil {
			return max(want, info.Config.Replicas)
		}
	}
	return want
}

// openBucket creates or opens a plain file-backed KV bucket, keeping the
// replicas it has (keepReplicas): the buckets of consumer groups, jobs and
// configurations.
func openBucket(ctx context.Context, nc *nats.Conn, name, description string, replicas int) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		Storage:     jetstream.FileStorage,
		Replicas:    keepReplicas(ctx, js, "KV_"+name, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", name, err)
	}
	return kv, nil
}

// lastValues calls fn with the current value of every key of kv that
// matches filter, read with one watch of the bucket's last values, until
// fn returns an error (which it returns).
func lastValues(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(key string, value []byte) error) error {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return nil // the last value of every key has come
			}
			if err := fn(e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
