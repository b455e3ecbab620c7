package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/mqtt"
)

func seconds(n int) *int { return &n }

type invokeResult struct {
	res *twinhub.MethodResult
	err error
}

func invokeAsync(h *hub.Hub, k twinhub.Key, req twinhub.MethodRequest) chan invokeResult {
	ch := make(chan invokeResult, 1)
	go func() {
		res, err := h.InvokeMethod(context.Background(), k, req)
		ch <- invokeResult{res, err}
	}()
	return ch
}

func wantHubError(t testing.TB, err error, status int, code string) {
	t.Helper()
	var e *twinhub.Error
	if !errors.As(err, &e) || e.Status != status || e.Code != code {
		t.Fatalf("error %v, want %d %s", err, status, code)
	}
}

// answer waits for a method call on c and answers it.
func answer(t testing.TB, c *client, name string, status int, body string) (payload []byte) {
	t.Helper()
	m := c.next(t, "$iothub/methods/POST/"+name+"/")
	_, q := topicParams(t, m.Topic())
	c.publish(t, "$iothub/methods/res/"+itoa(status)+"/?$rid="+q.Get("$rid"), 0, body)
	return m.Payload()
}

func itoa(n int) string { return jsonNumber(n) }

func jsonNumber(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestMethods(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	k := twinhub.DeviceKey("dev1")
	c := e.mustConnect("dev1", clientOpts{password: e.device("dev1"), clean: true})
	c.subscribe(t, "$iothub/methods/POST/#")

	ch := invokeAsync(e.hub, k, twinhub.MethodRequest{MethodName: "reboot", Payload: json.RawMessage(`{"delay":1}`)})
	if got := answer(t, c, "reboot", 201, `{"ok":true}`); string(got) != `{"delay":1}` {
		t.Errorf("device got payload %s", got)
	}
	r := <-ch
	if r.err != nil || r.res.Status != 201 || string(r.res.Payload) != `{"ok":true}` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}

	// No payload: the device gets JSON null (the Node SDK parses every
	// body); an empty answer comes back as null.
	ch = invokeAsync(e.hub, k, twinhub.MethodRequest{MethodName: "ping"})
	if got := answer(t, c, "ping", 200, ""); string(got) != "null" {
		t.Errorf("device got payload %q, want null", got)
	}
	if r := <-ch; r.err != nil || string(r.res.Payload) != "null" {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}

	// An answer with a rid that was never sent, or sent again after the
	// call was answered, goes nowhere.
	ch = invokeAsync(e.hub, k, twinhub.MethodRequest{MethodName: "twice"})
	m := c.next(t, "$iothub/methods/POST/twice/")
	_, q := topicParams(t, m.Topic())
	c.publish(t, "$iothub/methods/res/500/?$rid=ffff", 0, `{}`)
	c.publish(t, "$iothub/methods/res/200/?$rid="+q.Get("$rid"), 0, `"first"`)
	c.publish(t, "$iothub/methods/res/500/?$rid="+q.Get("$rid"), 0, `"second"`)
	if r := <-ch; r.err != nil || r.res.Status != 200 || string(r.res.Payload) != `"first"` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
}

// TestMethodAnsweredOnlyByItsConnection: another device that answers with
// the same rid answers nothing.
func TestMethodAnsweredOnlyByItsConnection(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	c1 := e.mustConnect("dev1", clientOpts{password: e.device("dev1"), clean: true})
	c2 := e.mustConnect("dev2", clientOpts{password: e.device("dev2"), clean: true})
	c1.subscribe(t, "$iothub/methods/POST/#")
	c2.subscribe(t, "$iothub/methods/POST/#")
	ch := invokeAsync(e.hub, twinhub.DeviceKey("dev1"), twinhub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: seconds(5)})
	m := c1.next(t, "$iothub/methods/POST/m/")
	_, q := topicParams(t, m.Topic())
	c2.publish(t, "$iothub/methods/res/200/?$rid="+q.Get("$rid"), 0, `"impostor"`)
	c2.none(t, 100*time.Millisecond)
	c1.publish(t, "$iothub/methods/res/200/?$rid="+q.Get("$rid"), 0, `"real"`)
	if r := <-ch; r.err != nil || string(r.res.Payload) != `"real"` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
}

