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

// TestDeviceTwin: over a device's twin channel, GET answers the twin's
// desired and reported properties, a reported PATCH answers 204 with the
// new version, PUT on the notification resource brings the desired
// changes made after it in version order, DELETE stops them, and a
// request IoT Hub does not serve is a 400.
func TestDeviceTwin(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := e.hub.CreateDevice(ctx, twinhub.Device{DeviceID: "tw"})
	if err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("tw")
	if _, err := e.hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"power": float64(1)}}, "*"); err != nil {
		t.Fatal(err)
	}
	s := e.session(t, nil)
	audience := e.hub.Host() + "/devices/tw"
	tok, _ := sas.NewToken(audience, "", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour))
	if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, "tw"); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	props := map[string]any{"com.microsoft:channel-correlation-id": "twin:abc", "com.microsoft:api-version": "2021-04-12"}
	snd, err := s.NewSender(ctx, "/devices/tw/twin", &goamqp.SenderOptions{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := s.NewReceiver(ctx, "/devices/tw/twin", &goamqp.ReceiverOptions{Properties: props, Credit: 50})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	request := func(op, resource string, body []byte) (int32, *goamqp.Message) {
		t.Helper()
		n++
		cid := "req-" + string(rune('a'+n))
		ann := goamqp.Annotations{"operation": op}
		if resource != "" {
			ann["resource"] = resource
		}
		if err := snd.Send(ctx, &goamqp.Message{Annotations: ann, Properties: &goamqp.MessageProperties{CorrelationID: cid}, Data: [][]byte{body}}); err != nil {
			t.Fatalf("%s %s: %v", op, resource, err)
		}
		m, err := rcv.Receive(ctx)
		if err != nil {
			t.Fatalf("answer to %s %s: %v", op, resource, err)
		}
		rcv.AcceptMessage(ctx, m)
		if m.Properties == nil || m.Properties.CorrelationID != cid {
			t.Fatalf("%s %s: the next message is %s with %+v, not the answer", op, resource, m.GetData(), m.Properties)
		}
		status, _ := m.Annotations["status"].(int32)
		return status, m
	}

	status, m := request("GET", "", nil)
	var twin struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	}
	if err := json.Unmarshal(m.GetData(), &twin); status != 200 || err != nil || twin.Desired["power"] != float64(1) || twin.Desired["$version"] != float64(2) {
		t.Errorf("GET: %d %s %v", status, m.GetData(), err)
	}
	status, m = request("PATCH", "/properties/reported", []byte(`{"connectivity":"cellular"}`))
	if status != 204 || m.Annotations["version"] != int64(2) {
		t.Errorf("PATCH reported: %d %v", status, m.Annotations)
	}
	if status, _ = request("PATCH", "/properties/reported", []byte(`{"bad key":1}`)); status != 400 {
		t.Errorf("a patch with a bad key: %d", status)
	}
	if status, _ = request("DELETE", "/properties/reported", nil); status != 400 {
		t.Errorf("an operation IoT Hub does not serve: %d", status)
	}
	if status, _ = request("PUT", "/notifications/twin/properties/desired", nil); status != 200 {
		t.Errorf("PUT notifications: %d", status)
	}
	for i := 2; i <= 4; i++ {
		if _, err := e.hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"power": float64(i)}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	for want := 3; want <= 5; want++ {
		m, err := rcv.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rcv.AcceptMessage(ctx, m)
		var patch map[string]any
		json.Unmarshal(m.GetData(), &patch)
		if m.Properties != nil && m.Properties.CorrelationID != nil || patch["$version"] != float64(want) || patch["power"] != float64(want-1) {
			t.Errorf("desired change %d: %s, properties %+v", want, m.GetData(), m.Properties)
		}
	}
	if status, _ = request("DELETE", "/notifications/twin/properties/desired", nil); status != 200 {
		t.Errorf("DELETE notifications: %d", status)
	}
	if _, err := e.hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"power": float64(9)}}, "*"); err != nil {
		t.Fatal(err)
	}
	// The next thing on the receiver is the answer to this GET, not the
	// change made after DELETE.
	if status, m = request("GET", "", nil); status != 200 {
		t.Errorf("GET after DELETE: %d", status)
	}
}
