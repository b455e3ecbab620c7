package goiothub

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	"github.com/amenzhinsky/iothub/iotservice"

	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/internal/metricstest"
)

// TestMetricsAndHealth: with --metrics-addr a hub serves /healthz, /readyz
// and Prometheus metrics that count the REST requests a real client made
// (by route pattern and status, never by device id) and the registry; a
// bare port listens on loopback only.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.75", "--metrics-addr", "127.0.0.75:9464")
	base := "http://127.0.0.75:9464"
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/readyz")
	var ready struct{ Ready bool }
	if json.Unmarshal([]byte(body), &ready); code != 200 || !ready.Ready {
		t.Errorf("/readyz: %d %s", code, body)
	}

	svc := h.Service(t)
	ctx := testContext(t)
	for i := range 2 {
		if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A third over MQTT, connected, sending telemetry.
	_, cs := h.NewDevice(t, svc, "m2")
	dev := h.DeviceClient(t, cs)
	if err := dev.SendEvent(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	// m0 with a wrong key is refused; m1 connects and leaves; a C2D
	// message for m1 waits in its queue.
	wrongKey := strings.Replace(cs, "DeviceId=m2", "DeviceId=m0", 1)
	if refused, err := iotdevice.NewFromConnectionString(h.MQTTTransport(), wrongKey); err != nil {
		t.Fatal(err)
	} else if err := refused.Connect(ctx); err == nil {
		t.Error("m0 connected with m2's key")
		refused.Close()
	}
	m1, err := svc.GetDevice(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	m1cs, err := svc.DeviceConnectionString(m1, false)
	if err != nil {
		t.Fatal(err)
	}
	leaving := h.DeviceClient(t, m1cs)
	if err := leaving.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.SendEvent(ctx, "m1", []byte("wait for me")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetDevice(ctx, "m0"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.GetDevice(ctx, "nope")
	wantStatus(t, "GetDevice of an unknown device", err, http.StatusNotFound)
	if _, err := svc.GetDeviceTwin(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.GetDeviceTwin(ctx, "nope")
	wantStatus(t, "GetDeviceTwin of an unknown device", err, http.StatusNotFound)
	if _, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: "m1", Tags: map[string]interface{}{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := svc.QueryDevices(ctx, "SELECT * FROM devices", func(map[string]any) error { return nil }); err != nil {
		t.Fatal(err)
	}

	// Scraped until the figures are in: a device's Connected state is
	// stored just after its CONNACK, and the scrape may come first.
	var families metricstest.Families
	var wrong []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body = get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		families = metricstest.Parse(t, body)
		if wrong = checkMetrics(families); len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wrong {
		t.Error(w)
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if strings.Contains(body, "m0") {
		t.Error("a device id appears in the metrics")
	}
}

// checkMetrics says which of the figures TestMetricsAndHealth expects
// families lack.
func checkMetrics(families metricstest.Families) []string {
	var wrong []string
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"twinhub_http_requests_total", map[string]string{"route": "PUT /devices/{id}", "code": "200"}, 3},
		{"twinhub_http_requests_total", map[string]string{"route": "GET /devices/{id}", "code": "200"}, 2},
		{"twinhub_http_requests_total", map[string]string{"route": "GET /devices/{id}", "code": "404"}, 1},
		{"twinhub_http_request_duration_seconds", map[string]string{"route": "PUT /devices/{id}"}, 3},
		{"twinhub_devices", map[string]string{"status": "enabled"}, 3},
		{"twinhub_twin_reads_total", map[string]string{"by": "service", "result": "ok"}, 1},
		{"twinhub_twin_reads_total", map[string]string{"by": "service", "result": "DeviceNotFound"}, 1},
		{"twinhub_twin_updates_total", map[string]string{"by": "service", "result": "ok"}, 1},
		{"twinhub_queries_total", map[string]string{"result": "ok"}, 1},
		{"twinhub_query_duration_seconds", nil, 1},
		{"twinhub_devices_connected", nil, 1},
		{"twinhub_device_connections", map[string]string{"transport": "mqtt"}, 1},
		{"twinhub_device_connections", map[string]string{"transport": "amqp"}, 0},
		{"twinhub_device_connects_total", map[string]string{"transport": "mqtt", "result": "ok"}, 2},
		{"twinhub_device_connects_total", map[string]string{"transport": "mqtt", "result": "unauthorized"}, 1},
		{"twinhub_device_disconnects_total", map[string]string{"transport": "mqtt"}, 1},
		{"twinhub_queued_messages", map[string]string{"queue": "c2d"}, 1},
		{"twinhub_queued_messages", map[string]string{"queue": "feedback"}, 0},
		{"twinhub_queued_messages", map[string]string{"queue": "file_notifications"}, 0},
		{"twinhub_telemetry_messages_total", map[string]string{"result": "ok"}, 1},
		{"twinhub_throttled_total", map[string]string{"class": "twin reads"}, 0},
		{"twinhub_registry_scrape_error", nil, 0},
		{"twinhub_index_lag_revisions", nil, 0},
		{"twinhub_jetstream_stream_messages", map[string]string{"stream": "KV_twinhub-registry"}, 3},
	} {
		if got, ok := families.Value(c.name, c.labels); !ok || got != c.want {
			wrong = append(wrong, fmt.Sprintf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want))
		}
	}
	return wrong
}

// TestMetricsBarePortIsLoopback: --metrics-addr with a bare port listens
// on 127.0.0.1 only, and serve.json says so (bench --hub-process finds
// the hub's metrics there).
func TestMetricsBarePortIsLoopback(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.76", "--metrics-addr", ":9465")
	if _, err := http.Get("http://127.0.0.1:9465/healthz"); err != nil {
		t.Fatalf("loopback: %v", err)
	}
	srv, err := datadir.Dir{Path: h.DataDir}.LoadServe()
	if err != nil {
		t.Fatal(err)
	}
	if srv.MetricsAddr != "127.0.0.1:9465" {
		t.Errorf("serve.json's metricsAddr: %q, want 127.0.0.1:9465", srv.MetricsAddr)
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.Dial("tcp", "127.0.0.76:9465"); err == nil {
		c.Close()
		t.Error("the metrics of a bare port answer on the hub's own address")
	}
}
