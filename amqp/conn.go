package amqp

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/internal/deadline"
	"github.com/twinhub/twinhub/internal/ondemand"
)

// The AMQP error conditions the endpoint sends (part 2, section 2.8.15).
const (
	condDecodeError   wire.Symbol = "amqp:decode-error"
	condFramingError  wire.Symbol = "amqp:connection:framing-error"
	condForced        wire.Symbol = "amqp:connection:forced"
	condNotAllowed    wire.Symbol = "amqp:not-allowed"
	condNotFound      wire.Symbol = "amqp:not-found"
	condResourceLimit wire.Symbol = "amqp:resource-limit-exceeded"
	condInternalError wire.Symbol = "amqp:internal-error"
	condIllegalState  wire.Symbol = "amqp:illegal-state"
	condUnauthorized  wire.Symbol = "amqp:unauthorized-access"
	condInvalidField  wire.Symbol = "amqp:invalid-field"
	condMessageSize   wire.Symbol = "amqp:link:message-size-exceeded"
	condStolen        wire.Symbol = "amqp:link:stolen"
	// condThrottled is IoT Hub's condition for an operation over the
	// hub's rate: the SDKs retry it with back-off (Node ThrottlingError,
	// C# Throttled, Java IotHubThrottledException).
	condThrottled wire.Symbol = "com.microsoft:device-container-throttled"
)

// What the hub announces in its open and begin frames.
const (
	channelMax     = 4999
	sessionWindow  = 5000
	handleMax      = 65535
	containerID    = "twinhub"
	minHeartbeat   = 50 * time.Millisecond
	closeGraceTime = 2 * time.Second
	writeTimeout   = 30 * time.Second
)

// conn is one AMQP connection: a reader goroutine (serve) that handles
// every frame in order, goroutines that send events on the links that
// read them (eventhub.go), and writes under wmu.
type conn struct {
	srv *Server
	nc  net.Conn
	r   *bufio.Reader

	// wmu orders writes; the open frame is written and opened set under
	// it, so that a close from shutdown comes after the open or not at all.
	wmu sync.Mutex
	// writeDeadline is the socket's write deadline (setWriteDeadline).
	writeDeadline *deadline.Lazy
	w             *bufio.Writer
	// corked holds writes in w until uncork (cork).
	corked int
	// frame is where sendFrame encodes, under wmu: a small frame's
	// memory is kept for the next (w copies what it is given).
	frame []byte

	// Set by the open exchange.
	maxOut   uint32        // the largest frame the peer takes
	peerIdle time.Duration // the peer's idle time-out: heartbeats at half of it

	// principal is who SASL admitted, for the log: never a secret.
	principal string
	// certs are the client's TLS certificates (X.509 devices).
	certs []*x509.Certificate

	// mu guards the sessions, their links and the grants: the reader
	// holds it while it handles a frame, a link's sender while it sends
	// (mu before wmu). credit is signalled when a link the hub sends on
	// gets credit or goes.
	mu       sync.Mutex
	credit   sync.Cond
	sessions map[uint16]*session // by the peer's channel, which is also ours
	// replies are the client's receivers from the request-response nodes
	// ($cbs, $management) by node, where answers go; grants are the
	// tokens it put (cbs.go).
	replies map[string][]*link
	grants  grantSet
	// twins and methodChannels are the devices' twin and method
	// channels, by channel correlation id (twin.go, methods.go).
	twins          map[string]*twinChannel
	methodChannels map[string]*methodChannel
	// id names the connection to the hub's method router (ids as MQTT's).
	id string
	// devices are the devices and modules with links on the connection,
	// whose connection state they make (devices.go).
	devices map[twinhub.Key]*deviceOnConn
	// senders are the goroutines sending on links (eventhub.go).
	senders sync.WaitGroup

	// settles are the outcomes of asynchronously stored messages waiting
	// to be written by settler, and settleClosed says whether the
	// connection ended (settle.go).
	settler      ondemand.Runner
	settleMu     sync.Mutex
	settles      []settlement
	settleSpare  []settlement // the last batch's slice, for the next
	settleClosed bool

	opened atomic.Bool // both open frames sent
	closed atomic.Bool // a close frame sent
	done   chan struct{}
	// ending is cancelled as the connection's frames end: what its links'
	// work waits for (a C2D receiver's read of the queue) stops then,
	// not at its own timeout. One context a connection: the devices
	// multiplexed on it hold none of their own.
	ending    context.Context
	endFrames context.CancelFunc
}

