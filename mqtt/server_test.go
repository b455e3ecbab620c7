package mqtt_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/mqtt"
)

// topicParams reads the query of a reply topic such as
// $iothub/twin/res/204/?$rid=1&$version=2.
func topicParams(t testing.TB, topic string) (status int, q url.Values) {
	t.Helper()
	path, query, _ := strings.Cut(topic, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) == 4 && parts[2] == "res" {
		status, _ = strconv.Atoi(parts[3])
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("reply topic %q: %v", topic, err)
	}
	return status, q
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connectionState(t testing.TB, h *hub.Hub, k twinhub.Key) string {
	t.Helper()
	doc := hubtest.Twin(t, h, k)
	return doc["connectionState"].(string)
}

// TestTwin is the device half of the twin tutorial over both transports:
// read the twin, patch reported properties, hear about desired ones.
func TestTwin(t *testing.T) {
	for _, ws := range []bool{false, true} {
		name := "tls"
		if ws {
			name = "websocket"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mqtt.Options{})
			ctx := context.Background()
			tok := e.device("dev1")
			before, _ := e.hub.GetDevice(ctx, "dev1")
			c := e.mustConnect("dev1", clientOpts{ws: ws, password: tok})
			if g := c.subscribe(t, "$iothub/twin/res/#"); g != 1 {
				t.Errorf("granted QoS %d for twin responses, want 1", g)
			}
			c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")

			// GET, empty body at QoS 1 (Go SDK) and " " at QoS 0 (Node SDK).
			for i, body := range []string{"", " "} {
				rid := fmt.Sprintf("%x", i+1)
				c.publish(t, "$iothub/twin/GET/?$rid="+rid, byte(1-i), body)
				m := c.next(t, "$iothub/twin/res/")
				status, q := topicParams(t, m.Topic())
				if status != 200 || q.Get("$rid") != rid {
					t.Fatalf("GET reply on %s", m.Topic())
				}
				doc := decode(t, m.Payload())
				if doc["desired"].(map[string]any)["$version"] != 1.0 || doc["reported"].(map[string]any)["$version"] != 1.0 {
					t.Errorf("new twin: %s", m.Payload())
				}
				if _, ok := doc["tags"]; ok {
					t.Errorf("devices do not see tags: %s", m.Payload())
				}
			}

			// Reported patch: 204 with the new version, visible to the back end.
			c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=abc-1", 0, `{"connectivity":{"type":"cellular"}}`)
			m := c.next(t, "$iothub/twin/res/")
			status, q := topicParams(t, m.Topic())
			if status != 204 || q.Get("$rid") != "abc-1" || q.Get("$version") != "2" {
				t.Fatalf("PATCH reply on %s", m.Topic())
			}
			doc := hubtest.Twin(t, e.hub, twinhub.DeviceKey("dev1"))
			rep := doc["properties"].(map[string]any)["reported"].(map[string]any)
			if rep["connectivity"].(map[string]any)["type"] != "cellular" {
				t.Errorf("reported after PATCH: %v", rep)
			}

			// Desired: the back end's patch arrives with its $version.
			if _, err := e.hub.UpdateTwin(ctx, twinhub.DeviceKey("dev1"), twinhub.TwinUpdate{Desired: map[string]any{"power_level": 3.0}}, "*"); err != nil {
				t.Fatal(err)
			}
			m = c.next(t, "$iothub/twin/PATCH/properties/desired/")
			if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" {
				t.Errorf("desired topic %s", m.Topic())
			}
			if d := decode(t, m.Payload()); d["power_level"] != 3.0 || d["$version"] != 2.0 {
				t.Errorf("desired body %s", m.Payload())
			}

			// Connection state on the twin and registry, then off again.
			dev, _ := e.hub.GetDevice(ctx, "dev1")
			if dev.ConnectionState != twinhub.StateConnected || !dev.ConnectionStateUpdatedTime.After(before.ConnectionStateUpdatedTime.Time) || dev.LastActivityTime.IsZero() {
				t.Errorf("registry while connected: %+v", dev)
			}
			if s := connectionState(t, e.hub, twinhub.DeviceKey("dev1")); s != twinhub.StateConnected {
				t.Errorf("twin connectionState %s while connected", s)
			}
			c.Disconnect(100)
			waitFor(t, "Disconnected", func() bool {
				return connectionState(t, e.hub, twinhub.DeviceKey("dev1")) == twinhub.StateDisconnected
			})
		})
	}
}

