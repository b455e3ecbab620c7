// Package mqtt is twinhub's device endpoint: MQTT 3.1.1 over TLS (port
// 8883) and over WebSocket (path /$iothub/websocket on the HTTPS port), as
// Azure IoT Hub speaks it to the official device SDKs.
//
// twinhub is not a general broker. A device authenticates as one identity
// (a device, or a module of a device) and may only use IoT Hub's topics
// about itself: read its twin, patch its reported properties, hear about
// desired-property changes (handlers.go, desired.go), answer direct
// methods (methods.go), send telemetry (handlers.go, stored by the hub
// before the PUBACK) and receive cloud-to-device messages (c2d.go).
// Nothing is routed between clients. Packets are encoded and decoded by the packets package
// of github.com/mochi-mqtt/server/v2; the session logic is here.
//
// Each connection has one goroutine reading and handling its requests in
// order, and one writing from a bounded queue: a client that stops reading
// is disconnected when its queue fills, and never holds up the hub or
// other clients.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/accept"
	"github.com/twinhub/twinhub/internal/wsstream"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/throttle"
)

// Defaults of Options.
const (
	// DefaultMaxPacketSize is IoT Hub's 256 KB message limit plus room for
	// a topic with its property bag.
	DefaultMaxPacketSize = 256*1024 + 16*1024
	// DefaultConnectTimeout bounds the TLS handshake plus the CONNECT.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultWriteTimeout is how long a write to a client may block before
	// the client counts as dead.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxQueueBytes bounds what waits to be written to one client.
	DefaultMaxQueueBytes = 1 << 20
	// DefaultSessionExpiry is how long the subscriptions of a session with
	// CleanSession=0 are kept after its connection ends.
	DefaultSessionExpiry = 24 * time.Hour
	// DefaultRequestTimeout bounds one call into the hub.
	DefaultRequestTimeout = 30 * time.Second

	// MaxKeepAlive is the longest keep-alive IoT Hub honours (seconds); a
	// client asking for more, or for none (0), gets this one. A client is
	// dropped after 1.5 keep-alives without a packet, as MQTT says.
	MaxKeepAlive = 1177

	// WebSocketPath is where MQTT over WebSocket is served, and
	// WebSocketSubprotocol the subprotocol the SDKs ask for.
	WebSocketPath        = "/$iothub/websocket"
	WebSocketSubprotocol = "mqtt"
)

// Message is a device-to-cloud message as a device sent it.
type Message struct {
	Identity   twinhub.Key
	AuthMethod string
	Properties []Property
	Body       []byte
	Received   time.Time
}

// Options configure a Server. The zero value works.
type Options struct {
	// DeviceCA verifies the certificates of identities registered with
	// certificateAuthority authentication; without it they are refused.
	DeviceCA *x509.CertPool
	Log      *slog.Logger

	MaxPacketSize  int
	ConnectTimeout time.Duration
	WriteTimeout   time.Duration
	MaxQueueBytes  int
	RequestTimeout time.Duration
	// Sessions keeps the sessions of devices that connect with
	// CleanSession=0 (their subscriptions), saved when they change, so
	// that a device resumes its session after a restart or on another
	// node (the store's); without it sessions live in this process's
	// memory. SessionExpiry is how long an unsaved session lives there,
	// and how often a connected device's session is saved again, at half
	// of it, to keep it from a store's expiry of the same length.
	Sessions      twinhub.SessionStore
	SessionExpiry time.Duration
	// DesiredGapWait is how long a desired-property change waits for an
	// earlier version that has not arrived yet (default 1 s).
	DesiredGapWait time.Duration

	// Throttle limits new connections (refused with CONNACK 3, server
	// unavailable), twin requests (answered 429 on the twin response
	// topic) and telemetry (its PUBACK delayed); nil limits nothing.
	Throttle *throttle.Throttle

	// Metrics counts connection attempts by result and disconnections;
	// nil records nothing.
	Metrics *metrics.Metrics

	// Telemetry, when set, receives device-to-cloud messages instead of
	// the hub (Hub.SendEvent). The PUBACK waits for it, and an error
	// closes the connection (the SDK sends again).
	Telemetry func(ctx context.Context, m Message) error
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = DefaultMaxPacketSize
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.SessionExpiry <= 0 {
		o.SessionExpiry = DefaultSessionExpiry
	}
	if o.DesiredGapWait <= 0 {
		o.DesiredGapWait = hub.DefaultGapWait
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
}

// Server serves the device endpoint of one hub.
type Server struct {
	hub  *hub.Hub
	opts Options
	log  *slog.Logger

	ctx    context.Context // ends when the server closes
	cancel context.CancelFunc

	mu        sync.Mutex
	live      map[twinhub.Key]*conn // the current connection of each identity
	all       map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup

	sessions twinhub.SessionStore
	unwatch  func()

	stripes [256]sync.Mutex

	upgrader websocket.Upgrader
}

// New returns a server for hub. Close it to end its connections.
func New(core *hub.Hub, o Options) (*Server, error) {
	o.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		hub:       core,
		opts:      o,
		log:       o.Log,
		ctx:       ctx,
		cancel:    cancel,
		live:      map[twinhub.Key]*conn{},
		all:       map[*conn]struct{}{},
		listeners: map[net.Listener]struct{}{},
		sessions:  o.Sessions,
	}
	if s.sessions == nil {
		mem := newMemorySessions(o.SessionExpiry)
		go mem.sweep(ctx)
		s.sessions = mem
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: o.ConnectTimeout,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  16 << 10,
		Subprotocols:     []string{WebSocketSubprotocol},
		// Devices are not browsers; an Origin header means nothing here.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	unwatch, err := core.WatchConnections(s.takeover)
	if err != nil {
		cancel()
		return nil, err
	}
	unrevoke, err := core.WatchRevocations(s.revoke)
	if err != nil {
		unwatch()
		cancel()
		return nil, err
	}
	s.unwatch = func() { unwatch(); unrevoke() }
	return s, nil
}

// TLSConfig derives the MQTT listener's TLS configuration from the hub's:
// same certificate, client certificates requested (X.509 devices present
// one, SAS devices none; the hub checks them at CONNECT, since self-signed
// device certificates chain to nothing), no HTTP protocols offered.
func TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequestClientCert
	c.NextProtos = nil
	return c
}

