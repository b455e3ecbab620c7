package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/sas"
)

// messagingAPI is a test API whose hub has telemetry, C2D queues and feedback.
type messagingAPI struct {
	*testAPI
	hub     *hub.Hub
	service string
}

func newMessagingAPI(t *testing.T) *messagingAPI {
	t.Helper()
	h := hubtest.New(t, hubtest.WithMessaging())
	return &messagingAPI{
		testAPI: &testAPI{
			api:   New(h.Hub, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}),
			owner: h.ServiceToken("iothubowner"),
			read:  h.ServiceToken("registryRead"),
		},
		hub:     h.Hub,
		service: h.ServiceToken("service"),
	}
}

func TestInvokeMethodREST(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	path := "/twins/d1/methods" + v
	checkError(t, ta.do("POST", path, ta.service, `{"methodName":"m"}`), 404, "DeviceNotOnline")
	checkError(t, ta.do("POST", "/twins/nope/methods"+v, ta.service, `{"methodName":"m"}`), 404, "DeviceNotFound")
	checkError(t, ta.do("POST", path, ta.service, `{"methodName":"m","responseTimeoutInSeconds":1}`), 400, "ArgumentInvalid")
	checkError(t, ta.do("POST", path, ta.service, `{"methodName":`), 400, "ArgumentInvalid")
	checkError(t, ta.do("POST", path, ta.read, `{"methodName":"m"}`), 401, "IotHubUnauthorizedAccess")
	big := `{"methodName":"m","payload":"` + strings.Repeat("x", twinhub.MaxMethodPayload) + `"}`
	checkError(t, ta.do("POST", path, ta.service, big), 413, "MessageTooLarge")

	// A device connected and serving methods (here without MQTT).
	k := twinhub.DeviceKey("d1")
	if err := ta.hub.SetConnectionState(ctx, k, true); err != nil {
		t.Fatal(err)
	}
	cancel := ta.hub.ServeMethods(k, "conn1", func(c *hub.MethodCall) {
		go c.Respond(200, append([]byte(`{"echo":`), append(c.Payload, '}')...))
	})
	defer cancel()
	rec := ta.do("POST", path, ta.service, `{"methodName":"echo","payload":{"x":[1,2]},"responseTimeoutInSeconds":5,"connectTimeoutInSeconds":0}`)
	if rec.Code != 200 || rec.Body.String() != `{"status":200,"payload":{"echo":{"x":[1,2]}}}` {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestC2DREST(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	rec := ta.do("POST", "/twinhub/c2d/d1"+v+"&ttl=60", ta.service, "hello",
		"iothub-messageid", "mid1", "iothub-correlationid", "cid1", "iothub-ack", "full",
		"iothub-app-Color", "red", "Content-Type", "text/plain")
	after := time.Now()
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var sent struct {
		MessageID     string `json:"messageId"`
		ExpiryTimeUTC string `json:"expiryTimeUtc"`
	}
	json.Unmarshal(rec.Body.Bytes(), &sent)
	if sent.MessageID != "mid1" || sent.ExpiryTimeUTC == "" {
		t.Errorf("answer %s", rec.Body)
	}
	m, err := ta.hub.NextC2D(ctx, "d1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "hello" || m.CorrelationID != "cid1" || m.Ack != "full" || m.ContentType != "text/plain" ||
		len(m.Properties) != 1 || m.Properties[0] != (twinhub.Property{Key: "color", Value: "red"}) {
		t.Errorf("queued %+v", m)
	}
	// 60s after the hub took it (instants are kept to 100ns).
	if exp := m.Expiry.Time; exp.Before(before.Add(60*time.Second).Truncate(100)) || exp.After(after.Add(60*time.Second)) {
		t.Errorf("expires at %s, want 60s after it was sent (%s to %s)", exp, before, after)
	}
	checkError(t, ta.do("POST", "/twinhub/c2d/nope"+v, ta.service, "x"), 404, "DeviceNotFound")
	checkError(t, ta.do("POST", "/twinhub/c2d/d1"+v+"&ttl=x", ta.service, "x"), 400, "ArgumentInvalid")
	checkError(t, ta.do("POST", "/twinhub/c2d/d1"+v, ta.service, strings.Repeat("x", twinhub.MaxC2DSize+1)), 413, "MessageTooLarge")
	for range twinhub.MaxC2DPending - 1 {
		if rec := ta.do("POST", "/twinhub/c2d/d1"+v, ta.service, "x"); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	checkError(t, ta.do("POST", "/twinhub/c2d/d1"+v, ta.service, "51st"), 403, "DeviceMaximumQueueDepthExceeded")
	rec = ta.do("DELETE", "/devices/d1/commands"+v, ta.service, "")
	if rec.Code != 200 || rec.Body.String() != `{"totalMessagesPurged":50,"deviceId":"d1"}` {
		t.Fatalf("purge: %d %s", rec.Code, rec.Body)
	}
}

func TestStreamEvents(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	for i, body := range []string{`{"n":1}`, "\xff"} {
		e := &twinhub.Event{Identity: twinhub.DeviceKey("d1"), AuthMethod: "sas", MessageID: "m" + string(rune('0'+i)),
			Properties: []twinhub.Property{{Key: "k", Value: "v"}}, Body: []byte(body)}
		if err := ta.hub.SendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(ta.api)
	defer srv.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/twinhub/events"+v+"&consumerGroup=cli&from=start&deviceId=d1", nil)
	req.Header.Set("Authorization", ta.service)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var lines []EventLine
	for len(lines) < 2 {
		var l EventLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if l := lines[0]; l.DeviceID != "d1" || l.Body != `{"n":1}` || l.Properties["k"] != "v" || l.System["message-id"] != "m0" ||
		l.System["iothub-connection-auth-method"] != "sas" || l.Sequence == 0 {
		t.Errorf("line 0 %+v", l)
	}
	if l := lines[1]; l.Body != "" || string(l.BodyBase64) != "\xff" {
		t.Errorf("line 1 %+v", l)
	}
	checkError(t, ta.do("GET", "/twinhub/events"+v+"&from=yesterday", ta.service, ""), 400, "ArgumentInvalid")
	checkError(t, ta.do("GET", "/twinhub/events"+v, ta.read, ""), 401, "IotHubUnauthorizedAccess")
}

func TestDeviceHTTPTelemetry(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	d, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	tok, err := sas.NewToken("hub.example/devices/d1", "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rec := ta.do("POST", "/devices/d1/messages/events"+v, tok, `{"t":1}`,
		"iothub-messageid", "m1", "iothub-contenttype", "application/json", "IoTHub-app-Site", "north")
	if rec.Code != 204 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	checkError(t, ta.do("POST", "/devices/d2/messages/events"+v, tok, "x"), 401, "IotHubUnauthorizedAccess")
	checkError(t, ta.do("POST", "/devices/d1/messages/events"+v, "", "x"), 401, "IotHubUnauthorizedAccess")
	checkError(t, ta.do("POST", "/devices/d1/messages/events"+v, tok, strings.Repeat("x", twinhub.MaxTelemetrySize+1)), 413, "MessageTooLarge")

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got *twinhub.Event
	ta.hub.ReadEvents(rctx, twinhub.EventFilter{Group: "t", FromStart: true}, func(e *twinhub.Event) error {
		got = e
		cancel()
		return nil
	})
	if got == nil || got.Identity.DeviceID != "d1" || got.MessageID != "m1" || got.ContentType != "application/json" ||
		string(got.Body) != `{"t":1}` || len(got.Properties) != 1 || got.Properties[0] != (twinhub.Property{Key: "site", Value: "north"}) {
		t.Errorf("event %+v", got)
	}
}

func TestFeedbackREST(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	send := func(id, ack string, ttl time.Duration) {
		t.Helper()
		if err := ta.hub.SendC2D(ctx, "d1", &twinhub.C2DMessage{MessageID: id, Ack: ack}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	send("expired-negative", twinhub.AckNegative, time.Millisecond)
	send("expired-positive", twinhub.AckPositive, time.Millisecond)
	send("done-full", twinhub.AckFull, 0)
	send("done-none", "", 0)
	time.Sleep(5 * time.Millisecond)
	for range 2 {
		m, err := ta.hub.NextC2D(ctx, "d1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := ta.hub.CompleteC2D(ctx, "d1", m); err != nil {
			t.Fatal(err)
		}
	}
	path := "/messages/serviceBound/feedback" + v
	rec := ta.do("GET", path, ta.service, "")
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var recs []twinhub.FeedbackRecord
	json.Unmarshal(rec.Body.Bytes(), &recs)
	if len(recs) != 2 || recs[0].OriginalMessageID != "expired-negative" || recs[0].StatusCode != "Expired" ||
		recs[1].OriginalMessageID != "done-full" || recs[1].StatusCode != "Success" || recs[1].DeviceID != "d1" || recs[1].DeviceGenerationID == "" {
		t.Fatalf("feedback %s", rec.Body)
	}
	lock := strings.Trim(rec.Header().Get("ETag"), `"`)
	if rec := ta.do("POST", "/messages/serviceBound/feedback/"+lock+"/abandon"+v, ta.service, ""); rec.Code != 204 {
		t.Fatalf("abandon: %d %s", rec.Code, rec.Body)
	}
	// Abandoned records come back: each is redelivered once the server
	// has its nak (a moment later), so they may come in more than one
	// batch. Each batch is completed; then there are none.
	back := map[string]int{}
	for deadline := time.Now().Add(5 * time.Second); len(back) < 2; time.Sleep(20 * time.Millisecond) {
		rec = ta.do("GET", path, ta.service, "")
		if time.Now().After(deadline) {
			t.Fatalf("after abandon, within 5 s: %v came back; the last answer %d %s", back, rec.Code, rec.Body)
		}
		if rec.Code == 204 {
			continue
		}
		lock = strings.Trim(rec.Header().Get("ETag"), `"`)
		var batch []twinhub.FeedbackRecord
		if err := json.Unmarshal(rec.Body.Bytes(), &batch); rec.Code != 200 || lock == "" || err != nil || len(batch) == 0 {
			t.Fatalf("after abandon: %d %s", rec.Code, rec.Body)
		}
		for _, r := range batch {
			back[r.OriginalMessageID]++
		}
		if rec := ta.do("DELETE", "/messages/serviceBound/feedback/"+lock+v, ta.service, ""); rec.Code != 204 {
			t.Fatalf("complete: %d %s", rec.Code, rec.Body)
		}
	}
	if back["expired-negative"] != 1 || back["done-full"] != 1 || len(back) != 2 {
		t.Fatalf("after abandon, records came back as %v, want each of the batch once", back)
	}
	if rec := ta.do("GET", path, ta.service, ""); rec.Code != 204 {
		t.Fatalf("after complete: %d %s", rec.Code, rec.Body)
	}
	checkError(t, ta.do("DELETE", "/messages/serviceBound/feedback/"+lock+v, ta.service, ""), 412, "DeviceMessageLockLost")
}

func TestDeviceHTTPC2D(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	d, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sas.NewToken("hub.example/devices/d1", "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	path := "/devices/d1/messages/deviceBound"
	if rec := ta.do("GET", path+v, tok, ""); rec.Code != 204 {
		t.Fatalf("empty queue: %d %s", rec.Code, rec.Body)
	}
	abandoned := false
	for _, id := range []string{"a", "b", "c"} {
		m := &twinhub.C2DMessage{MessageID: id, Ack: twinhub.AckFull, ContentType: "text/plain", Body: []byte("body " + id),
			Properties: []twinhub.Property{{Key: "k", Value: id}}}
		if err := ta.hub.SendC2D(ctx, "d1", m, 0); err != nil {
			t.Fatal(err)
		}
	}
	receive := func() (string, string) {
		t.Helper()
		rec := ta.do("GET", path+v, tok, "")
		if rec.Code != 200 {
			t.Fatalf("receive: %d %s", rec.Code, rec.Body)
		}
		if rec.Header().Get("iothub-app-k") != rec.Header().Get("iothub-messageid") || rec.Header().Get("Content-Type") != "text/plain" ||
			rec.Header().Get("iothub-to") != "/devices/d1/messages/deviceBound" {
			t.Errorf("headers %v", rec.Header())
		}
		id := rec.Header().Get("iothub-messageid")
		// b is delivered twice (abandoned once), the others once.
		if want := map[bool]string{true: "2", false: "1"}[id == "b" && abandoned]; rec.Header().Get("iothub-deliverycount") != want {
			t.Errorf("%s: iothub-deliverycount %q, want %s", id, rec.Header().Get("iothub-deliverycount"), want)
		}
		return id, strings.Trim(rec.Header().Get("ETag"), `"`)
	}
	// Received messages are locked: the next receive gets the next one.
	id1, lock1 := receive()
	id2, lock2 := receive()
	if id1 != "a" || id2 != "b" {
		t.Fatalf("received %s, %s", id1, id2)
	}
	if rec := ta.do("DELETE", path+"/"+lock1+v, tok, ""); rec.Code != 204 {
		t.Fatalf("complete: %d %s", rec.Code, rec.Body)
	}
	checkError(t, ta.do("DELETE", path+"/"+lock1+v, tok, ""), 412, "DeviceMessageLockLost")
	if rec := ta.do("POST", path+"/"+lock2+"/abandon"+v, tok, ""); rec.Code != 204 {
		t.Fatalf("abandon: %d %s", rec.Code, rec.Body)
	}
	abandoned = true
	// Abandoned: b comes again.
	if id, lock := receive(); id != "b" {
		t.Fatalf("after abandon got %s", id)
	} else if rec := ta.do("DELETE", path+"/"+lock+v+"&reject", tok, ""); rec.Code != 204 {
		t.Fatalf("reject: %d %s", rec.Code, rec.Body)
	}
	// Another device's token may not read d1's queue.
	if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	checkError(t, ta.do("GET", "/devices/d2/messages/deviceBound"+v, tok, ""), 401, "IotHubUnauthorizedAccess")

	// Feedback: a completed (Success), b rejected (Rejected).
	var recs []twinhub.FeedbackRecord
	for deadline := time.Now().Add(5 * time.Second); len(recs) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		rec := ta.do("GET", "/messages/serviceBound/feedback"+v, ta.service, "")
		if rec.Code == 200 {
			var more []twinhub.FeedbackRecord
			json.Unmarshal(rec.Body.Bytes(), &more)
			recs = append(recs, more...)
			ta.do("DELETE", "/messages/serviceBound/feedback/"+strings.Trim(rec.Header().Get("ETag"), `"`)+v, ta.service, "")
		}
	}
	if len(recs) != 2 || recs[0].OriginalMessageID != "a" || recs[0].StatusCode != "Success" || recs[1].OriginalMessageID != "b" || recs[1].StatusCode != "Rejected" {
		t.Errorf("feedback %+v", recs)
	}
}

// TestC2DDeliveryCount: a message is delivered at most MaxC2DDeliveries
// times; abandoned that often, it is dead-lettered with
// DeliveryCountExceeded feedback, and the queue goes on with the next.
func TestC2DDeliveryCount(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	d, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := sas.NewToken("hub.example/devices/d1", "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	for _, id := range []string{"again", "next"} {
		if err := ta.hub.SendC2D(ctx, "d1", &twinhub.C2DMessage{MessageID: id, Ack: twinhub.AckNegative}, 0); err != nil {
			t.Fatal(err)
		}
	}
	path := "/devices/d1/messages/deviceBound"
	for n := 1; n <= twinhub.MaxC2DDeliveries; n++ {
		rec := ta.do("GET", path+v, tok, "")
		if rec.Code != 200 || rec.Header().Get("iothub-messageid") != "again" || rec.Header().Get("iothub-deliverycount") != strconv.Itoa(n) {
			t.Fatalf("delivery %d: %d %v", n, rec.Code, rec.Header())
		}
		lock := strings.Trim(rec.Header().Get("ETag"), `"`)
		if rec := ta.do("POST", path+"/"+lock+"/abandon"+v, tok, ""); rec.Code != 204 {
			t.Fatalf("abandon %d: %d %s", n, rec.Code, rec.Body)
		}
	}
	rec := ta.do("GET", path+v, tok, "")
	if rec.Code != 200 || rec.Header().Get("iothub-messageid") != "next" || rec.Header().Get("iothub-deliverycount") != "1" {
		t.Fatalf("after the 10th abandon: %d %v, want the next message", rec.Code, rec.Header())
	}
	rec = ta.do("GET", "/messages/serviceBound/feedback"+v, ta.service, "")
	var recs []twinhub.FeedbackRecord
	json.Unmarshal(rec.Body.Bytes(), &recs)
	if len(recs) != 1 || recs[0].OriginalMessageID != "again" || recs[0].StatusCode != twinhub.FeedbackDeliveryCountExceeded {
		t.Errorf("feedback %d %s", rec.Code, rec.Body)
	}
}

// TestC2DSweep: messages of a device that never connects expire with
// feedback and free their queue slots.
func TestC2DSweep(t *testing.T) {
	ta := newMessagingAPI(t)
	ctx := context.Background()
	for _, id := range []string{"d1", "d2"} {
		if _, err := ta.hub.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ta.hub.SendC2D(ctx, "d1", &twinhub.C2DMessage{MessageID: "short", Ack: twinhub.AckFull}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := ta.hub.SendC2D(ctx, "d2", &twinhub.C2DMessage{MessageID: "long"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := ta.hub.SweepC2D(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.hub.NextC2D(ctx, "d2", 0); err != nil {
		t.Errorf("the live message went: %v", err)
	}
	rec := ta.do("DELETE", "/devices/d1/commands"+v, ta.service, "")
	if rec.Body.String() != `{"totalMessagesPurged":0,"deviceId":"d1"}` {
		t.Errorf("d1 still has messages: %s", rec.Body)
	}
	rec = ta.do("GET", "/messages/serviceBound/feedback"+v, ta.service, "")
	var recs []twinhub.FeedbackRecord
	json.Unmarshal(rec.Body.Bytes(), &recs)
	if len(recs) != 1 || recs[0].OriginalMessageID != "short" || recs[0].StatusCode != "Expired" {
		t.Errorf("feedback %d %s", rec.Code, rec.Body)
	}
}
