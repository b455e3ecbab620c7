package amqp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/testcerts"
	"github.com/twinhub/twinhub/sas"
)

// endpoint is a hub with its AMQP endpoint on a loopback port, with the
// hub's own CA.
type endpoint struct {
	hub   *hubtest.Hub
	srv   *amqp.Server
	addr  string
	cert  tls.Certificate // the hub's server certificate, issued by roots
	roots *x509.CertPool
}

func newEndpoint(t *testing.T, o amqp.Options) *endpoint {
	t.Helper()
	return newEndpointWith(t, o)
}

// newEndpointWith is newEndpoint with options for the hub.
func newEndpointWith(t *testing.T, o amqp.Options, hubOpts ...hubtest.Option) *endpoint {
	t.Helper()
	h := hubtest.New(t, append([]hubtest.Option{hubtest.WithHost("127.0.0.1")}, hubOpts...)...)
	cert, roots, _ := testcerts.HubServer(t, h.Host())
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := amqp.New(h.Hub, o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As `twinhub serve`: a client certificate asked for, not required.
	go srv.Serve(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return &endpoint{hub: h, srv: srv, addr: ln.Addr().String(), cert: cert, roots: roots}
}

func (e *endpoint) dial(sasl goamqp.SASLType) (*goamqp.Conn, error) {
	return goamqp.Dial("amqps://"+e.addr, &goamqp.ConnOptions{
		SASLType:  sasl,
		TLSConfig: &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"},
		Timeout:   10 * time.Second,
	})
}

// session connects with sasl (nil: none) and begins a session; the
// connection closes when the test ends.
func (e *endpoint) session(t *testing.T, sasl goamqp.SASLType) *goamqp.Session {
	t.Helper()
	c, err := e.dial(sasl)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := c.NewSession(context.Background(), nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return s
}

// TestConnections: go-amqp connects with each way of authenticating the
// SDKs use, begins a session, is refused links to nodes the hub does not
// serve yet with amqp:not-found, and closes cleanly.
func TestConnections(t *testing.T) {
	e := newEndpoint(t, amqp.Options{})
	ctx := context.Background()
	owner := e.hub.Policy("iothubowner")
	token, err := sas.NewToken(e.hub.Host(), owner.Name, owner.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, sasl := range map[string]goamqp.SASLType{
		"no SASL":            nil,
		"ANONYMOUS":          goamqp.SASLTypeAnonymous(),
		"PLAIN policy key":   goamqp.SASLTypePlain("iothubowner@sas.root.127.0.0.1", owner.PrimaryKey),
		"PLAIN bare policy":  goamqp.SASLTypePlain("iothubowner", owner.SecondaryKey),
		"PLAIN policy token": goamqp.SASLTypePlain("iothubowner@sas.root.127.0.0.1", token),
		"PLAIN device key":   goamqp.SASLTypePlain("d1@sas.127.0.0.1", dev.Authentication.SymmetricKey.PrimaryKey),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := e.dial(sasl)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			s, err := c.NewSession(ctx, nil)
			if err != nil {
				t.Fatalf("session: %v", err)
			}
			_, err = s.NewReceiver(ctx, "/no/such/node", nil)
			var ae *goamqp.Error
			if !errors.As(err, &ae) || ae.Condition != "amqp:not-found" {
				t.Errorf("receiver on a node not served: %v, want amqp:not-found", err)
			}
			_, err = s.NewSender(ctx, "/nowhere", nil)
			if !errors.As(err, &ae) || ae.Condition != "amqp:not-found" {
				t.Errorf("sender to a node not served: %v, want amqp:not-found", err)
			}
			if err := s.Close(ctx); err != nil {
				t.Errorf("ending the session: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("closing: %v", err)
			}
		})
	}
}

// TestPlainRefused: PLAIN with a wrong key, an unknown policy or device,
// or a user of no known form fails the SASL exchange.
func TestPlainRefused(t *testing.T) {
	e := newEndpoint(t, amqp.Options{})
	if _, err := e.hub.CreateDevice(context.Background(), twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	for name, sasl := range map[string]goamqp.SASLType{
		"wrong policy key": goamqp.SASLTypePlain("iothubowner@sas.root.127.0.0.1", "bm90IHRoZSBrZXk="),
		"unknown policy":   goamqp.SASLTypePlain("nobody@sas.root.127.0.0.1", "bm90IHRoZSBrZXk="),
		"wrong device key": goamqp.SASLTypePlain("d1@sas.127.0.0.1", "bm90IHRoZSBrZXk="),
		"unknown device":   goamqp.SASLTypePlain("d2@sas.127.0.0.1", "bm90IHRoZSBrZXk="),
		"expired token":    goamqp.SASLTypePlain("iothubowner@sas.root.127.0.0.1", "SharedAccessSignature sr=127.0.0.1&sig=x&se=1&skn=iothubowner"),
		"user of no form":  goamqp.SASLTypePlain("someone@example.com", "x"),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := e.dial(sasl)
			if err == nil {
				c.Close()
				t.Fatal("admitted")
			}
		})
	}
}

// raw is a TLS client that speaks AMQP frames with amqp/wire, for what
// go-amqp would not send.
type raw struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func (e *endpoint) raw(t *testing.T) *raw {
	t.Helper()
	nc, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (r *raw) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) frame(code uint64, fields wire.List) {
	r.t.Helper()
	frame, err := wire.AppendPerformativeFrame(nil, wire.FrameAMQP, 0, code, fields, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(frame)
}

// next reads the next frame that is not a heartbeat.
func (r *raw) next() wire.Performative {
	r.t.Helper()
	for {
		f, err := wire.ReadFrame(r.r, 1<<20)
		if err != nil {
			r.t.Fatalf("reading a frame: %v", err)
		}
		if len(f.Body) == 0 {
			continue
		}
		p, err := wire.DecodePerformative(f.Body)
		if err != nil {
			r.t.Fatal(err)
		}
		return p
	}
}

// open exchanges headers and open frames, announcing idle (0: none).
func (r *raw) open(idle time.Duration) {
	r.t.Helper()
	r.write(wire.Header{Protocol: wire.ProtocolAMQP, Major: 1}.Bytes())
	if h, err := wire.ReadHeader(r.r); err != nil || h.Protocol != wire.ProtocolAMQP {
		r.t.Fatalf("header %+v, %v", h, err)
	}
	r.frame(wire.CodeOpen, wire.Open{ContainerID: "raw", MaxFrameSize: 65536, ChannelMax: 10, IdleTimeout: idle}.List())
	if p := r.next(); p.Code != wire.CodeOpen {
		r.t.Fatalf("answer to open: %#x", p.Code)
	}
}

// closedWith reads frames up to a close and checks its error condition;
// then the hub closes the connection.
func (r *raw) closedWith(cond wire.Symbol) {
	r.t.Helper()
	p := r.next()
	if p.Code != wire.CodeClose {
		r.t.Fatalf("got %#x, want a close", p.Code)
	}
	e, err := wire.ParseError(p)
	if err != nil || e == nil || e.Condition != cond {
		r.t.Fatalf("close with %+v (%v), want %s", e, err, cond)
	}
	if _, err := r.r.ReadByte(); err == nil {
		r.t.Fatal("the connection is still open after the close")
	}
}

// TestBadInput: each kind of bad input gets the AMQP error the SDKs map,
// in a close frame, and the connection ends; the hub serves the next one.
func TestBadInput(t *testing.T) {
	e := newEndpoint(t, amqp.Options{MaxFrameSize: 4096})
	t.Run("not AMQP", func(t *testing.T) {
		r := e.raw(t)
		r.write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if h, err := wire.ReadHeader(r.r); err != nil || h.Protocol != wire.ProtocolAMQP || h.Major != 1 {
			t.Fatalf("the hub should say what it speaks: %+v, %v", h, err)
		}
		if _, err := r.r.ReadByte(); err == nil {
			t.Fatal("still open")
		}
	})
	t.Run("malformed performative", func(t *testing.T) {
		r := e.raw(t)
		r.open(0)
		r.write(wire.AppendFrame(nil, wire.FrameAMQP, 0, []byte{0x00, 0x53, 0x11, 0xd0, 0xff, 0xff, 0xff, 0xff}))
		r.closedWith("amqp:decode-error")
	})
	t.Run("mandatory field left out", func(t *testing.T) {
		r := e.raw(t)
		r.open(0)
		r.frame(wire.CodeBegin, wire.List{nil, uint32(0)})
		r.closedWith("amqp:decode-error")
	})
	t.Run("frame over max-frame-size", func(t *testing.T) {
		r := e.raw(t)
		r.open(0)
		r.write(wire.AppendFrame(nil, wire.FrameAMQP, 0, make([]byte, 5000)))
		r.closedWith("amqp:connection:framing-error")
	})
	t.Run("attach without a session", func(t *testing.T) {
		r := e.raw(t)
		r.open(0)
		r.frame(wire.CodeAttach, wire.Attach{Name: "x", Handle: 0, Role: wire.RoleReceiver}.List())
		r.closedWith("amqp:connection:framing-error")
	})
	c, err := e.dial(goamqp.SASLTypeAnonymous())
	if err != nil {
		t.Fatalf("the next client: %v", err)
	}
	c.Close()
}

// TestHeartbeatsAndIdle: the hub sends empty frames to a client that asks
// for them, and closes a client silent past the hub's idle time-out with
// amqp:resource-limit-exceeded.
func TestHeartbeatsAndIdle(t *testing.T) {
	e := newEndpoint(t, amqp.Options{IdleTimeout: 500 * time.Millisecond})
	r := e.raw(t)
	r.open(200 * time.Millisecond)
	f, err := wire.ReadFrame(r.r, 1<<20)
	if err != nil || len(f.Body) != 0 {
		t.Fatalf("want an empty frame, got %+v, %v", f, err)
	}
	r.closedWith("amqp:resource-limit-exceeded")
}

// TestServerClose: a hub that shuts down closes its connections with
// amqp:connection:forced.
func TestServerClose(t *testing.T) {
	e := newEndpoint(t, amqp.Options{})
	r := e.raw(t)
	r.open(0)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.srv.Close(ctx)
	}()
	r.closedWith("amqp:connection:forced")
}
