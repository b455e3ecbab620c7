package amqp_test

import (
	"context"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
	"github.com/twinhub/twinhub/throttle"
)

// deviceSession connects device id (created with its key) and puts its
// token on $cbs.
func (e *endpoint) deviceSession(t *testing.T, id string) *goamqp.Session {
	t.Helper()
	ctx := context.Background()
	d, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	s := e.session(t, nil)
	audience := e.hub.Host() + "/devices/" + id
	tok, _ := sas.NewToken(audience, "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, id); code != 200 {
		t.Fatalf("put-token of %s: %d %s", id, code, desc)
	}
	return s
}

// TestThrottles: the hub's rates hold over AMQP as over MQTT and REST. The
// rates are so low that nothing refills during the test: exactly the
// burst passes. A device's first link is its connection (refused with
// com.microsoft:device-container-throttled past the rate of new
// connections); a reported patch over the rate of twin updates is
// answered 429; telemetry over its rate waits for its turn and is stored,
// in order; one whose turn is beyond the time a message may wait is
// refused with com.microsoft:device-container-throttled.
func TestThrottles(t *testing.T) {
	slow := throttle.Limit{PerSecond: 0.001, Burst: 1}
	e := newEndpointWith(t, amqp.Options{Throttle: throttle.New(throttle.Limits{
		Connects: throttle.Limit{PerSecond: 0.001, Burst: 2}, TwinUpdates: slow, TwinReads: slow,
		Telemetry: throttle.Limit{PerSecond: 2, Burst: 1},
	})}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Connections: t1 and t2 pass, t3 does not.
	s1 := e.deviceSession(t, "t1")
	props := map[string]any{"com.microsoft:channel-correlation-id": "twin:t1"}
	twinSnd, err := s1.NewSender(ctx, "/devices/t1/twin", &goamqp.SenderOptions{Properties: props})
	if err != nil {
		t.Fatalf("t1's first link: %v", err)
	}
	twinRcv, err := s1.NewReceiver(ctx, "/devices/t1/twin", &goamqp.ReceiverOptions{Properties: props, Credit: 10})
	if err != nil {
		t.Fatalf("t1's second link (not a new connection): %v", err)
	}
	s2 := e.deviceSession(t, "t2")
	events, err := s2.NewSender(ctx, "/devices/t2/messages/events", nil)
	if err != nil {
		t.Fatalf("t2's first link: %v", err)
	}
	s3 := e.deviceSession(t, "t3")
	_, err = s3.NewSender(ctx, "/devices/t3/messages/events", nil)
	wantCondition(t, "t3's first link past the rate of new connections", err, "com.microsoft:device-container-throttled")

	// Twin updates and reads: the first of each passes, the second is 429.
	request := func(n int, op, resource string) int32 {
		t.Helper()
		cid := "p" + string(rune('0'+n))
		m := &goamqp.Message{
			Annotations: goamqp.Annotations{"operation": op, "resource": resource},
			Properties:  &goamqp.MessageProperties{CorrelationID: cid},
			Data:        [][]byte{[]byte(`{"n":1}`)},
		}
		if err := twinSnd.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		res, err := twinRcv.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		twinRcv.AcceptMessage(ctx, res)
		status, _ := res.Annotations["status"].(int32)
		return status
	}
	if got := request(1, "PATCH", "/properties/reported"); got != 204 {
		t.Errorf("the first patch: %d", got)
	}
	if got := request(2, "PATCH", "/properties/reported"); got != 429 {
		t.Errorf("a patch past the rate of twin updates: %d, want 429", got)
	}
	if got := request(3, "GET", ""); got != 200 {
		t.Errorf("the first twin read: %d", got)
	}
	if got := request(4, "GET", ""); got != 429 {
		t.Errorf("a read past the rate of twin reads: %d, want 429", got)
	}

	// Telemetry at 2 a second, burst 1: three messages all stored, in
	// order (the later ones waited their turn).
	for i := range 3 {
		if err := events.Send(ctx, &goamqp.Message{Data: [][]byte{{byte('a' + i)}}}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	var got []string
	rctx, stop := context.WithTimeout(ctx, 10*time.Second)
	e.hub.ReadEvents(rctx, twinhub.EventFilter{Group: "th", FromStart: true, DeviceID: "t2"}, func(ev *twinhub.Event) error {
		if got = append(got, string(ev.Body)); len(got) == 3 {
			stop()
		}
		return nil
	})
	stop()
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("stored %v, want [a b c]", got)
	}

	// A turn further than a message may wait: refused at once.
	far := newEndpointWith(t, amqp.Options{Throttle: throttle.New(throttle.Limits{Telemetry: slow})}, hubtest.WithMessaging())
	fs := far.deviceSession(t, "f1")
	fsnd, err := fs.NewSender(ctx, "/devices/f1/messages/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsnd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("first")}}); err != nil {
		t.Fatalf("the first message: %v", err)
	}
	err = fsnd.Send(ctx, &goamqp.Message{Data: [][]byte{[]byte("second")}})
	wantCondition(t, "a message whose turn is 1,000 s away", err, "com.microsoft:device-container-throttled")
}