func TestModuleTwin(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	e.device("edge")
	m, err := e.hub.CreateModule(ctx, twinhub.Module{DeviceID: "edge", ModuleID: "mod1"})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.token(testHost+"/devices/edge/modules/mod1", m.Authentication.SymmetricKey.PrimaryKey, time.Hour)
	c := e.mustConnect("edge/mod1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/twin/res/#")
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	if g := c.subscribe(t, "devices/edge/modules/mod1/inputs/#"); g != 1 {
		t.Errorf("module inputs: granted %d", g)
	}
	if g := c.subscribe(t, "devices/edge/modules/other/inputs/#"); g != 0x80 {
		t.Errorf("another module's inputs: granted %d, want 0x80", g)
	}
	c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", 1, `{"temp":21}`)
	if m := c.next(t, "$iothub/twin/res/"); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/?$rid=1&$version=2") {
		t.Errorf("reply %s", m.Topic())
	}
	mt := hubtest.Twin(t, e.hub, twinhub.ModuleKey("edge", "mod1"))
	if mt["properties"].(map[string]any)["reported"].(map[string]any)["temp"] != 21.0 || mt["connectionState"] != twinhub.StateConnected {
		t.Errorf("module twin %v", mt)
	}
	dt := hubtest.Twin(t, e.hub, twinhub.DeviceKey("edge"))
	if dt["properties"].(map[string]any)["reported"].(map[string]any)["temp"] != nil || dt["connectionState"] != twinhub.StateDisconnected {
		t.Errorf("the device twin changed with its module's: %v", dt)
	}
	if _, err := e.hub.UpdateTwin(ctx, twinhub.ModuleKey("edge", "mod1"), twinhub.TwinUpdate{Desired: map[string]any{"x": "y"}}, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.UpdateTwin(ctx, twinhub.DeviceKey("edge"), twinhub.TwinUpdate{Desired: map[string]any{"device": "only"}}, "*"); err != nil {
		t.Fatal(err)
	}
	m2 := c.next(t, "$iothub/twin/PATCH/properties/desired/")
	if d := decode(t, m2.Payload()); d["x"] != "y" {
		t.Errorf("module desired %s", m2.Payload())
	}
	c.none(t, 300*time.Millisecond)
}

func TestTwinErrors(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/twin/res/#")
	big := `{"s":"` + strings.Repeat("x", 4000) + `"`
	for i := range 8 {
		big += fmt.Sprintf(`,"k%d":"%s"`, i, strings.Repeat("y", 4000))
	}
	big += "}"
	tests := []struct {
		name, body string
		status     int
		code       float64
	}{
		{"not JSON", `{"a":`, 400, 400004},
		{"not an object", `[1,2]`, 400, 400004},
		{"key with a dot", `{"a.b":1}`, 400, 400004},
		{"integer too large", `{"a":9007199254740993}`, 400, 400004},
		{"too deep", `{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":1}}}}}}}}}}}}`, 400, 400004},
		{"over 32 KB", big, 403, 403100}, // IoT Hub: DeviceModelMaxPropertiesExceeded
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rid := strconv.Itoa(i + 1)
			c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid="+rid, 1, tc.body)
			m := c.next(t, "$iothub/twin/res/")
			status, q := topicParams(t, m.Topic())
			if status != tc.status || q.Get("$rid") != rid {
				t.Fatalf("reply on %s, want status %d", m.Topic(), tc.status)
			}
			body := decode(t, m.Payload())
			if body["errorCode"] != tc.code || body["message"] == "" {
				t.Errorf("error body %s", m.Payload())
			}
		})
	}
	// Nothing was written: reported is still at version 1.
	c.publish(t, "$iothub/twin/GET/?$rid=last", 1, "")
	doc := decode(t, c.next(t, "$iothub/twin/res/200").Payload())
	if v := doc["reported"].(map[string]any)["$version"]; v != 1.0 {
		t.Errorf("reported $version %v after refused patches, want 1", v)
	}
}