func TestMethodModule(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	e.device("dev1")
	mod, err := e.hub.CreateModule(ctx, twinhub.Module{DeviceID: "dev1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.token(testHost+"/devices/dev1/modules/m1", mod.Authentication.SymmetricKey.PrimaryKey, time.Hour)
	c := e.mustConnect("dev1/m1", clientOpts{password: tok, clean: true})
	c.subscribe(t, "$iothub/methods/POST/#")
	ch := invokeAsync(e.hub, twinhub.ModuleKey("dev1", "m1"), twinhub.MethodRequest{MethodName: "mod", Payload: json.RawMessage(`[1,2]`)})
	if got := answer(t, c, "mod", 200, `{"m":1}`); string(got) != `[1,2]` {
		t.Errorf("module got %s", got)
	}
	if r := <-ch; r.err != nil || string(r.res.Payload) != `{"m":1}` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
	// The device itself does not serve its modules' methods.
	_, err = e.hub.InvokeMethod(ctx, twinhub.DeviceKey("dev1"), twinhub.MethodRequest{MethodName: "x"})
	wantHubError(t, err, http.StatusNotFound, "DeviceNotOnline")
}

func TestMethodErrors(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	ctx := context.Background()
	tok := e.device("dev1")
	k := twinhub.DeviceKey("dev1")
	big := json.RawMessage(`"` + strings.Repeat("x", twinhub.MaxMethodPayload) + `"`)
	for _, tc := range []struct {
		name   string
		k      twinhub.Key
		req    twinhub.MethodRequest
		status int
		code   string
	}{
		{"unknown device", twinhub.DeviceKey("nope"), twinhub.MethodRequest{MethodName: "m"}, 404, "DeviceNotFound"},
		{"unknown module", twinhub.ModuleKey("dev1", "nope"), twinhub.MethodRequest{MethodName: "m"}, 404, "ModuleNotFound"},
		{"no name", k, twinhub.MethodRequest{}, 400, "ArgumentInvalid"},
		{"name with /", k, twinhub.MethodRequest{MethodName: "a/b"}, 400, "ArgumentInvalid"},
		{"response timeout 4", k, twinhub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: seconds(4)}, 400, "ArgumentInvalid"},
		{"response timeout 301", k, twinhub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: seconds(301)}, 400, "ArgumentInvalid"},
		{"connect timeout -1", k, twinhub.MethodRequest{MethodName: "m", ConnectTimeoutInSeconds: seconds(-1)}, 400, "ArgumentInvalid"},
		{"connect timeout 301", k, twinhub.MethodRequest{MethodName: "m", ConnectTimeoutInSeconds: seconds(301)}, 400, "ArgumentInvalid"},
		{"payload over 128 KB", k, twinhub.MethodRequest{MethodName: "m", Payload: big}, 413, "MessageTooLarge"},
		{"offline", k, twinhub.MethodRequest{MethodName: "m"}, 404, "DeviceNotOnline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.hub.InvokeMethod(ctx, tc.k, tc.req)
			wantHubError(t, err, tc.status, tc.code)
		})
	}

	// Connected without the methods subscription: not online for methods.
	c := e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	_, err := e.hub.InvokeMethod(ctx, k, twinhub.MethodRequest{MethodName: "m"})
	wantHubError(t, err, http.StatusNotFound, "DeviceNotOnline")

	// Subscribed but silent: 504 after the response timeout, which runs
	// from the call's arrival: the device has the call while the caller
	// still waits.
	c.subscribe(t, "$iothub/methods/POST/#")
	ch := invokeAsync(e.hub, k, twinhub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: seconds(5)})
	m := c.next(t, "$iothub/methods/POST/m/")
	select {
	case r := <-ch:
		t.Fatalf("answered before the response timeout: %+v %v", r.res, r.err)
	default:
	}
	select {
	case r := <-ch:
		wantHubError(t, r.err, http.StatusGatewayTimeout, "GatewayTimeout")
	case <-time.After(time.Minute):
		t.Fatal("no answer a minute after a 5s response timeout")
	}
	// The late answer goes nowhere.
	_, q := topicParams(t, m.Topic())
	c.publish(t, "$iothub/methods/res/200/?$rid="+q.Get("$rid"), 0, `{}`)
}

// TestMethodConnectTimeout: a call with a connect timeout waits for the
// device to connect and subscribe.
func TestMethodConnectTimeout(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	calls, err := e.nc.SubscribeSync("twinhub.methods.call.>")
	if err != nil {
		t.Fatal(err)
	}
	ch := invokeAsync(e.hub, twinhub.DeviceKey("dev1"), twinhub.MethodRequest{MethodName: "late", ConnectTimeoutInSeconds: seconds(20)})
	// The call is out, to no one, before the device connects.
	if _, err := calls.NextMsg(20 * time.Second); err != nil {
		t.Fatalf("the call was not sent: %v", err)
	}
	c := e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	c.subscribe(t, "$iothub/methods/POST/#")
	answer(t, c, "late", 200, `{"came":"late"}`)
	if r := <-ch; r.err != nil || r.res.Status != 200 {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
	c.Disconnect(100)
	waitFor(t, "Disconnected", func() bool { return connectionState(t, e.hub, twinhub.DeviceKey("dev1")) == twinhub.StateDisconnected })
	_, err = e.hub.InvokeMethod(context.Background(), twinhub.DeviceKey("dev1"), twinhub.MethodRequest{MethodName: "m", ConnectTimeoutInSeconds: seconds(1)})
	wantHubError(t, err, http.StatusNotFound, "DeviceNotOnline")
}

// TestMethodPersistentSession: a CleanSession=0 device that reconnects
// without subscribing again (the Node SDK after a token renewal) keeps
// getting calls.
func TestMethodPersistentSession(t *testing.T) {
	e := newEnv(t, mqtt.Options{})
	tok := e.device("dev1")
	k := twinhub.DeviceKey("dev1")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/methods/POST/#")
	c.Disconnect(100)
	waitFor(t, "Disconnected", func() bool { return connectionState(t, e.hub, k) == twinhub.StateDisconnected })
	c = e.mustConnect("dev1", clientOpts{password: tok})
	ch := invokeAsync(e.hub, k, twinhub.MethodRequest{MethodName: "again"})
	answer(t, c, "again", 200, `{}`)
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	}
}

func BenchmarkMethodRoundTrip(b *testing.B) {
	e := newEnv(b, mqtt.Options{})
	k := twinhub.DeviceKey("dev1")
	c := e.mustConnect("dev1", clientOpts{password: e.device("dev1"), clean: true})
	c.subscribe(b, "$iothub/methods/POST/#")
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case m := <-c.msgs:
				_, q, _ := strings.Cut(m.Topic(), "?$rid=")
				c.Publish("$iothub/methods/res/200/?$rid="+q, 0, false, `{}`)
			case <-done:
				return
			}
		}
	}()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.hub.InvokeMethod(ctx, k, twinhub.MethodRequest{MethodName: "bench", Payload: json.RawMessage(`{"n":1}`)}); err != nil {
			b.Fatal(err)
		}
	}
}
