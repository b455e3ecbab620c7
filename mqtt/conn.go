package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/deadline"
)

// Why connections end. Only the ones a client may want to know about are
// logged above debug level.
var (
	errClosed          = errors.New("connection closed")
	errReplaced        = errors.New("replaced by a newer connection of the same identity")
	errServerClosing   = errors.New("server shutting down")
	errClientGone      = errors.New("client disconnected")
	errPacketTooLarge  = errors.New("packet larger than the limit")
	errProtocol        = errors.New("protocol violation")
	errNotAllowed      = errors.New("not allowed")
	errNoConnect       = errors.New("first packet is not CONNECT")
	errConnectRefused  = errors.New("CONNECT refused")
	errTelemetryFailed = errors.New("telemetry not accepted")
)

// conn is one device connection, from CONNECT to close.
type conn struct {
	srv       *Server
	nc        net.Conn
	closer    io.Closer // ends the connection at once (the TCP connection under TLS)
	br        *bufio.Reader
	transport string // "mqtt" or "mqtt-ws"
	certs     []*x509.Certificate
	log       *slog.Logger

	// Set by CONNECT.
	id        string
	key       twinhub.Key
	clientID  string
	clean     bool
	auth      hub.DeviceAuth
	keepAlive time.Duration

	ctx    context.Context // ends when the connection closes
	cancel context.CancelFunc

	q        *outQueue
	inflight *inFlight // telemetry being stored; set by the reader
	// The writer's, which runs alone (writeLoop): the packets it writes,
	// and its write deadline, kept from one writer to the next.
	batch         [][]byte
	writeDeadline *deadline.Lazy

	mu      sync.Mutex
	subs    subscriptions
	refresh *time.Timer // saves the session again while connected (CleanSession=0)
	desired *hub.DesiredFeed
	methods methodState
	c2d     *c2dDelivery

	closeOnce  sync.Once
	closeErr   error
	replaced   atomic.Bool
	registered bool // it became its identity's connection; finish must run
}

// serveConn runs a connection whose transport is up (TLS handshake or
// WebSocket upgrade done); the CONNECT must come by connectBy.
func (s *Server) serveConn(nc net.Conn, closer io.Closer, certs []*x509.Certificate, transport string, connectBy time.Time) {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		srv:       s,
		nc:        nc,
		closer:    closer,
		br:        bufio.NewReaderSize(nc, 2048),
		transport: transport,
		certs:     certs,
		log:       s.log.With("transport", transport, "remote", nc.RemoteAddr().String()),
		ctx:       ctx,
		cancel:    cancel,
	}
	c.q = newOutQueue(s.opts.MaxQueueBytes, func() { go c.writeLoop() })
	c.writeDeadline = deadline.NewLazy(nc.SetWriteDeadline, s.opts.WriteTimeout)
	if !s.track(c) {
		cancel()
		closer.Close()
		return
	}
	defer s.untrack(c)

	err := c.handshake(connectBy)
	if err != nil {
		c.close(err)
		c.q.writers.Wait()
		c.log.Debug("mqtt connection refused", "err", err)
		if c.registered {
			c.finish()
		}
		return
	}
	err = c.readLoop()
	c.close(err)
	c.q.writers.Wait()
	c.finish()
}

// handshake reads the CONNECT, authenticates, and queues the CONNACK.
func (c *conn) handshake(deadline time.Time) error {
	c.nc.SetReadDeadline(deadline)
	pk, err := c.readPacket(true)
	if err != nil {
		return err
	}
	if pk.FixedHeader.Type != packets.Connect {
		return errNoConnect
	}
	return c.connect(&pk)
}

// readPacket reads and decodes one packet, refusing oversize ones before
// reading their body.
func (c *conn) readPacket(first bool) (packets.Packet, error) {
	var pk packets.Packet
	b, err := c.br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, fmt.Errorf("%w: %v", errProtocol, err)
	}
	n, _, err := packets.DecodeLength(c.br)
	if err != nil {
		return pk, fmt.Errorf("%w: %v", errProtocol, err)
	}
	if n > c.srv.opts.MaxPacketSize {
		return pk, fmt.Errorf("%w: %d bytes, limit %d", errPacketTooLarge, n, c.srv.opts.MaxPacketSize)
	}
	pk.FixedHeader.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return pk, err
	}
	if first && pk.FixedHeader.Type != packets.Connect {
		return pk, errNoConnect
	}
	pk.ProtocolVersion = 4
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Subscribe:
		err = pk.SubscribeDecode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(buf)
	case packets.Pingreq, packets.Disconnect:
		if n != 0 {
			err = errors.New("packet should be empty")
		}
	default:
		err = fmt.Errorf("%s packets are not accepted", packets.PacketNames[pk.FixedHeader.Type])
	}
	if err != nil {
		return pk, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return pk, nil
}

// readLoop handles packets in order until the connection ends.
func (c *conn) readLoop() error {
	timeout := c.keepAlive * 3 / 2
	rd := deadline.NewLazy(c.nc.SetReadDeadline, timeout)
	for {
		rd.Extend()
		pk, err := c.readPacket(false)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no packet for %s (1.5 keep-alives)", timeout)
			}
			return err
		}
		if err := c.handle(&pk); err != nil {
			return err
		}
	}
}