// session is a session the peer began, with its transfer counters and
// links.
type session struct {
	channel        uint16
	nextIncomingID uint32 // the transfer-id the client sends next
	nextOutgoingID uint32 // the hub's next transfer-id (and delivery-id)
	windowUsed     uint32 // transfers received since the window was renewed
	links          map[uint32]*link
	// unsettled are the hub's deliveries whose outcome it waits for, by
	// delivery-id (feedback.go).
	unsettled map[uint32]*tracked
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s, nc: nc,
		r:        bufio.NewReaderSize(nc, 16<<10),
		w:        bufio.NewWriterSize(nc, 16<<10),
		maxOut:   wire.MinMaxFrameSize,
		sessions: map[uint16]*session{},
		replies:  map[string][]*link{},
		twins:    map[string]*twinChannel{},

		methodChannels: map[string]*methodChannel{},
		devices:        map[twinhub.Key]*deviceOnConn{},
		id:             s.hub.NewConnectionID(),
		done:           make(chan struct{}),
	}
	c.ending, c.endFrames = context.WithCancel(context.Background())
	c.credit.L = &c.mu
	c.writeDeadline = deadline.NewLazy(nc.SetWriteDeadline, writeTimeout)
	c.settler.Init(&c.senders, c.settleQueued)
	return c
}

// connError is a reason to close the connection, sent to the peer in the
// close frame.
type connError struct {
	cond wire.Symbol
	desc string
}

func (e *connError) Error() string { return string(e.cond) + ": " + e.desc }

func closeWith(cond wire.Symbol, format string, args ...any) error {
	return &connError{cond: cond, desc: fmt.Sprintf(format, args...)}
}

// serve runs the connection: the handshake by deadline, then frames until
// either side closes.
func (c *conn) serve(deadline time.Time) {
	defer close(c.done)
	defer c.nc.Close()
	defer c.endFrames()
	log := c.srv.log.With("remote", c.nc.RemoteAddr().String())
	c.nc.SetDeadline(deadline)
	if err := c.handshake(); err != nil {
		c.fail(err)
		log.Debug("amqp handshake ended", "principal", c.principal, "err", err)
		return
	}
	c.nc.SetDeadline(time.Time{})
	log.Debug("amqp connection open", "principal", c.principal)
	stop := make(chan struct{})
	defer close(stop)
	if c.peerIdle > 0 {
		go c.heartbeat(stop)
	}
	err := c.frames()
	c.endFrames()
	c.stopSettling()
	c.endLinks()
	c.fail(err)
	c.nc.Close()
	c.senders.Wait()
	if err != nil && !errors.Is(err, io.EOF) {
		log.Debug("amqp connection ended", "principal", c.principal, "err", err)
	}
}

// fail sends the close frame err calls for, when the connection is open
// and no close went yet, and gives the peer a moment to read it.
func (c *conn) fail(err error) {
	var ce *connError
	if err == nil || !errors.As(err, &ce) || !c.opened.Load() {
		return
	}
	if c.closed.Swap(true) {
		return
	}
	c.send(0, wire.CodeClose, wire.ErrorList(&wire.Error{Condition: ce.cond, Description: ce.desc}), nil)
}

// shutdown closes the connection from the hub's side (the server is
// closing): a close frame, then the socket once serve has gone.
func (c *conn) shutdown() {
	c.wmu.Lock()
	opened := c.opened.Load()
	if !opened {
		c.closed.Store(true) // the handshake sends no open after this
	}
	c.wmu.Unlock()
	if opened && !c.closed.Swap(true) {
		c.send(0, wire.CodeClose, wire.ErrorList(&wire.Error{Condition: condForced, Description: "the hub is shutting down"}), nil)
	}
	c.nc.Close()
	<-c.done
}