// TestRefusals: every CONNECT the hub refuses gets CONNACK with a refusal
// code, then the connection closes, and the device's state is untouched.
func TestRefusals(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	d, _ := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "dev1"})
	key := d.Authentication.SymmetricKey.PrimaryKey
	other, _ := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "dev2"})
	off, _ := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "off"})
	off.Status = twinhub.StatusDisabled
	if _, err := e.hub.UpdateDevice(ctx, *off, "*"); err != nil {
		t.Fatal(err)
	}
	good := e.token(testHost+"/devices/dev1", key, time.Hour)
	tests := []struct {
		name, clientID, user, password string
		code                           byte
	}{
		{"wrong key", "dev1", username("dev1"), e.token(testHost+"/devices/dev1", other.Authentication.SymmetricKey.PrimaryKey, time.Hour), 5},
		{"expired token", "dev1", username("dev1"), e.token(testHost+"/devices/dev1", key, -time.Minute), 5},
		{"token of another device", "dev2", username("dev2"), good, 5},
		{"disabled device", "off", username("off"), e.token(testHost+"/devices/off", off.Authentication.SymmetricKey.PrimaryKey, time.Hour), 5},
		{"unknown device", "ghost", username("ghost"), e.token(testHost+"/devices/ghost", key, time.Hour), 5},
		{"no credentials", "dev1", username("dev1"), "", 5},
		{"password not a token", "dev1", username("dev1"), "hunter2", 4},
		{"no user name", "dev1", "", good, 4},
		{"user name of another device", "dev1", username("dev2"), good, 4},
		{"user name of another hub", "dev1", "other.example/dev1/?api-version=2021-04-12", good, 4},
		{"user name with a module", "dev1", testHost + "/dev1/mod/?api-version=2021-04-12", good, 4},
		{"empty client id", "", username(""), good, 2},
		{"client id with a bad character", "dev 1", username("dev 1"), good, 2},
		{"client id with two slashes", "a/b/c", username("a/b/c"), good, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.dialRaw()
			if got := r.connect(tc.clientID, tc.user, tc.password, 30); got != tc.code {
				t.Fatalf("CONNACK %d, want %d", got, tc.code)
			}
			r.expectClosed(5 * time.Second)
		})
	}
	t.Run("MQTT 5", func(t *testing.T) {
		r := e.dialRaw()
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
			Username: []byte(username("dev1")), UsernameFlag: true, Password: []byte(good), PasswordFlag: true,
		}}
		if err := r.writeBytes(encode5(t, pk)); err != nil {
			t.Fatal(err)
		}
		if got := r.expect(packets.Connack).ReasonCode; got != 1 {
			t.Errorf("CONNACK %d, want 1 (unacceptable protocol version)", got)
		}
		r.expectClosed(5 * time.Second)
	})
	t.Run("first packet not CONNECT", func(t *testing.T) {
		r := e.dialRaw()
		r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		r.expectClosed(5 * time.Second)
	})
	for _, id := range []string{"dev1", "dev2", "off"} {
		if s := connectionState(t, e.hub, twinhub.DeviceKey(id)); s != twinhub.StateDisconnected {
			t.Errorf("%s is %s after refused connections", id, s)
		}
	}
	dev, _ := e.hub.GetDevice(ctx, "dev1")
	if !dev.LastActivityTime.IsZero() {
		t.Errorf("refused connections changed lastActivityTime: %v", dev.LastActivityTime)
	}
}

func encode5(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 5
	return encodePacket(t, pk)
}

// TestForbiddenTopics: subscriptions outside the IoT Hub set or about
// another identity get 0x80; such publishes, QoS 2 and retain close the
// connection.
func TestForbiddenTopics(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	e.device("dev2")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	for filter, want := range map[string]byte{
		"devices/dev1/messages/devicebound/#":      1,
		"$iothub/methods/POST/#":                   1,
		"devices/dev2/messages/devicebound/#":      0x80,
		"devices/+/messages/devicebound/#":         0x80,
		"#":                                        0x80,
		"$iothub/twin/#":                           0x80,
		"devices/dev1/modules/m/inputs/#":          0x80,
		"devices/dev1/messages/events/#":           0x80,
		"$iothub/twin/PATCH/properties/reported/#": 0x80,
	} {
		if got := c.subscribe(t, filter); got != want {
			t.Errorf("SUBSCRIBE %s: granted %#x, want %#x", filter, got, want)
		}
	}
	// Telemetry is accepted (not yet stored) at QoS 0 and 1.
	c.publish(t, "devices/dev1/messages/events/%24.ct=application%2Fjson&a=1", 1, `{"t":1}`)
	c.publish(t, "devices/dev1/messages/events/", 0, `{"t":1}`)
	c.publish(t, "$iothub/methods/res/200/?$rid=1", 1, `{}`)

	closes := []struct {
		name   string
		topic  string
		qos    byte
		retain bool
	}{
		{"telemetry as another device", "devices/dev2/messages/events/", 1, false},
		{"another device's C2D topic", "devices/dev2/messages/devicebound/", 1, false},
		{"a topic outside IoT Hub's", "hello/world", 0, false},
		{"twin GET without $rid", "$iothub/twin/GET/", 0, false},
		{"QoS 2", "devices/dev1/messages/events/", 2, false},
		{"retain", "devices/dev1/messages/events/", 1, true},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			r := e.dialRaw()
			if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
				t.Fatalf("CONNACK %d", rc)
			}
			r.write(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos, Retain: tc.retain},
				TopicName:   tc.topic, PacketID: 7, Payload: []byte("{}"),
			})
			r.expectClosed(5 * time.Second)
		})
	}
}

