package goiothub

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	"github.com/amenzhinsky/iothub/iotservice"
)

// Telemetry from iotdevice's SendEvent read back with `twinhub
// monitor-events`, and cloud-to-device messages sent with `twinhub c2d
// send` received by iotdevice's SubscribeEvents; both survive a restart.
// Address 127.0.0.57.

type eventLine struct {
	DeviceID   string            `json:"deviceId"`
	Sequence   uint64            `json:"sequenceNumber"`
	System     map[string]string `json:"systemProperties"`
	Properties map[string]string `json:"properties"`
	Body       string            `json:"body"`
}

// monitor runs `twinhub monitor-events` until n events are printed.
func monitor(t *testing.T, h *testHub, n int, args ...string) []eventLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := h.Command(ctx, append([]string{"monitor-events", "--max", strconv.Itoa(n)}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	dec := json.NewDecoder(out)
	var got []eventLine
	for len(got) < n {
		var l eventLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("monitor-events %v: %d of %d events, then %v", args, len(got), n, err)
		}
		got = append(got, l)
	}
	return got
}

func TestTelemetryAndC2D(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.57")
	svc := h.Service(t)
	ctx := testContext(t)
	registered, cs := h.NewDevice(t, svc, "msg-1")
	dev := h.DeviceClient(t, cs)
	for i, body := range []string{`{"temp":21}`, `{"temp":22}`} {
		if err := dev.SendEvent(ctx, []byte(body),
			iotdevice.WithSendMessageID("m"+string(rune('1'+i))),
			iotdevice.WithSendCorrelationID("c1"),
			iotdevice.WithSendProperty("site", "north wing")); err != nil {
			t.Fatalf("SendEvent: %v", err)
		}
	}
	evs := monitor(t, h, 1, "--consumer-group", "g1", "--from", "start", "--device", "msg-1")
	if e := evs[0]; e.DeviceID != "msg-1" || e.Body != `{"temp":21}` || e.System["message-id"] != "m1" ||
		e.System["correlation-id"] != "c1" || e.Properties["site"] != "north wing" ||
		e.System["iothub-connection-auth-method"] != "sas" || e.System["iothub-enqueuedtime"] == "" ||
		e.System["iothub-connection-auth-generation-id"] != registered.GenerationID || registered.GenerationID == "" {
		t.Errorf("event %+v (the device's generationId %q)", e, registered.GenerationID)
	}

	// Cloud-to-device: queued while the device does not listen, delivered
	// when it subscribes.
	h.CLI(t, "c2d", "send", "msg-1", "hello", "--props", "color=red", "--ack", "full", "--message-id", "c2d-1")
	sub, err := dev.SubscribeEvents(ctx)
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	select {
	case m := <-sub.C():
		if string(m.Payload) != "hello" || m.MessageID != "c2d-1" || m.Properties["color"] != "red" || m.To != "/devices/msg-1/messages/deviceBound" {
			t.Errorf("c2d message %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cloud-to-device message within 10 s")
	}

	// --ack full: the PUBACK produces Success feedback.
	var fb []map[string]any
	for deadline := time.Now().Add(10 * time.Second); len(fb) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := json.Unmarshal([]byte(h.CLI(t, "c2d", "feedback")), &fb); err != nil {
			t.Fatal(err)
		}
	}
	if len(fb) != 1 || fb[0]["originalMessageId"] != "c2d-1" || fb[0]["statusCode"] != "Success" || fb[0]["deviceId"] != "msg-1" {
		t.Errorf("feedback %v", fb)
	}

	// A restart keeps unread telemetry, the group's position and pending
	// cloud-to-device messages.
	dev.Close()
	h.CLI(t, "c2d", "send", "msg-1", "after restart")
	h.Restart(t)
	evs = monitor(t, h, 1, "--consumer-group", "g1", "--device", "msg-1")
	if evs[0].Body != `{"temp":22}` {
		t.Errorf("group g1 resumed at %+v", evs[0])
	}
	dev = h.DeviceClient(t, cs)
	sub, err = dev.SubscribeEvents(ctx)
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	select {
	case m := <-sub.C():
		if string(m.Payload) != "after restart" {
			t.Errorf("c2d after restart %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cloud-to-device message after the restart")
	}
}

// TestC2DOverAMQP: the Go service SDK sends cloud-to-device messages the
// way it does to IoT Hub, over AMQP (CBS put-token, then a sender to
// /messages/devicebound), and the device receives them over MQTT; an
// unknown device is refused; the feedback comes to SubscribeFeedback
// (a receiver on /messages/serviceBound/feedback).
func TestC2DOverAMQP(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.58")
	svc := h.Service(t)
	ctx := testContext(t)
	_, cs := h.NewDevice(t, svc, "amqp-1")
	if err := svc.SendEvent(ctx, "amqp-1", []byte("over amqp"),
		iotservice.WithSendMessageID("a-1"),
		iotservice.WithSendCorrelationID("corr-1"),
		iotservice.WithSendAck(iotservice.AckPositive),
		iotservice.WithSendExpiryTime(time.Now().Add(10*time.Minute)),
		iotservice.WithSendProperty("color", "blue")); err != nil {
		t.Fatalf("SendEvent over AMQP: %v", err)
	}
	dev := h.DeviceClient(t, cs)
	sub, err := dev.SubscribeEvents(ctx)
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	select {
	case m := <-sub.C():
		if string(m.Payload) != "over amqp" || m.MessageID != "a-1" || m.CorrelationID != "corr-1" || m.Properties["color"] != "blue" {
			t.Errorf("c2d message %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cloud-to-device message within 10 s")
	}
	if err := svc.SendEvent(ctx, "nobody", []byte("x")); err == nil || !strings.Contains(err.Error(), "amqp:not-found") {
		t.Errorf("SendEvent to an unknown device: %v, want amqp:not-found", err)
	}

	// The device took the message (MQTT PUBACK): its positive feedback
	// comes to SubscribeFeedback, over /messages/serviceBound/feedback.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got *iotservice.Feedback
	err = svc.SubscribeFeedback(fctx, func(f *iotservice.Feedback) error {
		if f.OriginalMessageID == "a-1" {
			got = f
			cancel()
		}
		return nil
	})
	if got == nil {
		t.Fatalf("no feedback for a-1 from SubscribeFeedback: %v", err)
	}
	if got.DeviceID != "amqp-1" || got.StatusCode != "Success" || got.EnqueuedTimeUTC.IsZero() {
		t.Errorf("feedback %+v", got)
	}
}

// TestSubscribeEventsOverAMQP: iotservice's SubscribeEvents, redirected
// from messages/events to the Event Hubs-compatible entity (PLAIN with the
// policy's key), reads the telemetry iotdevice sends, with IoT Hub's
// system properties and the device's own. Address 127.0.0.59.
func TestSubscribeEventsOverAMQP(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.59")
	svc := h.Service(t)
	ctx := testContext(t)
	_, cs := h.NewDevice(t, svc, "eh-1")
	dev := h.DeviceClient(t, cs)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan *iotservice.Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- svc.SubscribeEvents(sctx, func(e *iotservice.Event) error {
			got <- e
			return nil
		})
	}()
	// SubscribeEvents reads the events enqueued after it starts: send
	// until one arrives.
	var e *iotservice.Event
	for i := 0; e == nil; i++ {
		if err := dev.SendEvent(ctx, []byte("reading "+strconv.Itoa(i)), iotdevice.WithSendMessageID("m-"+strconv.Itoa(i)),
			iotdevice.WithSendProperty("color", "green")); err != nil {
			t.Fatalf("SendEvent: %v", err)
		}
		select {
		case e = <-got:
		case err := <-done:
			t.Fatalf("SubscribeEvents: %v", err)
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no event read through the Event Hubs-compatible endpoint")
		}
	}
	if e.ConnectionDeviceID != "eh-1" || !strings.HasPrefix(string(e.Payload), "reading ") || e.Properties["color"] != "green" ||
		!strings.HasPrefix(e.MessageID, "m-") || e.MessageSource != "Telemetry" || e.EnqueuedTime == nil ||
		e.ConnectionAuthMethod == nil || e.ConnectionAuthMethod.Type != "sas" {
		t.Errorf("event %+v (auth %+v)", e.Message, e.ConnectionAuthMethod)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("SubscribeEvents ended with %v", err)
	}
}
