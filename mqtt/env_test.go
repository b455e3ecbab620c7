package mqtt_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/mqtt"
	"github.com/twinhub/twinhub/sas"
)

const testHost = "localhost"

// env is a hub with its device endpoint on loopback: MQTT over TLS, and
// MQTT over WebSocket on an HTTPS server, both with the hub's own CA.
type env struct {
	t       testing.TB
	hub     *twinhub.Hub
	srv     *mqtt.Server
	addr    string // host:port of MQTT over TLS
	wsURL   string // wss://host:port/$iothub/websocket
	roots   *x509.CertPool
	tlsConf *tls.Config // the server's
	nc      *nats.Conn  // to the hub's embedded NATS
}

func newEnv(t testing.TB, o mqtt.Options) *env {
	t.Helper()
	h := hubtest.New(t, hubtest.WithHost(testHost))
	dir := t.TempDir()
	cert, err := certs.EnsureServer(dir, certs.Hosts(testHost))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsConf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
		ClientAuth:   tls.RequestClientCert,
	}
	if o.Log == nil && !testing.Verbose() {
		o.Log = discardLog()
	}
	srv, err := mqtt.New(h.Hub, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln, mqtt.TLSConfig(tlsConf))
	hs := httptest.NewUnstartedServer(srv.Handler(http.NotFoundHandler()))
	hs.TLS = tlsConf
	hs.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
		hs.Close()
	})
	return &env{
		t: t, hub: h.Hub, srv: srv, addr: ln.Addr().String(),
		wsURL: "wss://" + strings.TrimPrefix(hs.URL, "https://") + mqtt.WebSocketPath,
		roots: roots, tlsConf: tlsConf, nc: h.Conn,
	}
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
	return &tls.Config{RootCAs: e.roots, ServerName: testHost, Certificates: certs}
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
		po.AddBroker(e.wsURL)
	} else {
		po.AddBroker("tls://" + e.addr)
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
	br *bufio.Reader
}

func (e *env) dialRaw(certs ...tls.Certificate) *raw {
	e.t.Helper()
	nc, err := tls.Dial("tcp", e.addr, e.clientTLS(certs...))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	return &raw{t: e.t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *raw) write(pk packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = 4
	b := encodePacket(r.t, pk)
	r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("writing %s: %v", packets.PacketNames[pk.FixedHeader.Type], err)
	}
}

func (r *raw) writeBytes(b []byte) error {
	r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.nc.Write(b)
	return err
}

// read returns the next packet, or an error (io.EOF when the hub closed).
func (r *raw) read(timeout time.Duration) (packets.Packet, error) {
	var pk packets.Packet
	r.nc.SetReadDeadline(time.Now().Add(timeout))
	b, err := r.br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(r.br)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.br, buf); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = 4
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	}
	return pk, err
}

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
	deadline := time.Now().Add(timeout)
	for {
		pk, err := r.read(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("connection still open after %s", timeout)
			}
			return // closed (EOF or reset)
		}
		ok := false
		for _, a := range allowed {
			ok = ok || pk.FixedHeader.Type == a
		}
		if !ok {
			r.t.Fatalf("got %s before the close", packets.PacketNames[pk.FixedHeader.Type])
		}
	}
}

// connect sends a CONNECT and returns the CONNACK's return code.
func (r *raw) connect(clientID, user, password string, keepAlive uint16) byte {
	r.t.Helper()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Keepalive: keepAlive, Clean: true,
			Username: []byte(user), UsernameFlag: user != "",
			Password: []byte(password), PasswordFlag: password != "",
		},
	}
	r.write(pk)
	return r.expect(packets.Connack).ReasonCode
}

func encodePacket(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	default:
		t.Fatalf("test cannot encode %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// --- certificates ---

func selfSignedCert(t testing.TB, cn string) (tls.Certificate, *x509.Certificate) {
	return signedCert(t, cn, nil, nil)
}

func signedCert(t testing.TB, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	isCA := cn == "test device CA"
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	parent, parentKey := tmpl, key
	if ca != nil {
		parent, parentKey = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
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