func TestOversizePacket(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	// A header announcing 300 KB: refused before the body is read.
	hdr := []byte{0x32}
	n := 300 * 1024
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		hdr = append(hdr, b)
		if n == 0 {
			break
		}
	}
	r.writeBytes(hdr)
	r.expectClosed(5 * time.Second)

	// Just under the limit passes.
	r = e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	body := make([]byte, 256*1024)
	r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "devices/dev1/messages/events/", PacketID: 1, Payload: body})
	r.expect(packets.Puback)
}

func TestKeepAliveAndConnectTimeout(t *testing.T) {
	e := newEnv(t, mqtt.Options{ConnectTimeout: time.Second})
	tok := e.device("dev1")

	// Silent after TLS: closed once the connect timeout has passed (the
	// deadline here is only how long the test waits).
	r := e.dialRaw()
	r.expectClosed(30 * time.Second)

	// Keep-alive 1s, then silence: closed (after 1.3-1.5s: the read
	// deadline is moved only once it is within an eighth of its timeout,
	// package deadline).
	r = e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 1); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	r.expectClosed(30 * time.Second)
	waitFor(t, "Disconnected", func() bool {
		return connectionState(t, e.hub, twinhub.DeviceKey("dev1")) == twinhub.StateDisconnected
	})

	// Pings keep it open past 1.5 keep-alives: a ping every 250ms with a
	// keep-alive of 2s leaves the machine 2.75s to stall between two.
	r = e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 2); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	for range 16 {
		time.Sleep(250 * time.Millisecond)
		r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		r.expect(packets.Pingresp)
	}
}

// TestReplace: a second connection of an identity closes the first, and
// the twin stays Connected.
func TestReplace(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	c := e.mustConnect("dev1", clientOpts{ws: true, password: tok})
	r.expectClosed(5 * time.Second)
	// Once the replaced connection is gone and every queued state is
	// stored, the state is the new connection's.
	waitFor(t, "one connection", func() bool { return e.srv.Connections() == 1 })
	if err := e.hub.FlushConnectionStates(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := connectionState(t, e.hub, twinhub.DeviceKey("dev1")); s != twinhub.StateConnected {
		t.Errorf("state %s after the replaced connection closed", s)
	}
	if !c.IsConnectionOpen() {
		t.Error("the new connection was closed")
	}
	if n := e.srv.Connections(); n != 1 {
		t.Errorf("%d live connections, want 1", n)
	}
}

// TestPersistentSession: with CleanSession=0 a reconnecting client keeps
// its subscriptions without subscribing again, as the Node SDK expects
// when it renews its token; with CleanSession=1 it does not.
func TestPersistentSession(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	tok := e.device("dev1")
	k := twinhub.DeviceKey("dev1")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/twin/res/#")
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	c.Disconnect(100)
	waitFor(t, "Disconnected", func() bool { return connectionState(t, e.hub, k) == twinhub.StateDisconnected })

	c = e.mustConnect("dev1", clientOpts{password: tok})
	c.publish(t, "$iothub/twin/GET/?$rid=1", 0, " ")
	c.next(t, "$iothub/twin/res/200/?$rid=1")
	if _, err := e.hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"a": 1.0}}, "*"); err != nil {
		t.Fatal(err)
	}
	c.next(t, "$iothub/twin/PATCH/properties/desired/?$version=2")
	c.Disconnect(100)
	waitFor(t, "Disconnected", func() bool { return connectionState(t, e.hub, k) == twinhub.StateDisconnected })

	// CleanSession=1: no desired notifications without a subscription.
	// (Twin replies go to whoever asked, subscribed or not: see handlers.go.)
	c = e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	if _, err := e.hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"a": 2.0}}, "*"); err != nil {
		t.Fatal(err)
	}
	c.none(t, 500*time.Millisecond)
}

