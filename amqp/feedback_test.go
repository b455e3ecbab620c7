package amqp_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
)

// TestFeedbackReceiver: the feedback of completed C2D messages comes on
// /messages/serviceBound/feedback as a JSON array in IoT Hub's shape; a
// batch released by the client comes again, one accepted is gone; a
// receiver without ServiceConnect is refused.
func TestFeedbackReceiver(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "fb"}); err != nil {
		t.Fatal(err)
	}
	complete := func(id string) {
		t.Helper()
		if err := e.hub.SendC2D(ctx, "fb", &twinhub.C2DMessage{MessageID: id, Ack: twinhub.AckFull, Body: []byte("x")}, 0); err != nil {
			t.Fatal(err)
		}
		m, err := e.hub.ReceiveC2D(ctx, "fb")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.hub.CompleteC2D(ctx, "fb", m); err != nil {
			t.Fatal(err)
		}
	}
	host := e.hub.Host()
	session := func(policy string) *goamqp.Session {
		s := e.session(t, goamqp.SASLTypeAnonymous())
		p := e.hub.Policy(policy)
		tok, err := sas.NewToken(host, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", host, tok, "fb"); code != 200 {
			t.Fatalf("put-token: %d %s", code, desc)
		}
		return s
	}
	type record struct {
		OriginalMessageID string    `json:"originalMessageId"`
		DeviceID          string    `json:"deviceId"`
		StatusCode        string    `json:"statusCode"`
		Description       string    `json:"description"`
		EnqueuedTimeUTC   time.Time `json:"enqueuedTimeUtc"`
	}
	receive := func(r *goamqp.Receiver) (*goamqp.Message, []record) {
		t.Helper()
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("receive feedback: %v", err)
		}
		var recs []record
		if err := json.Unmarshal(m.GetData(), &recs); err != nil {
			t.Fatalf("feedback body %q: %v", m.GetData(), err)
		}
		if m.Properties == nil || m.Properties.ContentType == nil || *m.Properties.ContentType != "application/vnd.microsoft.iothub.feedback.json" {
			t.Errorf("feedback properties %#v", m.Properties)
		}
		return m, recs
	}

	complete("m1")
	s := session("service")
	r, err := s.NewReceiver(ctx, "/messages/serviceBound/feedback", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, recs := receive(r)
	if len(recs) != 1 || recs[0].OriginalMessageID != "m1" || recs[0].DeviceID != "fb" || recs[0].StatusCode != "Success" || recs[0].EnqueuedTimeUTC.IsZero() {
		t.Errorf("feedback %+v", recs)
	}
	// Released: it comes again.
	if err := r.ReleaseMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	m, recs = receive(r)
	if len(recs) != 1 || recs[0].OriginalMessageID != "m1" {
		t.Errorf("feedback after release %+v", recs)
	}
	if err := r.AcceptMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	// Accepted: gone; the next batch holds only what came since.
	complete("m2")
	m, recs = receive(r)
	if len(recs) != 1 || recs[0].OriginalMessageID != "m2" {
		t.Errorf("feedback after accept %+v", recs)
	}
	if err := r.AcceptMessage(ctx, m); err != nil {
		t.Fatal(err)
	}

	_, err = session("registryRead").NewReceiver(ctx, "/messages/serviceBound/feedback", nil)
	wantCondition(t, "feedback receiver with registryRead's token", err, "amqp:unauthorized-access")
}
