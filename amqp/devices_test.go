package amqp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/metricstest"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/sas"
)

// TestDeviceTelemetry: a device (or module) that put its own token, or a
// DeviceConnect policy's, sends telemetry on its own events address, with
// its properties, and receives its C2D messages (a module its inputs);
// another device's address, a policy without DeviceConnect, a disabled
// device are refused with amqp:unauthorized-access; an expired token gets
// each message rejected.
func TestDeviceTelemetry(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := e.hub.Host()
	keys := map[string]string{}
	for _, id := range []string{"d1", "d2", "off"} {
		d, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = d.Authentication.SymmetricKey.PrimaryKey
	}
	m, err := e.hub.CreateModule(ctx, twinhub.Module{DeviceID: "d1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	// session puts a token for audience, signed with key (policy "" for
	// a device's own key), and returns the session.
	session := func(audience, policy, key string, ttl time.Duration) *goamqp.Session {
		t.Helper()
		s := e.session(t, nil)
		tok, err := sas.NewToken(audience, policy, key, time.Now().Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, "d"); code != 200 {
			t.Fatalf("put-token for %s: %d %s", audience, code, desc)
		}
		return s
	}
	read := func(f twinhub.EventFilter) *twinhub.Event {
		t.Helper()
		rctx, stop := context.WithTimeout(ctx, 10*time.Second)
		defer stop()
		var got *twinhub.Event
		e.hub.ReadEvents(rctx, f, func(ev *twinhub.Event) error {
			got = ev
			stop()
			return nil
		})
		if got == nil {
			t.Fatalf("no event for %+v", f)
		}
		return got
	}
	send := func(s *goamqp.Session, address string, msg *goamqp.Message) error {
		snd, err := s.NewSender(ctx, address, nil)
		if err != nil {
			return err
		}
		defer snd.Close(ctx)
		return snd.Send(ctx, msg)
	}

	s := session(host+"/devices/d1", "", keys["d1"], time.Hour)
	mid, ct := "m-1", "application/json"
	msg := &goamqp.Message{
		Properties:            &goamqp.MessageProperties{MessageID: mid, ContentType: &ct},
		ApplicationProperties: map[string]any{"alert": "high", "level": int32(3)},
		Data:                  [][]byte{[]byte(`{"temp":21}`)},
	}
	if err := send(s, "/devices/d1/messages/events", msg); err != nil {
		t.Fatalf("telemetry of d1: %v", err)
	}
	ev := read(twinhub.EventFilter{Group: "t1", FromStart: true, DeviceID: "d1"})
	props := map[string]string{}
	for _, p := range ev.Properties {
		props[p.Key] = p.Value
	}
	if string(ev.Body) != `{"temp":21}` || ev.MessageID != mid || ev.ContentType != ct || props["alert"] != "high" || props["level"] != "3" || ev.AuthMethod != "sas" {
		t.Errorf("event %+v", ev)
	}
	err = send(s, "/devices/d2/messages/events", &goamqp.Message{Data: [][]byte{[]byte("x")}})
	wantCondition(t, "d1's token on d2's address", err, "amqp:unauthorized-access")

	// C2D: the device's own queue only, and not a module's.
	if err := e.hub.SendC2D(ctx, "d1", &twinhub.C2DMessage{MessageID: "c1", Body: []byte("to d1")}, 0); err != nil {
		t.Fatal(err)
	}
	rcv, err := s.NewReceiver(ctx, "/devices/d1/messages/devicebound", nil)
	if err != nil {
		t.Fatalf("d1's C2D receiver: %v", err)
	}
	c2d, err := rcv.Receive(ctx)
	if err != nil || string(c2d.GetData()) != "to d1" || c2d.Properties.MessageID != "c1" {
		t.Fatalf("C2D message %v, %v", c2d, err)
	}
	if c2d.Header != nil && c2d.Header.DeliveryCount != 0 {
		t.Errorf("a first delivery's delivery-count: %d", c2d.Header.DeliveryCount)
	}
	if err := rcv.AcceptMessage(ctx, c2d); err != nil {
		t.Fatal(err)
	}
	// Released (abandoned), a message comes again, its header's
	// delivery-count one up.
	if err := e.hub.SendC2D(ctx, "d1", &twinhub.C2DMessage{MessageID: "c2", Body: []byte("again")}, 0); err != nil {
		t.Fatal(err)
	}
	for want := uint32(0); want <= 1; want++ {
		m, err := rcv.Receive(ctx)
		if err != nil || m.Properties.MessageID != "c2" {
			t.Fatalf("delivery %d of c2: %v %v", want, m, err)
		}
		var got uint32
		if m.Header != nil {
			got = m.Header.DeliveryCount
		}
		if got != want {
			t.Errorf("delivery-count %d, want %d", got, want)
		}
		if want == 0 {
			err = rcv.ReleaseMessage(ctx, m)
		} else {
			err = rcv.AcceptMessage(ctx, m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rcv.Close(ctx)
	// The hub completes the message once the disposition is in: wait
	// for it (no time is asserted).
	for {
		_, err := e.hub.NextC2D(ctx, "d1", 0)
		if errors.Is(err, twinhub.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("d1's queue after the device accepted its message: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = s.NewReceiver(ctx, "/devices/d2/messages/devicebound", nil)
	wantCondition(t, "d1's token on d2's C2D", err, "amqp:unauthorized-access")
	_, err = s.NewReceiver(ctx, "/devices/d1/modules/m1/messages/devicebound", nil)
	wantCondition(t, "a module's C2D", err, "amqp:not-found")

	// A module, with its own token.
	ms := session(host+"/devices/d1/modules/m1", "", m.Authentication.SymmetricKey.PrimaryKey, time.Hour)
	if err := send(ms, "/devices/d1/modules/m1/messages/events", &goamqp.Message{Data: [][]byte{[]byte("from m1")}}); err != nil {
		t.Fatalf("telemetry of d1/m1: %v", err)
	}
	if ev := read(twinhub.EventFilter{Group: "t2", FromStart: true, DeviceID: "d1", ModuleID: "m1"}); string(ev.Body) != "from m1" || ev.Identity != twinhub.ModuleKey("d1", "m1") {
		t.Errorf("module event %+v", ev)
	}
	// A module's inputs: its receiver from its events address is taken
	// (nothing feeds it: only an IoT Edge hub routes to inputs); a
	// device's is not (its telemetry is only sent there).
	if in, err := ms.NewReceiver(ctx, "/devices/d1/modules/m1/messages/events", nil); err != nil {
		t.Errorf("d1/m1's input receiver: %v", err)
	} else {
		in.Close(ctx)
	}
	_, err = s.NewReceiver(ctx, "/devices/d1/messages/events", nil)
	wantCondition(t, "a device's receiver from its events address", err, "amqp:not-allowed")

	// Policies: device (DeviceConnect) may act as d2, service may not.
	dp, sp := e.hub.Policy("device"), e.hub.Policy("service")
	if err := send(session(host, dp.Name, dp.PrimaryKey, time.Hour), "/devices/d2/messages/events", &goamqp.Message{Data: [][]byte{[]byte("by policy")}}); err != nil {
		t.Errorf("the device policy's token for d2: %v", err)
	}
	err = send(session(host, sp.Name, sp.PrimaryKey, time.Hour), "/devices/d2/messages/events", &goamqp.Message{Data: [][]byte{[]byte("x")}})
	wantCondition(t, "the service policy's token for d2", err, "amqp:unauthorized-access")

	// A disabled device.
	off := session(host+"/devices/off", "", keys["off"], time.Hour)
	if _, err := e.hub.UpdateDevice(ctx, twinhub.Device{DeviceID: "off", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	err = send(off, "/devices/off/messages/events", &goamqp.Message{Data: [][]byte{[]byte("x")}})
	wantCondition(t, "a disabled device", err, "amqp:unauthorized-access")

	// A token that expires while the link is open: the next message is
	// rejected (the expiry is waited for, nothing is timed).
	short := session(host+"/devices/d2", "", keys["d2"], 2*time.Second)
	snd, err := short.NewSender(ctx, "/devices/d2/messages/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	err = snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("late")}})
	wantCondition(t, "a message after the token expired", err, "amqp:unauthorized-access")
}

// TestDeviceConnectionState: a device is connected while it has a link
// over AMQP, and disconnected when its last link goes; the metrics count
// the connection, its end and a refused token.
func TestDeviceConnectionState(t *testing.T) {
	m := metrics.New(nil)
	e := newEndpointWith(t, amqp.Options{Metrics: m}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "cs"})
	if err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		if err := e.hub.FlushConnectionStates(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := e.hub.GetDevice(ctx, "cs")
		if err != nil {
			t.Fatal(err)
		}
		return got.ConnectionState
	}
	s := e.session(t, nil)
	audience := e.hub.Host() + "/devices/cs"
	wrong, _ := sas.NewToken(audience, "", base64.StdEncoding.EncodeToString(make([]byte, 32)), time.Now().Add(time.Hour))
	if code, _ := putToken(t, s, "servicebus.windows.net:sastoken", audience, wrong, "cs"); code != 401 {
		t.Fatalf("put-token with a wrong key: %d", code)
	}
	tok, _ := sas.NewToken(audience, "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, "cs"); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	if got := state(); got != twinhub.StateDisconnected {
		t.Errorf("before any device link: %s", got)
	}
	snd, err := s.NewSender(ctx, "/devices/cs/messages/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := s.NewReceiver(ctx, "/devices/cs/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := state(); got != twinhub.StateConnected {
		t.Errorf("with two device links: %s", got)
	}
	snd.Close(ctx)
	if got := state(); got != twinhub.StateConnected {
		t.Errorf("with one device link left: %s", got)
	}
	rcv.Close(ctx)
	if got := state(); got != twinhub.StateDisconnected {
		t.Errorf("with no device link: %s", got)
	}
	f := metricstest.Scrape(t, m.Handler(nil))
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"twinhub_device_connects_total", map[string]string{"transport": "amqp", "result": "ok"}, 1},
		{"twinhub_device_connects_total", map[string]string{"transport": "amqp", "result": "unauthorized"}, 1},
		{"twinhub_device_disconnects_total", map[string]string{"transport": "amqp"}, 1},
	} {
		if got, ok := f.Value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}