// TestDesiredOrder: concurrent back-end writes reach the device once each,
// in $version order.
func TestDesiredOrder(t *testing.T) {
	// Eight writers race: their notifications reach the connection in any
	// order and are put back in version order. The gap wait is long so
	// that a loaded machine cannot make a late version look lost.
	e := newEnv(t, mqtt.Options{DesiredGapWait: 30 * time.Second})
	ctx := context.Background()
	tok := e.device("dev1")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := e.hub.UpdateTwin(ctx, twinhub.DeviceKey("dev1"), twinhub.TwinUpdate{Desired: map[string]any{fmt.Sprintf("w%d", w): float64(i)}}, "*"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	last := 1.0
	for range writers * each {
		m := c.next(t, "$iothub/twin/PATCH/properties/desired/")
		v := decode(t, m.Payload())["$version"].(float64)
		if v != last+1 {
			t.Fatalf("version %v after %v", v, last)
		}
		last = v
	}
	c.none(t, 200*time.Millisecond)
}

// TestSlowReader: a client that stops reading is disconnected when its
// queue fills; the hub and other devices go on.
func TestSlowReader(t *testing.T) {
	e := newEnv(t, mqtt.Options{MaxQueueBytes: 64 << 10, WriteTimeout: 2 * time.Second})
	ctx := context.Background()
	tok := e.device("slow")
	tok2 := e.device("fine")
	r := e.dialRaw()
	if rc := r.connect("slow", username("slow"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "$iothub/twin/PATCH/properties/desired/#"}}})
	r.expect(packets.Suback)
	fine := e.mustConnect("fine", clientOpts{password: tok2})
	fine.subscribe(t, "$iothub/twin/res/#")
	// The slow client reads nothing more; 30 KB patches pile up, past what
	// the kernel's socket buffers take, until the hub gives up on it.
	blob := strings.Repeat("z", 30000)
	for i := 0; i < 2000 && connectionState(t, e.hub, twinhub.DeviceKey("slow")) == twinhub.StateConnected; i++ {
		if _, err := e.hub.UpdateTwin(ctx, twinhub.DeviceKey("slow"), twinhub.TwinUpdate{Desired: map[string]any{"blob": blob, "i": float64(i)}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the slow client dropped", func() bool {
		return connectionState(t, e.hub, twinhub.DeviceKey("slow")) == twinhub.StateDisconnected
	})
	fine.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
	fine.next(t, "$iothub/twin/res/200")
}

func TestX509(t *testing.T) {
	caCert, ca := selfSignedCert(t, "test device CA")
	roots := x509Pool(ca)
	e := newEnv(t, mqtt.Options{DeviceCA: roots})
	ctx := context.Background()

	selfCert, selfLeaf := selfSignedCert(t, "self-dev")
	tp := hub.Thumbprint(selfLeaf)
	if _, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "self-dev", Authentication: twinhub.Authentication{
		Type: twinhub.AuthSelfSigned, X509Thumbprint: twinhub.X509Thumbprint{PrimaryThumbprint: &tp}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "ca-dev", Authentication: twinhub.Authentication{Type: twinhub.AuthCertificateAuthority}}); err != nil {
		t.Fatal(err)
	}
	caSigned, _ := signedCert(t, "ca-dev", ca, caCert.PrivateKey.(ecdsaKey))
	wrongCN, _ := signedCert(t, "self-dev", ca, caCert.PrivateKey.(ecdsaKey))
	stranger, _ := selfSignedCert(t, "self-dev")

	for _, ws := range []bool{false, true} {
		for _, tc := range []struct {
			id   string
			cert tls.Certificate
			ok   bool
		}{
			{"self-dev", selfCert, true},
			{"ca-dev", caSigned, true},
			{"self-dev", stranger, false},
			{"ca-dev", wrongCN, false},
			{"ca-dev", selfCert, false},
		} {
			t.Run(fmt.Sprintf("%s ws=%v ok=%v", tc.id, ws, tc.ok), func(t *testing.T) {
				c, err := e.connect(tc.id, clientOpts{ws: ws, cert: &tc.cert})
				if (err == nil) != tc.ok {
					t.Fatalf("connect: %v, want ok=%v", err, tc.ok)
				}
				if err != nil {
					return
				}
				c.subscribe(t, "$iothub/twin/res/#")
				c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", 1, `{"x509":true}`)
				c.next(t, "$iothub/twin/res/204")
				c.Disconnect(100)
			})
		}
	}
	// Over raw MQTT, a wrong certificate is CONNACK 5.
	r := e.dialRaw(stranger)
	if rc := r.connect("self-dev", username("self-dev"), "", 30); rc != 5 {
		t.Errorf("CONNACK %d for a stranger's certificate, want 5", rc)
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r.expectClosed(5 * time.Second)
	if s := connectionState(t, e.hub, twinhub.DeviceKey("dev1")); s != twinhub.StateDisconnected {
		t.Errorf("state %s after the server closed", s)
	}
}

