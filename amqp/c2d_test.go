package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
)

// c2dMessage is a cloud-to-device message as the service SDKs send it.
func c2dMessage(device, id string, body string) *goamqp.Message {
	to := "/devices/" + device + "/messages/devicebound"
	return &goamqp.Message{
		Properties: &goamqp.MessageProperties{MessageID: id, To: &to},
		Data:       [][]byte{[]byte(body)},
	}
}

// wantCondition checks the AMQP error of err: go-amqp returns a refused
// link's and a rejected delivery's error as it is or, having detached its
// sender on the rejection, in a DetachError.
func wantCondition(t *testing.T, what string, err error, cond goamqp.ErrCond) {
	t.Helper()
	var ae *goamqp.Error
	var de *goamqp.DetachError
	if errors.As(err, &de) && de.RemoteErr != nil {
		ae = de.RemoteErr
	} else if !errors.As(err, &ae) {
		ae = nil
	}
	if ae == nil || ae.Condition != cond {
		t.Errorf("%s: %v, want %s", what, err, cond)
	}
}

// TestC2DSend: with a policy's token put on $cbs, messages sent on
// /messages/devicebound land in the device's queue with their
// properties, ack mode and expiry; an unknown device is amqp:not-found, a
// full queue amqp:resource-limit-exceeded, an oversize message
// amqp:link:message-size-exceeded; without a grant of ServiceConnect the
// link is refused with amqp:unauthorized-access.
func TestC2DSend(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	host := e.hub.Host()
	token := func(policy string) string {
		p := e.hub.Policy(policy)
		tok, err := sas.NewToken(host, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// No grant, and a grant without ServiceConnect: refused.
	s := e.session(t, nil)
	_, err := s.NewSender(ctx, "/messages/devicebound", nil)
	wantCondition(t, "sender without a token", err, "amqp:unauthorized-access")
	if code, _ := putToken(t, s, "servicebus.windows.net:sastoken", host, token("registryRead"), "r1"); code != 200 {
		t.Fatalf("put-token of registryRead: %d", code)
	}
	_, err = s.NewSender(ctx, "/messages/devicebound", nil)
	wantCondition(t, "sender with registryRead's token", err, "amqp:unauthorized-access")

	// The service policy's token: messages go to the queue.
	s = e.session(t, goamqp.SASLTypeAnonymous())
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", host, token("service"), "r2"); code != 200 {
		t.Fatalf("put-token of service: %d %s", code, desc)
	}
	snd, err := s.NewSender(ctx, "amqps://"+host+"/messages/devicebound", nil)
	if err != nil {
		t.Fatalf("sender: %v", err)
	}
	m := c2dMessage("d1", "m1", "hello")
	contentType, expiry := "text/plain", time.Now().Add(10*time.Minute).Truncate(time.Millisecond)
	m.Properties.CorrelationID = "c1"
	m.Properties.ContentType = &contentType
	m.Properties.AbsoluteExpiryTime = &expiry
	m.ApplicationProperties = map[string]any{"iothub-ack": "full", "color": "red"}
	if err := snd.Send(ctx, m); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := e.hub.NextC2D(ctx, "d1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != "hello" || got.MessageID != "m1" || got.CorrelationID != "c1" || got.Ack != "full" ||
		got.ContentType != "text/plain" || len(got.Properties) != 1 || got.Properties[0] != (twinhub.Property{Key: "color", Value: "red"}) {
		t.Errorf("queued %+v", got)
	}
	if d := got.Expiry.Sub(expiry); d < -time.Second || d > time.Second {
		t.Errorf("expires at %s, want %s", got.Expiry, expiry)
	}

	// go-amqp detaches a sender whose delivery is rejected: a new sender
	// for each refusal.
	sendOnNew := func(m *goamqp.Message) error {
		snd, err := s.NewSender(ctx, "/messages/devicebound", nil)
		if err != nil {
			t.Fatalf("sender: %v", err)
		}
		return snd.Send(ctx, m)
	}
	wantCondition(t, "unknown device", sendOnNew(c2dMessage("d9", "m2", "x")), "amqp:not-found")
	wantCondition(t, "over 64 KB", sendOnNew(c2dMessage("d1", "m3", string(make([]byte, 65*1024)))), "amqp:link:message-size-exceeded")
	wantCondition(t, "a bad to", sendOnNew(&goamqp.Message{Data: [][]byte{[]byte("x")}}), "amqp:invalid-field")
	for i := range twinhub.MaxC2DPending - 1 {
		if err := snd.Send(ctx, c2dMessage("d1", fmt.Sprint("fill-", i), "x")); err != nil {
			t.Fatalf("message %d of the queue: %v", i+2, err)
		}
	}
	wantCondition(t, "a full queue", sendOnNew(c2dMessage("d1", "m4", "x")), "amqp:resource-limit-exceeded")
}
