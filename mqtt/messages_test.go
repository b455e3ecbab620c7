package mqtt_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/mqtt"
)

// readEvents reads n events of a consumer group from the start.
func readEvents(t testing.TB, h *hub.Hub, f twinhub.EventFilter, n int) []*twinhub.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*twinhub.Event
	err := h.ReadEvents(ctx, f, func(e *twinhub.Event) error {
		got = append(got, e)
		if len(got) == n {
			cancel() // this event still counts as read
		}
		return nil
	})
	if len(got) != n {
		t.Fatalf("read %d of %d events: %v", len(got), n, err)
	}
	return got
}

func props(e *twinhub.Event) map[string]string {
	m := map[string]string{}
	for _, p := range e.Properties {
		m[p.Key] = p.Value
	}
	return m
}

func TestTelemetry(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	ctx := context.Background()
	c := e.mustConnect("dev1", clientOpts{password: e.device("dev1"), clean: true})
	// As the Node SDK writes it ($ as %24), then as Go does, then bare.
	c.publish(t, "devices/dev1/messages/events/%24.mid=m1&%24.cid=c1&%24.ct=application%2Fjson&%24.ce=utf-8&color=red&a%20b=x%2By", 1, `{"t":1}`)
	c.publish(t, "devices/dev1/messages/events/%24.mid=m2&temp=20", 1, `{"t":2}`)
	c.publish(t, "devices/dev1/messages/events/", 1, `plain`)
	mod, err := e.hub.CreateModule(ctx, twinhub.Module{DeviceID: "dev1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	mc := e.mustConnect("dev1/m1", clientOpts{password: e.token(testHost+"/devices/dev1/modules/m1", mod.Authentication.SymmetricKey.PrimaryKey, time.Hour), clean: true})
	mc.publish(t, "devices/dev1/modules/m1/messages/events/%24.on=out1&k=v/", 1, `mod`)

	evs := readEvents(t, e.hub, twinhub.EventFilter{Group: "g1", FromStart: true}, 4)
	e0 := evs[0]
	if e0.Identity != twinhub.DeviceKey("dev1") || e0.MessageID != "m1" || e0.CorrelationID != "c1" ||
		e0.ContentType != "application/json" || e0.ContentEncoding != "utf-8" || e0.AuthMethod != "sas" ||
		string(e0.Body) != `{"t":1}` || e0.Enqueued.IsZero() {
		t.Errorf("event 0: %+v", e0)
	}
	if p := props(e0); p["color"] != "red" || p["a b"] != "x+y" || len(p) != 2 {
		t.Errorf("event 0 properties %v", p)
	}
	if evs[1].MessageID != "m2" || props(evs[1])["temp"] != "20" || string(evs[2].Body) != "plain" {
		t.Errorf("events 1, 2: %+v %+v", evs[1], evs[2])
	}
	if evs[3].Identity != twinhub.ModuleKey("dev1", "m1") || props(evs[3])["k"] != "v" || string(evs[3].Body) != "mod" {
		t.Errorf("module event %+v", evs[3])
	}
	for _, ev := range evs {
		if ev.Sequence == 0 || ev.Partition != jetstream.TelemetryPartition("dev1", jetstream.DefaultTelemetryPartitions) {
			t.Errorf("sequence %d partition %d", ev.Sequence, ev.Partition)
		}
	}

	// A group resumes where it stopped; another group starts afresh; a
	// filtered group sees only its identity.
	c.publish(t, "devices/dev1/messages/events/n=5", 1, `five`)
	if evs := readEvents(t, e.hub, twinhub.EventFilter{Group: "g1"}, 1); string(evs[0].Body) != "five" {
		t.Errorf("g1 resumed at %q", evs[0].Body)
	}
	if evs := readEvents(t, e.hub, twinhub.EventFilter{Group: "g2", FromStart: true}, 1); evs[0].MessageID != "m1" {
		t.Errorf("g2 started at %+v", evs[0])
	}
	if evs := readEvents(t, e.hub, twinhub.EventFilter{Group: "g3", FromStart: true, DeviceID: "dev1", ModuleID: "m1"}, 1); string(evs[0].Body) != "mod" {
		t.Errorf("module filter got %q", evs[0].Body)
	}

	// Another identity's topic closes the connection.
	c.Publish("devices/dev2/messages/events/", 1, false, "x")
	waitFor(t, "disconnect", func() bool { return !c.IsConnectionOpen() })
}

func TestTelemetryTooLarge(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	r := e.dialRaw()
	tok := e.device("dev1")
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	r.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "devices/dev1/messages/events/", PacketID: 1,
		Payload: make([]byte, twinhub.MaxTelemetrySize+1),
	})
	r.expectClosed(5 * time.Second)
}