// handshake exchanges protocol headers (through SASL when the client asks
// for it) and open frames.
func (c *conn) handshake() error {
	h, err := wire.ReadHeader(c.r)
	if err != nil {
		c.writeHeader(wire.ProtocolAMQP) // says what the hub speaks
		return err
	}
	if h.Protocol == wire.ProtocolSASL && h.Major == 1 && h.Minor == 0 {
		if err := c.writeHeader(wire.ProtocolSASL); err != nil {
			return err
		}
		if err := c.sasl(); err != nil {
			return err
		}
		if h, err = wire.ReadHeader(c.r); err != nil {
			return err
		}
	} else {
		c.principal = "none (CBS)"
	}
	if h.Protocol != wire.ProtocolAMQP || h.Major != 1 || h.Minor != 0 {
		c.writeHeader(wire.ProtocolAMQP)
		return fmt.Errorf("amqp: the client asks for protocol %d version %d.%d.%d", h.Protocol, h.Major, h.Minor, h.Revision)
	}
	if err := c.writeHeader(wire.ProtocolAMQP); err != nil {
		return err
	}
	p, err := c.expect(wire.FrameAMQP, wire.CodeOpen)
	if err != nil {
		return err
	}
	open, err := wire.ParseOpen(p)
	if err != nil {
		return err
	}
	c.maxOut = max(min(open.MaxFrameSize, c.srv.opts.MaxFrameSize), wire.MinMaxFrameSize)
	c.peerIdle = open.IdleTimeout
	ours := wire.Open{
		ContainerID: containerID, Hostname: c.srv.hub.Host(), MaxFrameSize: c.srv.opts.MaxFrameSize,
		ChannelMax: channelMax, IdleTimeout: c.srv.opts.IdleTimeout,
	}
	frame, err := wire.AppendPerformativeFrame(nil, wire.FrameAMQP, 0, wire.CodeOpen, ours.List(), nil)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return net.ErrClosed // the server is shutting down
	}
	c.w.Write(frame)
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.opened.Store(true)
	return nil
}

// expect reads the next frame of the handshake, which must be of type
// typ and carry the performative code (open, sasl-init).
func (c *conn) expect(typ byte, code uint64) (wire.Performative, error) {
	f, err := wire.ReadFrame(c.r, c.srv.opts.MaxFrameSize)
	if err != nil {
		return wire.Performative{}, err
	}
	p, err := wire.DecodePerformative(f.Body)
	if err == nil && (f.Type != typ || p.Code != code) {
		err = fmt.Errorf("amqp: a frame of type %d with performative %#x where %#x belongs", f.Type, p.Code, code)
	}
	return p, err
}

func (c *conn) writeHeader(protocol byte) error {
	return c.write(wire.Header{Protocol: protocol, Major: 1}.Bytes())
}

// heartbeat sends an empty frame at half the peer's idle time-out, so
// that the peer does not close a quiet connection.
func (c *conn) heartbeat(stop chan struct{}) {
	t := time.NewTicker(max(c.peerIdle/2, minHeartbeat))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := c.write(wire.AppendFrame(nil, wire.FrameAMQP, 0, nil)); err != nil {
				return
			}
		}
	}
}

// frames reads and handles frames until the peer closes (nil), the
// connection fails, or a frame calls for closing it (a *connError).
func (c *conn) frames() error {
	idle := c.srv.opts.IdleTimeout
	rd := deadline.NewLazy(c.nc.SetReadDeadline, idle)
	// Each frame is read into the memory of the last (up to 64 KiB):
	// handle keeps nothing of a frame's body (the decoders copy what
	// they return; a transfer's message is decoded, or its payload
	// copied into the delivery being put together, before the next
	// frame is read).
	var buf []byte
	for {
		rd.Extend()
		f, err := wire.ReadFrameInto(c.r, c.srv.opts.MaxFrameSize, buf)
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrFrameTooLarge):
				return closeWith(condFramingError, "%v", err)
			case errors.Is(err, wire.ErrMalformed):
				return closeWith(condFramingError, "%v", err)
			case isTimeout(err):
				return closeWith(condResourceLimit, "no frame for %s, the idle time-out", idle)
			}
			return err
		}
		if len(f.Body) == 0 {
			continue // a heartbeat
		}
		if f.Type != wire.FrameAMQP {
			return closeWith(condFramingError, "a SASL frame after the handshake")
		}
		var done bool
		// Transfers, one a device message, are read field by field;
		// other performatives through the generic decoder.
		if t, ok, err := wire.DecodeTransfer(f.Body); ok {
			if err != nil {
				return closeWith(condDecodeError, "%v", err)
			}
			c.mu.Lock()
			err = c.onTransferOn(f.Channel, t)
			c.mu.Unlock()
			if err != nil {
				return err
			}
		} else {
			p, err := wire.DecodePerformative(f.Body)
			if err != nil {
				return closeWith(condDecodeError, "%v", err)
			}
			c.mu.Lock()
			done, err = c.handle(f.Channel, p)
			c.mu.Unlock()
			if err != nil || done {
				return err
			}
		}
		if cap(f.Body) <= 64<<10 {
			buf = f.Body[:0]
		}
	}
}

