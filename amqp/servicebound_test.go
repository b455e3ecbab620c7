package amqp_test

import (
	"context"
	"encoding/json"
	"errors"
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

// TestFileNotificationReceiver: a notification of an upload comes on
// /messages/serviceBound/filenotifications as a JSON object in IoT Hub's
// shape, one a message; released, it comes again; accepted, it is gone;
// REST sees none left.
func TestFileNotificationReceiver(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	add := func(name string) {
		t.Helper()
		err := e.hub.AddFileNotification(ctx, twinhub.FileNotification{DeviceID: "dev", BlobName: "dev/" + name,
			BlobURI: "https://store.example/files/dev/" + name, BlobSizeInBytes: 42, LastUpdatedTime: twinhub.Now()})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("a.txt")
	add("b.txt")
	s := e.session(t, goamqp.SASLTypeAnonymous())
	p := e.hub.Policy("service")
	tok, err := sas.NewToken(e.hub.Host(), p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", e.hub.Host(), tok, "fn"); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	r, err := s.NewReceiver(ctx, "/messages/serviceBound/filenotifications", nil)
	if err != nil {
		t.Fatal(err)
	}
	type notification struct {
		DeviceID        string    `json:"deviceId"`
		BlobURI         string    `json:"blobUri"`
		BlobName        string    `json:"blobName"`
		BlobSizeInBytes int64     `json:"blobSizeInBytes"`
		LastUpdatedTime time.Time `json:"lastUpdatedTime"`
		EnqueuedTimeUTC time.Time `json:"enqueuedTimeUtc"`
	}
	receive := func() (*goamqp.Message, notification) {
		t.Helper()
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		var n notification
		if err := json.Unmarshal(m.GetData(), &n); err != nil {
			t.Fatalf("body %q: %v", m.GetData(), err)
		}
		return m, n
	}
	m, n := receive()
	if n.DeviceID != "dev" || n.BlobName != "dev/a.txt" || n.BlobURI == "" || n.BlobSizeInBytes != 42 || n.EnqueuedTimeUTC.IsZero() || n.LastUpdatedTime.IsZero() {
		t.Errorf("notification %+v", n)
	}
	// Released, a comes again (b may come first: the hub sends what is
	// there as the client gives credit).
	if err := r.ReleaseMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range 2 {
		m, n = receive()
		got[n.BlobName]++
		if err := r.AcceptMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got["dev/a.txt"] != 1 || got["dev/b.txt"] != 1 {
		t.Errorf("after the release: %v, want a and b once each", got)
	}
	// Both completed: a REST receive finds nothing.
	if _, _, err := e.hub.ReceiveFileNotification(ctx); !errors.Is(err, twinhub.ErrNotFound) {
		t.Errorf("REST receive after both were completed: %v", err)
	}
}
