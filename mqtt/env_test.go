package mqtt_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/mqtttest"
	"github.com/twinhub/twinhub/internal/rawmqtt"
	"github.com/twinhub/twinhub/internal/testcerts"
	"github.com/twinhub/twinhub/mqtt"
	"github.com/twinhub/twinhub/sas"
)

const testHost = "localhost"

// env is a hub with its device endpoint on loopback: MQTT over TLS, and
// MQTT over WebSocket on an HTTPS server, both with the hub's own CA.
type env struct {
	t   testing.TB
	hub *hub.Hub
	srv *mqtt.Server
	ep  *mqtttest.Server // addresses and CA of srv's endpoint
	nc  *nats.Conn       // to the hub's embedded NATS
}

// newEnv starts a hub with the options given (hubtest.WithMessaging for
// telemetry and C2D) and its device endpoint with o.
func newEnv(t testing.TB, o mqtt.Options, hubOpts ...hubtest.Option) *env {
	t.Helper()
	h := hubtest.New(t, append([]hubtest.Option{hubtest.WithHost(testHost)}, hubOpts...)...)
	if o.Log == nil && !testing.Verbose() {
		o.Log = discardLog()
	}
	ep := mqtttest.Serve(t, h.Hub, mqtttest.Options{MQTT: o})
	return &env{t: t, hub: h.Hub, srv: ep.MQTT, ep: ep, nc: h.Conn}
}

// device registers a SAS device and returns a token for it.
func (e *env) device(id string) string {
	e.t.Helper()
	d, err := e.hub.CreateDevice(context.Background(), twinhub.Device{DeviceID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.token(testHost+"/devices/"+id, d.Authentication.SymmetricKey.PrimaryKey, time.Hour)
}

func (e *env) token(resource, key string, ttl time.Duration) string {
	e.t.Helper()
	tok, err := sas.NewToken(resource, "", key, time.Now().Add(ttl))
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: e.ep.RootCAs, ServerName: testHost, Certificates: certs}
}

func username(clientID string) string {
	return testHost + "/" + clientID + "/?api-version=2021-04-12"
}

// --- paho clients ---

type client struct {
	paho.Client
	msgs chan paho.Message
}

type clientOpts struct {
	ws       bool
	clean    bool
	password string
	cert     *tls.Certificate
}

func (e *env) connect(clientID string, o clientOpts) (*client, error) {
	e.t.Helper()
	c := &client{msgs: make(chan paho.Message, 100)}
	po := paho.NewClientOptions()
	if o.ws {
		po.AddBroker(e.ep.WebSocketURL())
	} else {
		po.AddBroker("tls://" + e.ep.MQTTAddr)
	}
	var certs []tls.Certificate
	if o.cert != nil {
		certs = append(certs, *o.cert)
	}
	po.SetTLSConfig(e.clientTLS(certs...))
	po.SetProtocolVersion(4)
	po.SetClientID(clientID)
	po.SetUsername(username(clientID))
	if o.password != "" {
		po.SetPassword(o.password)
	}
	po.SetCleanSession(o.clean)
	po.SetAutoReconnect(false)
	po.SetConnectRetry(false)
	po.SetKeepAlive(30 * time.Second)
	po.SetConnectTimeout(10 * time.Second)
	po.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m })
	c.Client = paho.NewClient(po)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (e *env) mustConnect(clientID string, o clientOpts) *client {
	e.t.Helper()
	c, err := e.connect(clientID, o)
	if err != nil {
		e.t.Fatalf("connecting %s: %v", clientID, err)
	}
	return c
}

func (c *client) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { c.msgs <- m })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing to %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publish(t testing.TB, topic string, qos byte, body any) {
	t.Helper()
	tok := c.Publish(topic, qos, false, body)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing to %s: %v", topic, tok.Error())
	}
}

// next waits for a message whose topic starts with prefix, skipping others.
func (c *client) next(t testing.TB, prefix string) paho.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			if strings.HasPrefix(m.Topic(), prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s within 10s", prefix)
		}
	}
}

// none checks that no message arrives for d.
func (c *client) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %s: %s", m.Topic(), m.Payload())
	case <-time.After(d):
	}
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply %q is not a JSON object: %v", b, err)
	}
	return m
}

// --- raw MQTT, for what a well-behaved client never sends ---

type raw struct {
	t  testing.TB
	nc net.Conn
	c  *rawmqtt.Conn
}

func (e *env) dialRaw(certs ...tls.Certificate) *raw {
	e.t.Helper()
	nc, err := tls.Dial("tcp", e.ep.MQTTAddr, e.clientTLS(certs...))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	return &raw{t: e.t, nc: nc, c: rawmqtt.New(nc)}
}

func (r *raw) write(pk packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = 4
	if err := r.c.Send(encodePacket(r.t, pk)); err != nil {
		r.t.Fatalf("writing %s: %v", packets.PacketNames[pk.FixedHeader.Type], err)
	}
}

func (r *raw) writeBytes(b []byte) error { return r.c.Send(b) }

// read returns the next packet, or an error (io.EOF when the hub closed).
func (r *raw) read(timeout time.Duration) (packets.Packet, error) { return r.c.Read(timeout) }

func (r *raw) expect(typ byte) packets.Packet {
	r.t.Helper()
	pk, err := r.read(10 * time.Second)
	if err != nil {
		r.t.Fatalf("waiting for %s: %v", packets.PacketNames[typ], err)
	}
	if pk.FixedHeader.Type != typ {
		r.t.Fatalf("got %s, want %s", packets.PacketNames[pk.FixedHeader.Type], packets.PacketNames[typ])
	}
	return pk
}

// expectClosed checks that the hub closes the connection within timeout,
// sending nothing more than (optionally) packets of the allowed types.
func (r *raw) expectClosed(timeout time.Duration, allowed ...byte) {
	r.t.Helper()
	got, closed := r.c.Drain(timeout)
	for _, pk := range got {
		if !slices.Contains(allowed, pk.FixedHeader.Type) {
			r.t.Fatalf("got %s before the close", packets.PacketNames[pk.FixedHeader.Type])
		}
	}
	if !closed {
		r.t.Fatalf("connection still open after %s", timeout)
	}
}

// connect sends a CONNECT and returns the CONNACK's return code.
func (r *raw) connect(clientID, user, password string, keepAlive uint16) byte {
	r.t.Helper()
	r.write(rawmqtt.Connect(clientID, user, password, keepAlive))
	return r.expect(packets.Connack).ReasonCode
}

// encodePacket encodes pk at its ProtocolVersion.
func encodePacket(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	b, err := rawmqtt.Encode(pk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- certificates ---

func selfSignedCert(t testing.TB, cn string) (tls.Certificate, *x509.Certificate) {
	return signedCert(t, cn, nil, nil)
}

// signedCert makes a device certificate signed by ca, or by itself when
// ca is nil; the name "test device CA" makes a CA instead.
func signedCert(t testing.TB, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	var c tls.Certificate
	switch {
	case cn == "test device CA":
		c = testcerts.CA(t, cn)
	case ca != nil:
		c = testcerts.Device(t, cn, &tls.Certificate{Leaf: ca, PrivateKey: caKey})
	default:
		c = testcerts.Device(t, cn, nil)
	}
	return c, c.Leaf
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type ecdsaKey = *ecdsa.PrivateKey

func x509Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