// isTimeout reports whether err is a time-out. (It allocates, for
// errors.As: not for the path of every frame.)
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle acts on one performative; done is true once the peer's close
// has been answered.
func (c *conn) handle(channel uint16, p wire.Performative) (done bool, err error) {
	v, err := wire.Parse(p)
	if err != nil {
		return false, closeWith(condDecodeError, "%v", err)
	}
	switch x := v.(type) {
	case wire.Open:
		return false, closeWith(condIllegalState, "a second open")
	case wire.Begin:
		return false, c.begin(channel, x)
	case wire.Attach, wire.Flow, wire.Transfer, wire.Disposition, wire.Detach:
		s, err := c.session(channel)
		switch x.(type) {
		case wire.Flow, wire.Disposition, wire.Detach:
			if err != nil {
				// pyamqp (azure-eventhub) sends its links' detaches
				// after its session's end: nothing is left to act on.
				return false, nil
			}
		}
		if err != nil {
			return false, err
		}
		switch x := x.(type) {
		case wire.Attach:
			return false, c.attach(s, x)
		case wire.Flow:
			return false, c.onFlow(s, x)
		case wire.Transfer:
			return false, c.onTransfer(s, x)
		case wire.Detach:
			return false, c.detach(s, x)
		case wire.Disposition:
			c.onDisposition(s, x)
		}
		return false, nil
	case *wire.Error:
		if p.Code == wire.CodeEnd {
			return false, c.end(channel, x)
		}
		// The peer's close: answer it, then the connection is over.
		if !c.closed.Swap(true) {
			c.send(0, wire.CodeClose, wire.ErrorList(nil), nil)
		}
		return true, nil
	}
	return false, closeWith(condFramingError, "a SASL performative after the handshake")
}

// onTransferOn acts on a transfer on channel.
func (c *conn) onTransferOn(channel uint16, t wire.Transfer) error {
	s, err := c.session(channel)
	if err != nil {
		return err
	}
	return c.onTransfer(s, t)
}

// begin answers a session the peer begins on channel, on the same channel.
func (c *conn) begin(channel uint16, b wire.Begin) error {
	switch {
	case b.RemoteChannel != nil:
		return closeWith(condNotAllowed, "the hub begins no sessions, so there is nothing to answer on channel %d", channel)
	case channel > channelMax:
		return closeWith(condFramingError, "channel %d is over the channel-max %d", channel, channelMax)
	case c.sessions[channel] != nil:
		return closeWith(condFramingError, "channel %d has a session already", channel)
	}
	c.sessions[channel] = &session{channel: channel, nextIncomingID: b.NextOutgoingID, links: map[uint32]*link{},
		unsettled: map[uint32]*tracked{}}
	reply := wire.Begin{RemoteChannel: &channel, NextOutgoingID: 0, IncomingWindow: sessionWindow,
		OutgoingWindow: sessionWindow, HandleMax: handleMax}
	return c.send(channel, wire.CodeBegin, reply.List(), nil)
}

// end answers the end of a session.
func (c *conn) end(channel uint16, _ *wire.Error) error {
	s, err := c.session(channel)
	if err != nil {
		return err
	}
	for _, l := range s.links {
		c.forget(l)
	}
	delete(c.sessions, channel)
	return c.send(channel, wire.CodeEnd, wire.ErrorList(nil), nil)
}

func (c *conn) session(channel uint16) (*session, error) {
	s := c.sessions[channel]
	if s == nil {
		return nil, closeWith(condFramingError, "no session on channel %d", channel)
	}
	return s, nil
}