func TestC2D(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	ctx := context.Background()
	tok := e.device("dev1")
	send := func(body string, m twinhub.C2DMessage, ttl time.Duration) error {
		m.Body = []byte(body)
		return e.hub.SendC2D(ctx, "dev1", &m, ttl)
	}
	if err := send("one", twinhub.C2DMessage{MessageID: "id1", CorrelationID: "c1", Ack: "full", ContentType: "text/plain",
		Properties: []twinhub.Property{{Key: "color", Value: "red/blue & green"}}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := send("expired", twinhub.C2DMessage{}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := send("two", twinhub.C2DMessage{}, time.Minute); err != nil {
		t.Fatal(err)
	}

	c := e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	m := c.next(t, "devices/dev1/messages/devicebound/")
	if string(m.Payload()) != "one" || m.Qos() != 1 {
		t.Fatalf("first message %q qos %d", m.Payload(), m.Qos())
	}
	bag := strings.TrimPrefix(m.Topic(), "devices/dev1/messages/devicebound/")
	if !strings.HasPrefix(bag, "%24.mid=id1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.exp=") {
		t.Errorf("bag %s", bag)
	}
	for _, want := range []string{"&%24.cid=c1", "&%24.ct=text%2Fplain", "&iothub-ack=full", "&color=red%2Fblue%20%26%20green"} {
		if !strings.Contains(bag, want) {
			t.Errorf("bag %s lacks %s", bag, want)
		}
	}
	if m := c.next(t, "devices/dev1/messages/devicebound/"); string(m.Payload()) != "two" {
		t.Fatalf("second message %q", m.Payload())
	}
	// PUBACKed messages leave the queue.
	waitFor(t, "empty queue", func() bool {
		_, err := e.hub.NextC2D(ctx, "dev1", 0)
		return errors.Is(err, twinhub.ErrNotFound)
	})
	// A message sent while connected arrives at once.
	if err := send("three", twinhub.C2DMessage{}, 0); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t, "devices/dev1/messages/devicebound/"); string(m.Payload()) != "three" {
		t.Fatalf("third message %q", m.Payload())
	}
}

// TestC2DRedelivery: a message the device did not PUBACK goes again to
// its next connection.
func TestC2DRedelivery(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	ctx := context.Background()
	tok := e.device("dev1")
	if err := e.hub.SendC2D(ctx, "dev1", &twinhub.C2DMessage{Body: []byte("again")}, 0); err != nil {
		t.Fatal(err)
	}
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "devices/dev1/messages/devicebound/#", Qos: 1}}})
	r.expect(packets.Suback)
	pk := r.expect(packets.Publish)
	if string(pk.Payload) != "again" || pk.FixedHeader.Qos != 1 {
		t.Fatalf("publish %+v", pk)
	}
	r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	r.expectClosed(5*time.Second, packets.Publish)

	c := e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	if m := c.next(t, "devices/dev1/messages/devicebound/"); string(m.Payload()) != "again" {
		t.Fatalf("redelivered %q", m.Payload())
	}
}

