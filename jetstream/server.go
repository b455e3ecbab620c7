// Package jetstream keeps twinhub's state in NATS JetStream: identity
// records in a KV bucket (store.go) and the events that pass between nodes
// on core NATS subjects (bus.go). By default the NATS server runs inside
// the twinhub process with no listener of its own (server.go); with an
// external URL, several twinhub nodes share one NATS cluster.
package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
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

	// Cluster, when set, is the address (host:port) this node listens on
	// for the other nodes' routes: the embedded servers of several twinhub
	// nodes then form one NATS cluster, which replicates JetStream's
	// streams (Raft, in nats-server) as an external cluster does. Routes
	// are the other nodes' cluster addresses (nats://host:port); a node
	// may list itself. NodeName names this node in the cluster (unique;
	// default: Cluster), ClusterName the cluster (default "twinhub").
	Cluster     string
	Routes      []string
	NodeName    string
	ClusterName string
	// ClusterSecret is the password every node of the cluster presents
	// on its routes (the same on each node; required with Cluster), and
	// ClusterTLS the TLS of the routes (required with Cluster): a
	// certificate for this node's cluster host and the CA that signs every
	// node's, which it requires of the other side.
	ClusterSecret string
	ClusterTLS    *tls.Config
	// ClusterWait bounds how long the start waits for the cluster's
	// JetStream to answer: until enough nodes are up to elect its leader
	// (default 2 minutes).
	ClusterWait time.Duration
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
	if o.Cluster != "" {
		if err := clusterOptions(opts, o); err != nil {
			return nil, err
		}
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
	connOpts := []nats.Option{nats.InProcessServer(ns), nats.Name("twinhub"), nats.MaxReconnects(-1)}
	if opts.Authorization != "" {
		connOpts = append(connOpts, nats.Token(opts.Authorization))
	}
	nc, err := nats.Connect("", connOpts...)
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	if o.Cluster != "" {
		wait := o.ClusterWait
		if wait <= 0 {
			wait = 2 * time.Minute
		}
		if err := waitForJetStream(ns, nc, wait); err != nil {
			nc.Close()
			ns.Shutdown()
			return nil, err
		}
	}
	return &Embedded{Server: ns, Conn: nc}, nil
}

// clusterOptions makes opts those of one node of a cluster of embedded
// servers.
func clusterOptions(opts *server.Options, o EmbeddedOptions) error {
	host, portText, err := net.SplitHostPort(o.Cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: not host:port: %v", o.Cluster, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("--cluster %q: the port must be 1-65535", o.Cluster)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if o.ClusterSecret == "" || o.ClusterTLS == nil {
		return fmt.Errorf("a cluster's routes need a secret and TLS")
	}
	// nats-server starts routing only once its client listener is up, so
	// a node of a cluster listens for clients too: on a random port of
	// loopback, behind a random token that only this process knows.
	token := make([]byte, 24)
	rand.Read(token)
	opts.DontListen = false
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Authorization = hex.EncodeToString(token)
	opts.ServerName = o.NodeName
	if opts.ServerName == "" {
		opts.ServerName = o.Cluster
	}
	opts.Cluster = server.ClusterOpts{
		Name: o.ClusterName, Host: host, Port: port,
		Username: clusterUser, Password: o.ClusterSecret,
		TLSConfig: o.ClusterTLS, TLSTimeout: 5,
		// The other nodes need not learn this node's loopback client port.
		NoAdvertise: true,
	}
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = "twinhub"
	}
	for _, r := range o.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Scheme != "nats" || u.Host == "" {
			return fmt.Errorf("--routes: %q is not nats://host:port", r)
		}
		u.User = url.UserPassword(clusterUser, o.ClusterSecret)
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// clusterUser is the user name of the routes between twinhub nodes.
const clusterUser = "twinhub"

