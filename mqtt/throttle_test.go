package mqtt_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub/mqtt"
	"github.com/twinhub/twinhub/throttle"
)

// Rates this low refill nothing during a test: exactly the burst passes.
func TestThrottleConnects(t *testing.T) {
	e := newEnv(t, mqtt.Options{Throttle: throttle.New(throttle.Limits{Connects: throttle.Limit{PerSecond: 0.001, Burst: 1}})})
	tok := e.device("d1")
	if code := e.dialRaw().connect("d1", username("d1"), tok, 60); code != 0 {
		t.Fatalf("first CONNECT: %d", code)
	}
	r := e.dialRaw()
	if code := r.connect("d1", username("d1"), tok, 60); code != 3 {
		t.Fatalf("CONNECT over the rate: %d, want 3 (server unavailable)", code)
	}
	r.expectClosed(5 * time.Second)
}

func TestThrottleTwinRequests(t *testing.T) {
	e := newEnv(t, mqtt.Options{Throttle: throttle.New(throttle.Limits{
		TwinReads:   throttle.Limit{PerSecond: 0.001, Burst: 1},
		TwinUpdates: throttle.Limit{PerSecond: 0.001, Burst: 1},
	})})
	tok := e.device("d1")
	r := e.dialRaw()
	if code := r.connect("d1", username("d1"), tok, 60); code != 0 {
		t.Fatalf("CONNECT: %d", code)
	}
	ask := func(topic, body, wantPrefix string) packets.Packet {
		t.Helper()
		r.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: []byte(body)})
		pk := r.expect(packets.Publish)
		if !strings.HasPrefix(pk.TopicName, wantPrefix) {
			t.Fatalf("%s: answered on %q, want %s...", topic, pk.TopicName, wantPrefix)
		}
		return pk
	}
	ask("$iothub/twin/GET/?$rid=1", "", "$iothub/twin/res/200/?$rid=1")
	pk := ask("$iothub/twin/GET/?$rid=2", "", "$iothub/twin/res/429/?$rid=2")
	var body struct {
		ErrorCode int `json:"errorCode"`
	}
	if err := json.Unmarshal(pk.Payload, &body); err != nil || body.ErrorCode != 429001 {
		t.Errorf("throttled twin GET: body %s, want errorCode 429001", pk.Payload)
	}
	ask("$iothub/twin/PATCH/properties/reported/?$rid=3", `{"a":1}`, "$iothub/twin/res/204/?$rid=3")
	ask("$iothub/twin/PATCH/properties/reported/?$rid=4", `{"a":2}`, "$iothub/twin/res/429/?$rid=4")
}
