package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
)

// TestMultiplexedDevices: several devices over one AMQP connection, as the
// C and C# SDKs multiplex them: each puts its own token on the
// connection's one $cbs link and works on a session of its own. Each gets
// only its own C2D messages; none may use another's address; a token of
// one that expires refuses that device's next message only; a device
// disabled loses its links, and a device's session that ends disconnects
// it, without touching the others; a device that connects again elsewhere
// takes its links away from the shared connection.
func TestMultiplexedDevices(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := e.hub.Host()
	ids := []string{"mx1", "mx2", "mx3", "short"}
	keys := map[string]string{}
	for _, id := range append(ids, "other") {
		d, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = d.Authentication.SymmetricKey.PrimaryKey
	}
	conn, err := e.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cbs, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		ttl := time.Hour
		if id == "short" {
			ttl = 2 * time.Second
		}
		audience := host + "/devices/" + id
		tok, err := sas.NewToken(audience, "", keys[id], time.Now().Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		if code, desc := putToken(t, cbs, "servicebus.windows.net:sastoken", audience, tok, id); code != 200 {
			t.Fatalf("put-token of %s: %d %s", id, code, desc)
		}
	}

	type device struct {
		s   *goamqp.Session
		snd *goamqp.Sender
		rcv *goamqp.Receiver
	}
	devs := map[string]*device{}
	for _, id := range ids {
		s, err := conn.NewSession(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		snd, err := s.NewSender(ctx, "/devices/"+id+"/messages/events", nil)
		if err != nil {
			t.Fatalf("%s's telemetry link: %v", id, err)
		}
		rcv, err := s.NewReceiver(ctx, "/devices/"+id+"/messages/devicebound", nil)
		if err != nil {
			t.Fatalf("%s's C2D link: %v", id, err)
		}
		devs[id] = &device{s: s, snd: snd, rcv: rcv}
	}
	for _, id := range ids {
		if err := e.hub.FlushConnectionStates(ctx); err != nil {
			t.Fatal(err)
		}
		if d, err := e.hub.GetDevice(ctx, id); err != nil || d.ConnectionState != twinhub.StateConnected {
			t.Errorf("%s over the shared connection: %v %v", id, d, err)
		}
	}

	// Each device's telemetry is its own, and so are its C2D messages.
	for _, id := range ids[:3] {
		if err := devs[id].snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("from " + id)}}); err != nil {
			t.Fatalf("telemetry of %s: %v", id, err)
		}
		if err := e.hub.SendC2D(ctx, id, &twinhub.C2DMessage{MessageID: "to-" + id, Body: []byte("to " + id)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids[:3] {
		rctx, stop := context.WithTimeout(ctx, 10*time.Second)
		var got *twinhub.Event
		e.hub.ReadEvents(rctx, twinhub.EventFilter{Group: "mx-" + id, FromStart: true, DeviceID: id}, func(ev *twinhub.Event) error {
			got = ev
			stop()
			return nil
		})
		stop()
		if got == nil || string(got.Body) != "from "+id || got.Identity != twinhub.DeviceKey(id) {
			t.Errorf("%s's event: %+v", id, got)
		}
		m, err := devs[id].rcv.Receive(ctx)
		if err != nil || string(m.GetData()) != "to "+id {
			t.Fatalf("%s's C2D: %v %v", id, m, err)
		}
		if err := devs[id].rcv.AcceptMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// A device without a grant on this connection: refused, on any
	// session of it; the others' links go on.
	_, err = devs["mx1"].s.NewSender(ctx, "/devices/other/messages/events", nil)
	wantCondition(t, "another device's address on mx1's session", err, "amqp:unauthorized-access")
	_, err = devs["mx2"].s.NewReceiver(ctx, "/devices/other/messages/devicebound", nil)
	wantCondition(t, "another device's C2D on mx2's session", err, "amqp:unauthorized-access")

	// A grant renewed in place keeps its device's links working.
	audience := host + "/devices/mx1"
	tok, _ := sas.NewToken(audience, "", keys["mx1"], time.Now().Add(2*time.Hour))
	if code, desc := putToken(t, cbs, "servicebus.windows.net:sastoken", audience, tok, "renew"); code != 200 {
		t.Fatalf("renewing mx1: %d %s", code, desc)
	}
	if err := devs["mx1"].snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("after renewal")}}); err != nil {
		t.Errorf("mx1 after its renewal: %v", err)
	}

	// One device's token expires: its next message is refused, the
	// others' are not (the expiry is waited for, nothing is timed).
	time.Sleep(3 * time.Second)
	err = devs["short"].snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("late")}})
	wantCondition(t, "short after its token expired", err, "amqp:unauthorized-access")
	for _, id := range ids[:3] {
		if err := devs[id].snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte(fmt.Sprint("still ", id))}}); err != nil {
			t.Errorf("%s after another device's token expired: %v", id, err)
		}
	}

	// mx2 is disabled: its links are detached, the others' go on.
	if _, err := e.hub.UpdateDevice(ctx, twinhub.Device{DeviceID: "mx2", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	_, err = devs["mx2"].rcv.Receive(ctx)
	wantCondition(t, "mx2's C2D link once mx2 is disabled", err, "amqp:unauthorized-access")
	_, err = devs["mx2"].s.NewSender(ctx, "/devices/mx2/messages/events", nil)
	wantCondition(t, "a new link of mx2 once disabled", err, "amqp:unauthorized-access")
	if err := devs["mx1"].snd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("after mx2 went")}}); err != nil {
		t.Errorf("mx1 after mx2 was disabled: %v", err)
	}

	// A device's session ends: that device only is disconnected.
	if err := devs["mx3"].s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.FlushConnectionStates(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"mx1": twinhub.StateConnected, "mx2": twinhub.StateDisconnected, "mx3": twinhub.StateDisconnected} {
		if d, err := e.hub.GetDevice(ctx, id); err != nil || d.ConnectionState != want {
			t.Errorf("%s after mx3's session ended: %v %v, want %s", id, d.ConnectionState, err, want)
		}
	}

	// mx1 connects again, on a connection of its own: its links on the
	// shared connection end with amqp:link:stolen, and it stays connected.
	again := e.session(t, nil)
	audience = host + "/devices/mx1"
	tok, _ = sas.NewToken(audience, "", keys["mx1"], time.Now().Add(time.Hour))
	if code, desc := putToken(t, again, "servicebus.windows.net:sastoken", audience, tok, "again"); code != 200 {
		t.Fatalf("mx1's token on its new connection: %d %s", code, desc)
	}
	if _, err := again.NewSender(ctx, "/devices/mx1/messages/events", nil); err != nil {
		t.Fatal(err)
	}
	_, err = devs["mx1"].rcv.Receive(ctx)
	wantCondition(t, "mx1's C2D link on the shared connection once it connected again", err, "amqp:link:stolen")
	if err := e.hub.FlushConnectionStates(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := e.hub.GetDevice(ctx, "mx1"); err != nil || d.ConnectionState != twinhub.StateConnected {
		t.Errorf("mx1 after it connected again: %v %v", d, err)
	}
}
