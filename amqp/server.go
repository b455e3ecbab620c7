// Package amqp is twinhub's AMQP 1.0 endpoint (TLS on 5671), the
// protocol of the service SDKs' cloud-to-device sends and feedback, of
// Event Hubs readers of telemetry, and of AMQP devices. Like the other
// front ends it holds connections and protocol state only and calls the
// hub for everything else.
//
// What is where: the connection, its sessions and frames (conn.go), links
// and credit (link.go), SASL (sasl.go) and CBS grants ($cbs put-token:
// cbs.go); the service side: cloud-to-device send on
// /messages/devicebound (c2d.go), the feedback and file-notification
// receivers (servicebound.go), the Event Hubs-compatible entity over the
// telemetry (partition readers, $management, the redirect from
// messages/events: eventhub.go); the device side: telemetry, C2D,
// connection state, takeover and revocation (devices.go), twins (twin.go),
// direct methods (methods.go); and how work runs off the reader: a link's
// worker (worker.go), settlements of asynchronously stored messages
// (settle.go), goroutines that exist only while there is work
// (ondemand.go), WebSocket (websocket.go). Attaches to any other node are
// refused with amqp:not-found, the way the SDKs recognise a refusal (a null
// source and target, then a detach with the error; ../shared/AMQP.md).
//
// The framing is hand-written in amqp/wire: no Go AMQP 1.0 server
// library exists.
package amqp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/accept"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/throttle"
)

// Options configure the endpoint; zero values take the defaults.
type Options struct {
	Log *slog.Logger
	// MaxFrameSize is the largest frame the hub accepts (default 65536,
	// what the SDKs expect).
	MaxFrameSize uint32
	// IdleTimeout is how long the hub lets a connection be silent
	// (default 240 s): clients send empty frames at half of it.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake, SASL and open (default
	// 30 s).
	HandshakeTimeout time.Duration
	// DeviceCA verifies the client certificates of devices registered
	// for CA authentication (--device-ca), as over MQTT.
	DeviceCA *x509.CertPool
	// Throttle is the hub's rates, shared with the other front ends:
	// devices' telemetry over the rate is stored later (its disposition
	// comes later, as MQTT's PUBACK does), twin reads and updates over
	// theirs are answered 429, a device's first link over the rate of new
	// connections is refused with com.microsoft:device-container-throttled.
	Throttle *throttle.Throttle
	// Metrics counts devices' connection attempts by result (a device's
	// token put on $cbs or by SASL, its first link) and their ends (its
	// last link); nil records nothing.
	Metrics *metrics.Metrics
}

// metricsTransport is the transport the metrics count AMQP device
// connections under, over TLS and WebSocket alike.
const metricsTransport = "amqp"

// Server is the AMQP endpoint of one hub.
type Server struct {
	hub  *hub.Hub
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup

	// readers are the Event Hubs partition readers of every connection,
	// which epochs order (eventhub.go).
	readersMu sync.Mutex
	readers   map[partitionKey][]*partitionReader

	// unwatch ends the watches of revoked identities (revoke) and of
	// device connections (takeover).
	unwatch func()
}

// New returns the AMQP endpoint of core.
func New(core *hub.Hub, o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = 65536
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 240 * time.Second
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	s := &Server{hub: core, opts: o, log: o.Log,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}, readers: map[partitionKey][]*partitionReader{}}
	unwatchRevoked, err := core.WatchRevocations(func(k twinhub.Key) { go s.revoke(k) })
	if err != nil {
		s.log.Warn("amqp: watching deleted and disabled devices; their open links stay until they close", "err", err)
		unwatchRevoked = func() {}
	}
	unwatchConns, err := core.WatchConnections(func(k twinhub.Key, connID string) { go s.takeover(k, connID) })
	if err != nil {
		s.log.Warn("amqp: watching device connections; a device connected again elsewhere keeps its links here until they close", "err", err)
		unwatchConns = func() {}
	}
	s.unwatch = func() { unwatchRevoked(); unwatchConns() }
	return s
}

// takeover has every connection with an older connection of identity k
// than connID detach its links (conn.takeover).
func (s *Server) takeover(k twinhub.Key, connID string) {
	for _, c := range s.liveConns() {
		c.takeover(k, connID)
	}
}

// liveConns are the connections now.
func (s *Server) liveConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// revoke detaches the links of identity k, and for a device those of its
// modules, on every connection: it was deleted or disabled, and IoT Hub
// drops its connections then. Only its links go, with
// amqp:unauthorized-access: other devices multiplexed on the same
// connection go on.
func (s *Server) revoke(k twinhub.Key) {
	for _, c := range s.liveConns() {
		c.revoke(k)
	}
}

// DeviceConnections is how many devices and modules have links on this
// server's connections (a device multiplexed with others counts once).
func (s *Server) DeviceConnections() int {
	n := 0
	for _, c := range s.liveConns() {
		c.mu.Lock()
		n += len(c.devices)
		c.mu.Unlock()
	}
	return n
}

// Serve accepts connections on ln and speaks AMQP over TLS on them with
// tlsConf until ln fails or the server closes.
func (s *Server) Serve(ln net.Listener, tlsConf *tls.Config) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	return accept.Loop(ln, s.log, "amqp", s.begin, s.isClosed, func(nc net.Conn) {
		defer s.wg.Done()
		s.serveTLS(nc, tlsConf)
	})
}

func (s *Server) serveTLS(raw net.Conn, tlsConf *tls.Config) {
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	raw.SetDeadline(deadline)
	tc := tls.Server(raw, tlsConf)
	if err := tc.Handshake(); err != nil {
		s.log.Debug("amqp TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	s.ServeConn(tc, tc.ConnectionState().PeerCertificates, deadline)
}

// ServeConn speaks AMQP on an accepted connection (TLS, or a WebSocket
// stream) until it ends; the handshake must end by deadline. certs are
// the client's TLS certificates, with which X.509 devices authenticate.
func (s *Server) ServeConn(nc net.Conn, certs []*x509.Certificate, deadline time.Time) {
	c := newConn(s, nc)
	c.certs = certs
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.serve(deadline)
}

func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting, closes every connection (with a close frame
// where it is open) and waits for them until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	s.unwatch()
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