// TestRevoke: when the hub revokes an identity (deleted or disabled), its
// connections close, a device's modules' too, and others stay.
func TestRevoke(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	tok := e.device("dev1")
	tok2 := e.device("dev2")
	m, _ := e.hub.CreateModule(ctx, twinhub.Module{DeviceID: "dev1", ModuleID: "m"})
	mtok := e.token(testHost+"/devices/dev1/modules/m", m.Authentication.SymmetricKey.PrimaryKey, time.Hour)
	r1, rm, r2 := e.dialRaw(), e.dialRaw(), e.dialRaw()
	for _, c := range []struct {
		r      *raw
		id, tk string
	}{{r1, "dev1", tok}, {rm, "dev1/m", mtok}, {r2, "dev2", tok2}} {
		if rc := c.r.connect(c.id, username(c.id), c.tk, 30); rc != 0 {
			t.Fatalf("%s: CONNACK %d", c.id, rc)
		}
	}
	e.hub.RevokeConnections(twinhub.DeviceKey("dev1"))
	r1.expectClosed(5 * time.Second)
	rm.expectClosed(5 * time.Second)
	r2.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	r2.expect(packets.Pingresp)
	waitFor(t, "dev1 Disconnected", func() bool { return connectionState(t, e.hub, twinhub.DeviceKey("dev1")) == twinhub.StateDisconnected })
}

// TestDisableAndDelete: disabling or deleting an identity through the hub
// ends its connection (the hub revokes it).
func TestDisableAndDelete(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	tok := e.device("off")
	tok2 := e.device("gone")
	r1, r2 := e.dialRaw(), e.dialRaw()
	if rc := r1.connect("off", username("off"), tok, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	if rc := r2.connect("gone", username("gone"), tok2, 30); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	d, _ := e.hub.GetDevice(ctx, "off")
	d.Status = twinhub.StatusDisabled
	if _, err := e.hub.UpdateDevice(ctx, *d, "*"); err != nil {
		t.Fatal(err)
	}
	r1.expectClosed(5 * time.Second)
	// At once: the state was noted before the connection closed, and a
	// read on this node waits for it.
	if got := connectionState(t, e.hub, twinhub.DeviceKey("off")); got != twinhub.StateDisconnected {
		t.Fatalf("the disabled device, once its connection closed: %s", got)
	}
	if err := e.hub.DeleteDevice(ctx, "gone", "*"); err != nil {
		t.Fatal(err)
	}
	r2.expectClosed(5 * time.Second)
}

// TestFaultInjection: with fault injection on, a device's KillTcp message
// drops its connection after the delay it asks for, and it connects
// again; without it, the same message is telemetry and nothing more.
func TestFaultInjection(t *testing.T) {
	for _, on := range []bool{true, false} {
		e := newEnv(t, mqtt.Options{}, hubtest.WithMessaging(), hubtest.WithConfig(func(c *hub.Config) { c.FaultInjection = on }))
		tok := e.device("faulty")
		r := e.dialRaw()
		if rc := r.connect("faulty", username("faulty"), tok, 30); rc != 0 {
			t.Fatalf("CONNACK %d", rc)
		}
		topic := "devices/faulty/messages/events/AzIoTHub_FaultOperationType=KillTcp&AzIoTHub_FaultOperationCloseReason=boom&AzIoTHub_FaultOperationDelayInSecs=1"
		r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, PacketID: 7, Payload: []byte("FaultInjection")})
		r.expect(packets.Puback)
		if !on {
			// Still connected: a ping is answered.
			r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
			r.expect(packets.Pingresp)
			continue
		}
		r.expectClosed(10 * time.Second)
		again := e.dialRaw()
		if rc := again.connect("faulty", username("faulty"), tok, 30); rc != 0 {
			t.Fatalf("reconnect after the fault: CONNACK %d", rc)
		}
	}
}
