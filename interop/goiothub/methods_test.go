package goiothub

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
)

// Direct methods from iotservice's CallDeviceMethod to an iotdevice
// RegisterMethod over MQTT, and the CLI's `method invoke`. Address
// 127.0.0.56.

func TestDirectMethods(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.56")
	svc := h.Service(t)
	ctx := testContext(t)
	_, cs := h.NewDevice(t, svc, "meth-1")

	// Offline: 404 DeviceNotOnline.
	_, err := svc.CallDeviceMethod(ctx, "meth-1", &iotservice.MethodCall{MethodName: "reboot", ResponseTimeout: 5})
	wantStatus(t, "CallDeviceMethod offline", err, 404)
	var re *iotservice.RequestError
	if errors.As(err, &re) && !strings.Contains(string(re.Body), "DeviceNotOnline") {
		t.Errorf("offline body %s", re.Body)
	}

	dev := h.DeviceClient(t, cs)
	if err := dev.RegisterMethod(ctx, "reboot", func(p map[string]any) (int, map[string]any, error) {
		return 200, map[string]any{"rebooted": true, "delay": p["delay"]}, nil
	}); err != nil {
		t.Fatalf("RegisterMethod: %v", err)
	}
	res, err := svc.CallDeviceMethod(ctx, "meth-1", &iotservice.MethodCall{
		MethodName: "reboot", ResponseTimeout: 10, Payload: map[string]any{"delay": 3},
	})
	if err != nil {
		t.Fatalf("CallDeviceMethod: %v", err)
	}
	if res.Status != 200 || res.Payload["rebooted"] != true || res.Payload["delay"] != 3.0 {
		t.Errorf("result %+v", res)
	}

	// A method the device did not register: the Go SDK does not answer,
	// so the call times out with 504, not before its response timeout
	// (how long after it depends on the machine, and is not checked).
	start := time.Now()
	_, err = svc.CallDeviceMethod(ctx, "meth-1", &iotservice.MethodCall{MethodName: "unknown", ResponseTimeout: 5})
	wantStatus(t, "CallDeviceMethod unregistered", err, 504)
	if d := time.Since(start); d < 4500*time.Millisecond {
		t.Errorf("504 after %s, before the 5s response timeout", d)
	}

	// The CLI.
	out := h.CLI(t, "method", "invoke", "meth-1", "reboot", "--payload", `{"delay":1}`, "--timeout", "10")
	var cli struct {
		Status  int            `json:"status"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal([]byte(out), &cli); err != nil || cli.Status != 200 || cli.Payload["delay"] != 1.0 {
		t.Errorf("method invoke printed %s (%v)", out, err)
	}
	if _, stderr, err := h.RunCLI("method", "invoke", "nobody", "m"); err == nil || !strings.Contains(stderr, "DeviceNotFound") {
		t.Errorf("method invoke on an unknown device: %v %s", err, stderr)
	}
}