// refuseLink answers an attach the way go-amqp and the other SDKs
// recognise a refusal: an attach with null source and target, then a
// detach that closes the link with cond and why.
func (c *conn) refuseLink(s *session, a wire.Attach, cond wire.Symbol, why string) error {
	return c.refuseLinkWith(s, a, &wire.Error{Condition: cond, Description: why})
}

// refuseLinkWith is refuseLink with a whole error (a redirect's info).
func (c *conn) refuseLinkWith(s *session, a wire.Attach, e *wire.Error) error {
	reply := wire.Attach{Name: a.Name, Handle: a.Handle, Role: !a.Role, SndSettleMode: a.SndSettleMode, RcvSettleMode: a.RcvSettleMode}
	if err := c.send(s.channel, wire.CodeAttach, reply.List(), nil); err != nil {
		return err
	}
	detach := wire.Detach{Handle: a.Handle, Closed: true, Error: e}
	return c.send(s.channel, wire.CodeDetach, detach.List(), nil)
}

// send writes one AMQP frame and flushes it.
func (c *conn) send(channel uint16, code uint64, fields wire.List, payload []byte) error {
	return c.sendFrame(wire.FrameAMQP, channel, code, fields, payload)
}

// sendFrame writes one frame of type typ, no larger than the peer takes,
// and flushes it.
func (c *conn) sendFrame(typ byte, channel uint16, code uint64, fields wire.List, payload []byte) error {
	return c.sendEncoded(func(b []byte) ([]byte, error) {
		return wire.AppendPerformativeFrame(b, typ, channel, code, fields, payload)
	})
}

// sendSettled writes the disposition that settles delivery id, received
// on channel, with outcome, encoded field by field: the settlement of
// each message a device sends.
func (c *conn) sendSettled(channel uint16, id uint32, outcome wire.Described) error {
	d := wire.Disposition{Role: wire.RoleReceiver, First: id, Settled: true, State: wire.StateOf(outcome)}
	return c.sendEncoded(func(b []byte) ([]byte, error) { return wire.AppendDispositionFrame(b, channel, d) })
}

// sendEncoded writes the frame encode appends to the connection's frame
// buffer, no larger than the peer takes, and flushes it.
func (c *conn) sendEncoded(encode func([]byte) ([]byte, error)) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	frame, err := encode(c.frame[:0])
	if cap(frame) <= 4<<10 {
		c.frame = frame[:0]
	}
	if err != nil {
		return err
	}
	if uint32(len(frame)) > c.maxOut {
		return closeWith(condInternalError, "a frame of %d bytes is over the peer's max-frame-size %d", len(frame), c.maxOut)
	}
	return c.writeLocked(frame)
}

// write writes and flushes b under wmu. A client that stops reading
// fails the connection, rather than hold the writer (and a link's
// sender, with the connection's state lock); once the hub closes, it
// waits for the client a moment only.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

// writeLocked is write, with wmu held.
func (c *conn) writeLocked(b []byte) error {
	if c.corked > 0 {
		c.w.Write(b)
		return nil // flushed by uncork (or by the buffer filling up, under cork's deadline)
	}
	c.setWriteDeadline()
	c.w.Write(b)
	return c.w.Flush()
}

// setWriteDeadline bounds the next write, with wmu held: writeTimeout
// (less its slack, package deadline), and once the hub closes the
// connection, closeGraceTime.
func (c *conn) setWriteDeadline() {
	if c.closed.Load() {
		c.writeDeadline.Forget()
		c.nc.SetWriteDeadline(time.Now().Add(closeGraceTime))
		return
	}
	c.writeDeadline.Extend()
}

// cork holds the frames written from now on in the buffer until uncork,
// which writes them at once: a request's settlement and its answer go in
// one write. Called with mu held, which keeps other writers out until
// uncork.
func (c *conn) cork() {
	c.wmu.Lock()
	if c.corked++; c.corked == 1 {
		c.setWriteDeadline()
	}
	c.wmu.Unlock()
}

// uncork ends a cork and flushes what it held.
func (c *conn) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked--; c.corked > 0 {
		return nil
	}
	c.setWriteDeadline()
	return c.w.Flush()
}