// Serve accepts connections on ln and speaks MQTT over TLS on them with
// config tlsConf (see TLSConfig) until ln fails or the server closes.
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
	return accept.Loop(ln, s.log, "mqtt", s.begin, s.isClosed, func(nc net.Conn) {
		defer s.wg.Done()
		s.serveTLS(nc, tlsConf)
	})
}

func (s *Server) serveTLS(raw net.Conn, tlsConf *tls.Config) {
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
		tc.SetNoDelay(true)
	}
	deadline := time.Now().Add(s.opts.ConnectTimeout)
	raw.SetDeadline(deadline)
	tc := tls.Server(raw, tlsConf)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("mqtt TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	// Closing the TCP connection, not the TLS one, ends a connection at
	// once: tls.Conn.Close would first try to send close_notify, which can
	// block for seconds on a client that does not read.
	s.serveConn(tc, raw, tc.ConnectionState().PeerCertificates, "mqtt", deadline)
}

// ServeHTTP upgrades a request for WebSocketPath to a WebSocket carrying
// MQTT. Mount it on the HTTPS server (see Handler).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade has answered with an HTTP error already.
		s.log.Debug("mqtt websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(int64(2 * s.opts.MaxPacketSize))
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	nc := wsstream.New(ws)
	deadline := time.Now().Add(s.opts.ConnectTimeout)
	nc.SetDeadline(deadline)
	// gorilla's Close closes the network connection without a close frame.
	s.serveConn(nc, nc, certs, "mqtt-ws", deadline)
}

// Handler routes WebSocketPath to the device endpoint and everything else
// to next (the REST API), so both share the HTTPS listener as on IoT Hub.
func (s *Server) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == WebSocketPath {
			s.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Close stops the listeners and ends every connection, recording the
// devices as disconnected; it waits for that, up to ctx.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.unwatch()
	for _, c := range conns {
		c.close(errServerClosing)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// begin counts a connection in the server's wait group unless the server
// is closing (Close waits for the count to drop to zero).
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Connections is the number of live, authenticated connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// register makes c the connection of its identity, closing the one it
// replaces on this node, which it returns. It fails once the server is
// closing. The caller announces the connection to the other nodes.
func (s *Server) register(c *conn) (*conn, bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false
	}
	old := s.live[c.key]
	s.live[c.key] = c
	s.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		old.close(errReplaced)
	}
	return old, true
}

// lockIdentity serializes the connection-state changes of one identity on
// this node (striped: identities share 256 locks).
func (s *Server) lockIdentity(k twinhub.Key) (unlock func()) {
	h := fnv.New32a()
	h.Write([]byte(k.DeviceID))
	h.Write([]byte{'/'})
	h.Write([]byte(k.ModuleID))
	m := &s.stripes[h.Sum32()%uint32(len(s.stripes))]
	m.Lock()
	return m.Unlock
}

// unregister removes c if it is still its identity's connection, and
// reports whether it was.
func (s *Server) unregister(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live[c.key] != c {
		return false
	}
	delete(s.live, c.key)
	return true
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.all[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.all, c)
	s.mu.Unlock()
}

// takeover handles another node's (or this one's) announcement that
// identity k has the connection connID: an older local connection of k
// gives way.
func (s *Server) takeover(k twinhub.Key, connID string) {
	s.mu.Lock()
	c := s.live[k]
	if c == nil || c.id >= connID {
		s.mu.Unlock()
		return
	}
	delete(s.live, k)
	s.mu.Unlock()
	c.replaced.Store(true)
	c.close(errReplaced)
}

var errRevoked = errors.New("identity deleted or disabled")

// revoke closes the connections of identity k, and for a device those of
// its modules too: it was deleted or disabled. Their state is recorded as
// Disconnected (where the identity still exists), noted before the socket
// closes: a back end that sees the device go and reads it on this node
// then reads Disconnected (reads wait for noted states), as it would if
// finish, which runs after the close, were first.
func (s *Server) revoke(k twinhub.Key) {
	var victims []*conn
	s.mu.Lock()
	if c := s.live[k]; c != nil {
		victims = append(victims, c)
	}
	if k.ModuleID == "" {
		for key, c := range s.live {
			if key.DeviceID == k.DeviceID && key.ModuleID != "" {
				victims = append(victims, c)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		s.hub.NoteConnectionState(c.key, false)
		c.close(errRevoked)
	}
}