// waitForJetStream returns once this node is current with the cluster's
// JetStream metadata (a meta leader elected and heard from) and its API
// answers, or fails after timeout saying so. (The API alone may answer
// before there is a leader to create a stream.)
func waitForJetStream(ns *server.Server, nc *nats.Conn, timeout time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := errors.New("no JetStream meta leader yet")
		if ns.JetStreamIsCurrent() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster's JetStream did not answer within %s (are enough nodes up for a quorum, and do --routes reach them?): %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Quorum says whether this node can replicate writes: nil unless it is a
// node of a cluster (EmbeddedOptions.Cluster) that has lost contact with a
// JetStream meta leader, which happens when fewer than a quorum of the
// cluster's nodes are up or reachable.
//
// A follower learns it when the leader's heartbeats stop (no leader
// named); the leader itself stays current, so it counts the peers it has
// heard from lately.
func (e *Embedded) Quorum() error {
	ns := e.Server
	if !ns.JetStreamIsClustered() {
		return nil
	}
	noLeader := errors.New("this node has no contact with a JetStream leader: the cluster has no quorum of its nodes up and routed")
	if !ns.JetStreamIsCurrent() {
		return noLeader
	}
	jsz, err := ns.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return fmt.Errorf("reading the cluster's JetStream state: %v", err)
	}
	if jsz.Meta.Leader == "" {
		return noLeader // a follower may still say it is current
	}
	if !ns.JetStreamIsLeader() {
		return nil
	}
	heard := 1 // this node
	for _, p := range jsz.Meta.Replicas {
		if !p.Offline && p.Active < quorumSilence {
			heard++
		}
	}
	need := jsz.Meta.QuorumNeeded
	if need <= 0 {
		need = jsz.Meta.Size/2 + 1
	}
	if heard < need {
		return fmt.Errorf("this node leads the cluster's JetStream but has heard from %d of its %d nodes lately, fewer than a quorum of %d", heard, jsz.Meta.Size, need)
	}
	return nil
}

// ExternalQuorum says whether the NATS servers nc is connected to (--nats)
// can replicate writes: their JetStream's meta leader answers. A cluster
// that lost a quorum of its servers has no meta leader (a leader that
// stops hearing from a quorum steps down), and then the servers answer
// "cluster not available" or nothing. A single server always has one.
func ExternalQuorum(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if unavailable(err) {
			return fmt.Errorf("the NATS servers' JetStream has no meta leader (fewer than a quorum of the cluster's servers up and routed?): %w", err)
		}
		return fmt.Errorf("reading the NATS servers' JetStream state: %w", err)
	}
	return nil
}

// quorumSilence is how long a peer may go unheard before the leader stops
// counting it towards a quorum (the meta group's heartbeats come every
// second).
const quorumSilence = 5 * time.Second

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

// openBucket creates or opens the file-backed KV bucket conf describes
// (its name, description and any history or TTL), keeping the replicas it
// has (keepReplicas), and tries again while JetStream is busy (openRetry):
// every bucket of the hub.
func openBucket(ctx context.Context, nc *nats.Conn, conf jetstream.KeyValueConfig, replicas int) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	conf.Storage = jetstream.FileStorage
	conf.Replicas = keepReplicas(ctx, js, "KV_"+conf.Bucket, replicas)
	kv, err := openRetry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateOrUpdateKeyValue(ctx, conf) })
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", conf.Bucket, err)
	}
	return kv, nil
}

// keyMissing tells whether a KV read found no value: never written, or
// deleted.
func keyMissing(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
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

// openWait bounds how long opening a stream, bucket or consumer is tried
// again (openRetry).
const openWait = time.Minute

// openRetry runs open until it succeeds, fails for a reason other than a
// timeout or JetStream being unavailable for now, or openWait passes. In a
// new cluster the nodes create the same streams at once, and the requests
// of all but the first may time out while its stream is being placed and
// replicated; on one node it succeeds at once.
//
// The first attempts are short: when two nodes create the same stream at
// once, the request of one can go unanswered, and waiting long for it made
// a new cluster of two nodes take minutes to start (10 s a stream). Each
// attempt waits twice as long as the last, up to 10 s.
func openRetry[T any](ctx context.Context, open func(ctx context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(openWait)
	wait := 3 * time.Second
	for {
		attempt, cancel := context.WithTimeout(ctx, wait)
		v, err := open(attempt)
		cancel()
		if err == nil || !unavailable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		wait = min(2*wait, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
}

// unavailable tells the errors of a JetStream that is busy or has no
// leader yet from the others.
func unavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}
