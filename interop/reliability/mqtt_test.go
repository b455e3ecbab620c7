package reliability

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub/internal/rawmqtt"
)

// username is what the Node and Python SDKs send.
func (p *proc) username(clientID string) string {
	return p.HostName + "/" + clientID + "/?api-version=" + apiVersion
}

// --- a raw MQTT connection, for what no SDK would send ---

type rawConn struct {
	nc net.Conn
	c  *rawmqtt.Conn
}

func (p *proc) dialMQTT(t testing.TB) *rawConn {
	t.Helper()
	r, err := p.tryDialMQTT()
	if err != nil {
		t.Fatalf("dialing MQTT: %v", err)
	}
	t.Cleanup(func() { r.nc.Close() })
	return r
}

// tryDialMQTT is dialMQTT for goroutines other than the test's: the
// caller closes the connection.
func (p *proc) tryDialMQTT() (*rawConn, error) {
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", net.JoinHostPort(p.Addr, "8883"), p.TLSConfig())
	if err != nil {
		return nil, err
	}
	return &rawConn{nc: nc, c: rawmqtt.New(nc)}, nil
}

// packetBytes encodes pk at MQTT 3.1.1.
func packetBytes(pk packets.Packet) []byte {
	pk.ProtocolVersion = 4
	b, err := rawmqtt.Encode(pk)
	if err != nil {
		panic(err)
	}
	return b
}

func (r *rawConn) send(b []byte) error { return r.c.Send(b) }

func connectPacket(clientID, user, password string) packets.Packet {
	return rawmqtt.Connect(clientID, user, password, 60)
}

func publishPacket(topic string, qos byte, id uint16, body []byte) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic, PacketID: id, Payload: body}
}

// read returns the next packet (io.EOF or a reset once the hub closed).
func (r *rawConn) read(timeout time.Duration) (packets.Packet, error) { return r.c.Read(timeout) }

// connack sends CONNECT and returns the CONNACK code, or -1 and the error
// if the hub closed the connection without one.
func (r *rawConn) connack(clientID, user, password string) (int, error) {
	if err := r.send(packetBytes(connectPacket(clientID, user, password))); err != nil {
		return -1, err
	}
	pk, err := r.read(15 * time.Second)
	if err != nil {
		return -1, err
	}
	if pk.FixedHeader.Type != packets.Connack {
		return -1, fmt.Errorf("got %s, not CONNACK", packets.PacketNames[pk.FixedHeader.Type])
	}
	return int(pk.ReasonCode), nil
}

// closed reads until the hub closes the connection, failing the test if
// it stays open for timeout. It returns the packets read before.
func (r *rawConn) closed(t testing.TB, timeout time.Duration) []packets.Packet {
	t.Helper()
	got, closed := r.c.Drain(timeout)
	if !closed {
		t.Fatalf("the hub kept the connection open for %s (read %d packets)", timeout, len(got))
	}
	return got
}

// --- a device on paho, the client most Go devices use ---

// twinReply is the hub's answer on $iothub/twin/res.
type twinReply struct {
	Status  int
	Version int64 // $version of a reported patch's 204
	Body    []byte
}

// pahoDevice is a device connection that sends twin requests and matches
// answers by $rid.
type pahoDevice struct {
	c       paho.Client
	id      string
	rid     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan twinReply
	desired chan []byte
}

func (p *proc) connectDevice(t testing.TB, d device) (*pahoDevice, error) {
	t.Helper()
	pd := &pahoDevice{id: d.ID, pending: map[string]chan twinReply{}, desired: make(chan []byte, 1024)}
	devID, _, _ := strings.Cut(d.ID, "/")
	resource := p.HostName + "/devices/" + url.PathEscape(devID)
	if _, mid, ok := strings.Cut(d.ID, "/"); ok {
		resource += "/modules/" + url.PathEscape(mid)
	}
	o := paho.NewClientOptions().
		AddBroker("tls://" + net.JoinHostPort(p.Addr, "8883")).
		SetClientID(d.ID).
		SetUsername(p.username(d.ID)).
		SetPassword(p.tokenFor(resource, "", d.Key, time.Hour)).
		SetTLSConfig(p.TLSConfig()).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(15 * time.Second).
		SetKeepAlive(60 * time.Second).
		SetOrderMatters(false)
	pd.c = paho.NewClient(o)
	if tok := pd.c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", d.ID, tok.Error())
	}
	t.Cleanup(func() { pd.c.Disconnect(0) })
	sub := pd.c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 0, "$iothub/twin/PATCH/properties/desired/#": 0}, pd.onMessage)
	if !sub.WaitTimeout(30*time.Second) || sub.Error() != nil {
		return nil, fmt.Errorf("subscribe %s: %v", d.ID, sub.Error())
	}
	return pd, nil
}

func (pd *pahoDevice) onMessage(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	if strings.HasPrefix(topic, "$iothub/twin/PATCH/properties/desired/") {
		select {
		case pd.desired <- m.Payload():
		default:
		}
		return
	}
	rest, ok := strings.CutPrefix(topic, "$iothub/twin/res/")
	if !ok {
		return
	}
	status, query, _ := strings.Cut(rest, "/?")
	q, _ := url.ParseQuery(query)
	var r twinReply
	r.Status, _ = strconv.Atoi(status)
	r.Version, _ = strconv.ParseInt(q.Get("$version"), 10, 64)
	r.Body = append([]byte(nil), m.Payload()...)
	pd.mu.Lock()
	ch := pd.pending[q.Get("$rid")]
	delete(pd.pending, q.Get("$rid"))
	pd.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// twin sends a twin request on topic (with a fresh $rid) and waits for
// the answer.
func (pd *pahoDevice) twin(ctx context.Context, topic string, body []byte) (twinReply, error) {
	rid := strconv.FormatUint(pd.rid.Add(1), 10)
	ch := make(chan twinReply, 1)
	pd.mu.Lock()
	pd.pending[rid] = ch
	pd.mu.Unlock()
	defer func() {
		pd.mu.Lock()
		delete(pd.pending, rid)
		pd.mu.Unlock()
	}()
	tok := pd.c.Publish(topic+"?$rid="+rid, 0, false, body)
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			return twinReply{}, fmt.Errorf("publish: %v", tok.Error())
		}
	case <-ctx.Done():
		return twinReply{}, ctx.Err()
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return twinReply{}, fmt.Errorf("no twin reply: %w", ctx.Err())
	}
}

// patchReported sends a reported patch and returns the answer.
func (pd *pahoDevice) patchReported(ctx context.Context, patch map[string]any) (twinReply, error) {
	data, err := json.Marshal(patch)
	if err != nil {
		return twinReply{}, err
	}
	return pd.twin(ctx, "$iothub/twin/PATCH/properties/reported/", data)
}

// getTwin reads the twin as a device does.
func (pd *pahoDevice) getTwin(ctx context.Context) (twinReply, error) {
	return pd.twin(ctx, "$iothub/twin/GET/", nil)
}