func TestC2DLimits(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	ctx := context.Background()
	e.device("dev1")
	send := func(m *twinhub.C2DMessage, ttl time.Duration) error { return e.hub.SendC2D(ctx, "dev1", m, ttl) }
	for i := range twinhub.MaxC2DPending {
		if err := send(&twinhub.C2DMessage{Body: []byte{byte(i)}}, 0); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	err := send(&twinhub.C2DMessage{Body: []byte("51")}, 0)
	wantHubError(t, err, http.StatusForbidden, "DeviceMaximumQueueDepthExceeded")
	if n, err := e.hub.PurgeC2D(ctx, "dev1"); err != nil || n != twinhub.MaxC2DPending {
		t.Fatalf("purged %d, %v", n, err)
	}
	if err := send(&twinhub.C2DMessage{Body: []byte("after purge")}, 0); err != nil {
		t.Fatal(err)
	}
	wantHubError(t, send(&twinhub.C2DMessage{Body: make([]byte, twinhub.MaxC2DSize+1)}, 0), 413, "MessageTooLarge")
	wantHubError(t, send(&twinhub.C2DMessage{}, twinhub.MaxC2DTTL+time.Second), 400, "ArgumentInvalid")
	wantHubError(t, send(&twinhub.C2DMessage{Ack: "sometimes"}, 0), 400, "ArgumentInvalid")
	wantHubError(t, send(&twinhub.C2DMessage{Properties: []twinhub.Property{{Key: "$.mid", Value: "x"}}}, 0), 400, "ArgumentInvalid")
	wantHubError(t, e.hub.SendC2D(ctx, "nope", &twinhub.C2DMessage{}, 0), 404, "DeviceNotFound")
}

func BenchmarkTelemetryPublish(b *testing.B) {
	e := newEnv(b, mqtt.Options{}, hubtest.WithMessaging())
	c := e.mustConnect("dev1", clientOpts{password: e.device("dev1"), clean: true})
	body := []byte(`{"temperature":21.5,"humidity":40}`)
	b.ResetTimer()
	for b.Loop() {
		tok := c.Publish("devices/dev1/messages/events/%24.ct=application%2Fjson&site=a", 1, false, body)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
	}
}

// TestC2DQoS0: a client that subscribed at QoS 0 gets messages at QoS 0,
// and they leave the queue when sent.
func TestC2DQoS0(t *testing.T) {
	e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging())
	ctx := context.Background()
	tok := e.device("dev1")
	for _, b := range []string{"a", "b"} {
		if err := e.hub.SendC2D(ctx, "dev1", &twinhub.C2DMessage{Body: []byte(b)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	c := e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	tok0 := c.Subscribe("devices/dev1/messages/devicebound/#", 0, func(_ paho.Client, m paho.Message) { c.msgs <- m })
	if !tok0.WaitTimeout(10*time.Second) || tok0.Error() != nil {
		t.Fatal(tok0.Error())
	}
	for _, want := range []string{"a", "b"} {
		m := c.next(t, "devices/dev1/messages/devicebound/")
		if string(m.Payload()) != want || m.Qos() != 0 {
			t.Fatalf("got %q at QoS %d, want %q at 0", m.Payload(), m.Qos(), want)
		}
	}
	waitFor(t, "empty queue", func() bool {
		_, err := e.hub.NextC2D(ctx, "dev1", 0)
		return errors.Is(err, twinhub.ErrNotFound)
	})
}

// slowStore is an asynchronous telemetry store that answers the appends
// in the order release says, to check that PUBACKs keep the order of the
// messages whatever order the store answers in.
type slowStore struct {
	twinhub.TelemetryStore
	mu      sync.Mutex
	pending map[string]func(error)
	arrived chan string
}

func (s *slowStore) AppendAsync(e *twinhub.Event, _ time.Duration, done func(error)) {
	s.mu.Lock()
	s.pending[string(e.Body)] = done
	s.mu.Unlock()
	s.arrived <- string(e.Body)
}

func (s *slowStore) release(body string, err error) {
	s.mu.Lock()
	done := s.pending[body]
	delete(s.pending, body)
	s.mu.Unlock()
	done(err)
}

// TestTelemetryPipelined: a device may send several messages before their
// PUBACKs; each PUBACK waits for its message to be stored, and they come
// in the order of the messages. A message that cannot be stored closes
// the connection without its PUBACK (nor any later one).
func TestTelemetryPipelined(t *testing.T) {
	store := &slowStore{pending: map[string]func(error){}, arrived: make(chan string, 16)}
	e := newEnv(t, mqtt.Options{}, hubtest.WithTelemetry(store))
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), e.device("dev1"), 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	publish := func(id uint16, body string) {
		r.write(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   "devices/dev1/messages/events/", PacketID: id, Payload: []byte(body),
		})
	}
	for i, b := range []string{"a", "b", "c"} {
		publish(uint16(i+1), b)
	}
	for range 3 {
		select {
		case <-store.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the hub did not read the messages sent before their PUBACKs")
		}
	}
	store.release("c", nil)
	store.release("b", nil)
	if pk, err := r.read(200 * time.Millisecond); err == nil {
		t.Fatalf("got %s (packet %d) before message 1 was stored", packets.PacketNames[pk.FixedHeader.Type], pk.PacketID)
	}
	store.release("a", nil)
	for want := uint16(1); want <= 3; want++ {
		if pk := r.expect(packets.Puback); pk.PacketID != want {
			t.Fatalf("PUBACK %d, want %d", pk.PacketID, want)
		}
	}

	publish(4, "d")
	publish(5, "e")
	<-store.arrived
	<-store.arrived
	store.release("e", nil)
	store.release("d", errors.New("disk full"))
	r.expectClosed(10 * time.Second)
}
