package hub_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
)

// twoNodes starts two hubs on one NATS server, as two twinhub nodes of a
// cluster: they share the registry, the bus and the message stores.
func twoNodes(t *testing.T) (a, b *hub.Hub) {
	t.Helper()
	h := hubtest.New(t, hubtest.WithMessaging())
	return h.Hub, h.Node(t).Hub
}

func TestMethodsAcrossNodes(t *testing.T) {
	// Calls are not sent again on a timer here (an hour apart), so only
	// the ready announcement of node b can bring the call to it.
	h := hubtest.New(t, hubtest.WithMessaging(), hubtest.WithConfig(func(c *hub.Config) { c.MethodResendInterval = time.Hour }))
	a, b := h.Hub, h.Node(t).Hub
	calls, err := h.Conn.SubscribeSync("twinhub.methods.call.>")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	k := twinhub.DeviceKey("d1")

	// Waiting on node a for a device that comes online on node b: the
	// call is sent again as soon as b announces the connection.
	type result struct {
		res *twinhub.MethodResult
		err error
	}
	ch := make(chan result, 1)
	connect := 30
	go func() {
		res, err := a.InvokeMethod(ctx, k, twinhub.MethodRequest{MethodName: "m", Payload: json.RawMessage(`{"x":1}`), ConnectTimeoutInSeconds: &connect})
		ch <- result{res, err}
	}()
	// The call is out, to no one, before the device comes online.
	if _, err := calls.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("the call was not sent: %v", err)
	}
	if err := b.SetConnectionState(ctx, k, true); err != nil {
		t.Fatal(err)
	}
	cancel := b.ServeMethods(k, "conn-b", func(c *hub.MethodCall) {
		go c.Respond(200, append([]byte(`{"got":`), append(c.Payload, '}')...))
	})
	defer cancel()
	r := <-ch
	if r.err != nil || r.res.Status != 200 || string(r.res.Payload) != `{"got":{"x":1}}` {
		t.Fatalf("the ready announcement did not bring the call to the device: %+v %v", r.res, r.err)
	}

	// Two connections of one identity (a takeover in progress): the call
	// goes to whichever accepts first, and only that one's answer counts.
	cancelA := a.ServeMethods(k, "conn-a", func(c *hub.MethodCall) {
		go c.Respond(200, []byte(`"a"`))
	})
	defer cancelA()
	for range 5 {
		res, err := a.InvokeMethod(ctx, k, twinhub.MethodRequest{MethodName: "who"})
		if err != nil || (string(res.Payload) != `"a"` && string(res.Payload) != `{"got":null}`) {
			t.Fatalf("%+v %v", res, err)
		}
	}
}

func TestC2DNoticeAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	notified := make(chan struct{}, 1)
	cancel, err := b.WatchC2D("d1", func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := a.SendC2D(ctx, "d1", &twinhub.C2DMessage{Body: []byte("x")}, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("node b heard nothing")
	}
	m, err := b.NextC2D(ctx, "d1", 0)
	if err != nil || string(m.Body) != "x" {
		t.Fatalf("%+v %v", m, err)
	}
}

// TestC2DWatchAfterReconnect: notices sent while the bus is away are lost,
// so every C2D watcher of the node is woken to look again once it is
// back. No message is sent: only the reconnection can wake it.
func TestC2DWatchAfterReconnect(t *testing.T) {
	h := hubtest.New(t, hubtest.WithMessaging())
	woke := make(chan struct{}, 1)
	cancel, err := h.WatchC2D("d1", func() {
		select {
		case woke <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := h.Conn.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher was not woken after the bus reconnected")
	}
}

// TestC2DMessageCount: a device's cloudToDeviceMessageCount is the
// messages queued for it, on any node, in GetDevice and ListDevices alike.
func TestC2DMessageCount(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	for _, id := range []string{"busy", "idle"} {
		if _, err := a.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := a.SendC2D(ctx, "busy", &twinhub.C2DMessage{Body: []byte("x")}, 0); err != nil {
			t.Fatal(err)
		}
	}
	count := func(id string) int {
		t.Helper()
		d, err := b.GetDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.CloudToDeviceMessageCount
	}
	if got := count("busy"); got != 3 {
		t.Errorf("GetDevice(busy): %d queued, want 3", got)
	}
	if got := count("idle"); got != 0 {
		t.Errorf("GetDevice(idle): %d queued, want 0", got)
	}
	list, err := b.ListDevices(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if want := map[string]int{"busy": 3}[d.DeviceID]; d.CloudToDeviceMessageCount != want {
			t.Errorf("ListDevices: %s has %d queued, want %d", d.DeviceID, d.CloudToDeviceMessageCount, want)
		}
	}
	if _, err := b.PurgeC2D(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	if got := count("busy"); got != 0 {
		t.Errorf("after the purge: %d queued", got)
	}
	// The index's own devices are not changed by the counting.
	list, _ = a.ListDevices(ctx, 0)
	for _, d := range list {
		if d.CloudToDeviceMessageCount != 0 {
			t.Errorf("ListDevices after the purge: %s has %d", d.DeviceID, d.CloudToDeviceMessageCount)
		}
	}
}
