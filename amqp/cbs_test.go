package amqp_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/sas"
)

// putToken sends a put-token request over the links to and from $cbs and
// returns the status code and description of the answer, checking that
// the answer correlates with the request.
func putToken(t *testing.T, s *goamqp.Session, typ, audience, token string, messageID any) (int32, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snd, err := s.NewSender(ctx, "$cbs", nil)
	if err != nil {
		t.Fatalf("sender to $cbs: %v", err)
	}
	defer snd.Close(ctx)
	rcv, err := s.NewReceiver(ctx, "$cbs", nil)
	if err != nil {
		t.Fatalf("receiver from $cbs: %v", err)
	}
	defer rcv.Close(ctx)
	reply := "cbs"
	req := &goamqp.Message{
		Properties:            &goamqp.MessageProperties{MessageID: messageID, ReplyTo: &reply},
		ApplicationProperties: map[string]any{"operation": "put-token", "type": typ, "name": audience},
		Value:                 token,
	}
	if err := snd.Send(ctx, req); err != nil {
		t.Fatalf("sending put-token: %v", err)
	}
	res, err := rcv.Receive(ctx)
	if err != nil {
		t.Fatalf("receiving the answer: %v", err)
	}
	if res.Properties == nil || res.Properties.CorrelationID != messageID {
		t.Errorf("answer correlates with %#v, want %#v", res.Properties, messageID)
	}
	code, ok := res.ApplicationProperties["status-code"].(int32)
	if !ok {
		t.Fatalf("status-code is %#v, want an int", res.ApplicationProperties["status-code"])
	}
	desc, _ := res.ApplicationProperties["status-description"].(string)
	return code, desc
}

// TestCBS: put-token answers 200 for a policy's token and for a device's
// own token (its audience URL-encoded, as the Node SDK sends it), and 401
// for a bad signature, an expired token, another device's token and an
// Azure AD token; the message-id comes back as the correlation-id, in
// its type.
func TestCBS(t *testing.T) {
	e := newEndpoint(t, amqp.Options{})
	ctx := context.Background()
	host := e.hub.Host()
	owner := e.hub.Policy("iothubowner")
	d1, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	token := func(resource, keyName, key string, ttl time.Duration) string {
		tok, err := sas.NewToken(resource, keyName, key, time.Now().Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	s := e.session(t, goamqp.SASLTypeAnonymous())
	const sasType = "servicebus.windows.net:sastoken"
	for _, tc := range []struct {
		name, typ, audience, token string
		id                         any
		want                       int32
	}{
		{"policy token", sasType, host, token(host, owner.Name, owner.PrimaryKey, time.Hour), "req-1", 200},
		{"policy token, ulong id", "azure-devices.net:sastoken", "https://" + host, token(host, owner.Name, owner.SecondaryKey, time.Hour), uint64(7), 200},
		{"device token", sasType, url.QueryEscape(host + "/devices/d1"), token(host+"/devices/d1", "", d1.Authentication.SymmetricKey.PrimaryKey, time.Hour), "req-3", 200},
		{"wrong key", sasType, host, token(host, owner.Name, "bm90IHRoZSBrZXk=", time.Hour), "req-4", 401},
		{"expired", sasType, host, token(host, owner.Name, owner.PrimaryKey, -time.Minute), "req-5", 401},
		{"another device's audience", sasType, host + "/devices/d2", token(host+"/devices/d1", "", d1.Authentication.SymmetricKey.PrimaryKey, time.Hour), "req-6", 401},
		{"not a token", sasType, host, "hello", "req-7", 401},
		{"Azure AD token", "jwt", host, "eyJhbGciOi", "req-8", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, desc := putToken(t, s, tc.typ, tc.audience, tc.token, tc.id); got != tc.want {
				t.Errorf("status %d (%s), want %d", got, desc, tc.want)
			}
		})
	}
}

// TestCBSMany: more requests than one grant of credit, and a request
// larger than a frame (split by go-amqp over several transfers), all get
// their answers in order.
func TestCBSMany(t *testing.T) {
	e := newEndpoint(t, amqp.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := e.session(t, nil)
	snd, err := s.NewSender(ctx, "$cbs", nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := s.NewReceiver(ctx, "$cbs", &goamqp.ReceiverOptions{Credit: 10})
	if err != nil {
		t.Fatal(err)
	}
	owner := e.hub.Policy("iothubowner")
	good, err := sas.NewToken(e.hub.Host(), owner.Name, owner.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	big := string(make([]byte, 200_000))
	const n = 250
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			tok := good
			if i == 7 {
				tok = big
			}
			m := &goamqp.Message{
				Properties:            &goamqp.MessageProperties{MessageID: uint64(i)},
				ApplicationProperties: map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": e.hub.Host()},
				Value:                 tok,
			}
			if err := snd.Send(ctx, m); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	for i := range n {
		res, err := rcv.Receive(ctx)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		rcv.AcceptMessage(ctx, res)
		want := int32(200)
		if i == 7 {
			want = 401
		}
		if res.Properties.CorrelationID != uint64(i) || res.ApplicationProperties["status-code"] != want {
			t.Fatalf("answer %d: correlation %v, status %v; want %d", i, res.Properties.CorrelationID, res.ApplicationProperties["status-code"], want)
		}
	}
	<-sent // the last send returns once its delivery is settled
}