func (c *conn) handle(pk *packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return c.handlePublish(pk)
	case packets.Puback:
		c.c2dAcked(pk.PacketID)
		return nil
	case packets.Subscribe:
		return c.handleSubscribe(pk)
	case packets.Unsubscribe:
		return c.handleUnsubscribe(pk)
	case packets.Pingreq:
		return c.send(encode(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}}))
	case packets.Disconnect:
		return errClientGone
	}
	return fmt.Errorf("%w: unexpected %s", errProtocol, packets.PacketNames[pk.FixedHeader.Type])
}

// writeBuffers pools the buffers that join a batch of packets into one
// write (one TLS record, one WebSocket message), so that an idle
// connection holds no write buffer.
var writeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps unusually large buffers out of the pool.
const maxPooledBuffer = 64 << 10

// writeLoop writes queued packets until none is left, then ends; the
// next packet queued starts it again (outQueue.push). An idle connection
// then holds one goroutine, its reader, where it held two, and a fleet
// of devices that send now and then holds half the goroutines and their
// stacks. Under load a writer made for each PUBACK cost what a writer
// waiting for it did (hub CPU per telemetry message, 3 alternating runs:
// 13.3 µs both), while a writer that waited a while for more, with a
// timer, cost 0.4 µs more.
func (c *conn) writeLoop() {
	defer c.q.writers.Done()
	for {
		// The drain that finds nothing ends this writer, and the next
		// push may start another at once: c.batch is not touched after
		// it.
		batch := c.q.drain(c.batch)
		if len(batch) == 0 {
			return
		}
		c.batch = batch
		c.writeDeadline.Extend()
		var err error
		if len(c.batch) == 1 {
			_, err = c.nc.Write(c.batch[0])
		} else {
			buf := writeBuffers.Get().(*bytes.Buffer)
			for _, b := range c.batch {
				buf.Write(b)
			}
			_, err = c.nc.Write(buf.Bytes())
			if buf.Cap() <= maxPooledBuffer {
				buf.Reset()
				writeBuffers.Put(buf)
			}
		}
		clear(c.batch)
		if err != nil {
			c.close(fmt.Errorf("writing: %w", err))
			return
		}
	}
}

// send queues an encoded packet; a full queue closes the connection.
func (c *conn) send(b []byte) error {
	err := c.q.push(b)
	if errors.Is(err, errQueueFull) {
		c.close(err)
	}
	return err
}

// close ends the connection (once); the reader then finishes up.
func (c *conn) close(err error) {
	c.closeOnce.Do(func() {
		c.closeErr = err
		c.cancel()
		c.q.close()
		c.closer.Close()
	})
}

// finish releases what the connection held once both loops are done:
// its desired-property subscription, its place as its identity's
// connection, its session (kept when CleanSession=0) and its connection
// state, unless a newer connection of the identity took over.
func (c *conn) finish() {
	c.mu.Lock()
	feed, subs, refresh := c.desired, c.subs, c.refresh
	c.desired, c.refresh = nil, nil
	c.mu.Unlock()
	if feed != nil {
		feed.Stop()
	}
	if refresh != nil {
		refresh.Stop()
	}
	c.stopMethods()
	c.stopC2D()
	replaced := c.replaced.Load()
	if !c.clean && !replaced {
		// Saved when it changed; saved again so that it lives for the
		// session expiry from now.
		if err := c.saveSession(subs); err != nil {
			c.log.Warn("saving the session as the device leaves", "err", err)
		}
	}
	level := slog.LevelDebug
	if !errors.Is(c.closeErr, errClientGone) && !errors.Is(c.closeErr, errReplaced) && !errors.Is(c.closeErr, errServerClosing) {
		level = slog.LevelInfo
	}
	c.log.Log(context.Background(), level, "mqtt device disconnected", "reason", errString(c.closeErr))
	if c.registered {
		c.srv.opts.Metrics.DeviceDisconnect(metricsTransport)
	}
	unlock := c.srv.lockIdentity(c.key)
	defer unlock()
	if !c.srv.unregister(c) || replaced {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opts.RequestTimeout)
	defer cancel()
	if err := c.srv.hub.SetConnectionState(ctx, c.key, false); err != nil && !isNotFound(err) {
		c.log.Warn("recording disconnection", "err", err)
	}
}

func errString(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return "connection closed by the client"
	}
	return err.Error()
}

func isNotFound(err error) bool {
	var e *twinhub.Error
	return errors.As(err, &e) && e.Status == 404
}

// requestContext bounds one call into the hub.
func (c *conn) requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.srv.opts.RequestTimeout)
}

// encode serializes a packet for MQTT 3.1.1.
func encode(pk *packets.Packet) []byte {
	var buf bytes.Buffer
	pk.ProtocolVersion = 4
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Suback:
		err = pk.SubackEncode(&buf)
	case packets.Unsuback:
		err = pk.UnsubackEncode(&buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(&buf)
	default:
		err = fmt.Errorf("cannot encode packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		panic("mqtt: encoding: " + err.Error()) // only our own packets come here
	}
	return buf.Bytes()
}

// publishPacket encodes a QoS 0 PUBLISH.
func publishPacket(topic string, payload []byte) []byte {
	return encode(&packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
}
