package mqtt_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/mqtttest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/mqtt"
)

// TestSessionResumedOnAnotherServer: a session is saved in the store when
// it is subscribed, before the SUBACK, so a device whose server dies
// without a word resumes its subscriptions on another server sharing the
// store (another node of a cluster, the same node restarted) without
// subscribing again; CleanSession=1 there forgets it.
func TestSessionResumedOnAnotherServer(t *testing.T) {
	ctx := context.Background()
	h := hubtest.New(t, hubtest.WithHost(testHost))
	sessions, err := jetstream.OpenSessions(ctx, h.Conn, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serve := func() *env {
		ep := mqtttest.Serve(t, h.Hub, mqtttest.Options{MQTT: mqtt.Options{Sessions: sessions, Log: discardLog()}})
		return &env{t: t, hub: h.Hub, srv: ep.MQTT, ep: ep, nc: h.Conn}
	}
	a, b := serve(), serve()
	k := twinhub.DeviceKey("dev1")
	tok := a.device("dev1")

	c := a.mustConnect("dev1", clientOpts{password: tok})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	c.subscribe(t, "$iothub/methods/POST/#")
	data, found, err := sessions.LoadSession(ctx, k)
	if err != nil || !found || !strings.Contains(string(data), `"desired":1`) || !strings.Contains(string(data), `"methods":1`) {
		t.Fatalf("the session saved once subscribed: %s (found %v, %v)", data, found, err)
	}

	// The device comes back through server b while a still holds its
	// connection (a died, as far as the device knows).
	c2 := b.mustConnect("dev1", clientOpts{password: tok})
	if _, err := h.Hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"a": 1.0}}, "*"); err != nil {
		t.Fatal(err)
	}
	c2.next(t, "$iothub/twin/PATCH/properties/desired/?$version=2")

	c2.Disconnect(100)
	waitFor(t, "the session saved as the device left", func() bool {
		_, found, _ := sessions.LoadSession(ctx, k)
		return found
	})
	c3 := b.mustConnect("dev1", clientOpts{password: tok, clean: true})
	if _, found, err := sessions.LoadSession(ctx, k); err != nil || found {
		t.Errorf("after a CleanSession=1 connect the session is still saved (found %v, %v)", found, err)
	}
	if _, err := h.Hub.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: map[string]any{"a": 2.0}}, "*"); err != nil {
		t.Fatal(err)
	}
	c3.none(t, 300*time.Millisecond)
}

// brokenSessions is a store that cannot be reached.
type brokenSessions struct{}

var errUnreachable = twinhub.StoreUnavailable(errors.New("no quorum"))

func (brokenSessions) LoadSession(context.Context, twinhub.Key) ([]byte, bool, error) {
	return nil, false, errUnreachable
}
func (brokenSessions) SaveSession(context.Context, twinhub.Key, []byte) error { return errUnreachable }
func (brokenSessions) DeleteSession(context.Context, twinhub.Key) error       { return errUnreachable }

// savesFail reads sessions (there are none) but cannot save them.
type savesFail struct{ brokenSessions }

func (savesFail) LoadSession(context.Context, twinhub.Key) ([]byte, bool, error) {
	return nil, false, nil
}

// TestSessionStoreUnavailable: a session that cannot be read refuses the
// CONNECT with server unavailable; a subscription that cannot be saved is
// not granted (0x80), and the connection goes on; a clean session needs
// no save.
func TestSessionStoreUnavailable(t *testing.T) {
	e := newEnv(t, mqtt.Options{Sessions: brokenSessions{}})
	tok := e.device("dev1")
	r := e.dialRaw()
	if rc := r.connect("dev1", username("dev1"), tok, 30); rc != 3 {
		t.Errorf("CONNACK %d with the session store away, want 3 (server unavailable)", rc)
	}

	e = newEnv(t, mqtt.Options{Sessions: savesFail{}})
	tok = e.device("dev1")
	c := e.mustConnect("dev1", clientOpts{password: tok})
	if q := c.subscribe(t, "$iothub/methods/POST/#"); q != 0x80 {
		t.Errorf("SUBACK %#x for a subscription that could not be saved, want 0x80", q)
	}
	c.Disconnect(100)
	c = e.mustConnect("dev1", clientOpts{password: tok, clean: true})
	if q := c.subscribe(t, "$iothub/methods/POST/#"); q != 1 {
		t.Errorf("SUBACK %#x for a clean session's subscription, want 1", q)
	}
}
