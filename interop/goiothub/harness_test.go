package goiothub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinhub/twinhub/internal/servetest"
)

// The harness runs the real twinhub binary as a child process
// (internal/servetest): the suite then sees the hub exactly as SDK users
// do, through its listeners, its TLS certificate and its CLI. What is here
// is the SDK's side: service and device clients that trust the hub's CA.

// callTimeout bounds one test's SDK calls so that a hung hub fails the test
// with its output rather than hitting go test's timeout.
const callTimeout = 3 * time.Minute

func TestMain(m *testing.M) { servetest.Main(m) }

// testHub is a running twinhub process.
type testHub struct {
	*servetest.Hub
	// ConnectionString is the iothubowner connection string.
	ConnectionString string
}

// startHub runs `twinhub serve` on addr (a loopback IP, which becomes the
// hub's HostName; HTTPS on addr:443, MQTT on addr:8883) with a fresh data
// folder and the extra flags args, and returns once it serves; see
// servetest.Start.
func startHub(t testing.TB, addr string, args ...string) *testHub {
	t.Helper()
	h := &testHub{Hub: servetest.Start(t, addr, args...)}
	h.ConnectionString = strings.TrimSpace(h.CLI(t, "connection-string"))
	return h
}

// PolicyConnectionString is the hub connection string of a shared access
// policy: iothubowner, service, device, registryRead or registryReadWrite.
func (h *testHub) PolicyConnectionString(t testing.TB, policy string) string {
	t.Helper()
	return strings.TrimSpace(h.CLI(t, "connection-string", "--policy", policy))
}

// Service is an iotservice client with the owner connection string.
func (h *testHub) Service(t testing.TB) *iotservice.Client {
	t.Helper()
	return h.ServiceFor(t, h.ConnectionString)
}

// ServiceFor is an iotservice client for any hub connection string. In
// v0.9.1 WithTLSConfig only affects AMQP, so REST calls get an HTTP client
// that trusts the hub's CA. Its transport keeps up to 64 idle connections
// (the default 2 would make parallel benchmarks measure TLS handshakes).
func (h *testHub) ServiceFor(t testing.TB, connectionString string) *iotservice.Client {
	t.Helper()
	httpClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     h.TLSConfig(),
		MaxIdleConnsPerHost: 64,
	}}
	c, err := iotservice.NewFromConnectionString(connectionString,
		iotservice.WithHTTPClient(httpClient),
		iotservice.WithTLSConfig(h.TLSConfig()),
	)
	if err != nil {
		t.Fatalf("iotservice.NewFromConnectionString: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		httpClient.CloseIdleConnections()
	})
	return c
}

// MQTTTransport is the SDK's MQTT device transport trusting the hub's CA
// (the SDK pins Azure's CAs; the hook runs after its own TLS settings, and
// changing RootCAs in place keeps an X.509 client certificate).
func (h *testHub) MQTTTransport(opts ...iotmqtt.TransportOption) *iotmqtt.Transport {
	pool := h.CAPool
	opts = append([]iotmqtt.TransportOption{iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
		o.TLSConfig.RootCAs = pool
	})}, opts...)
	return iotmqtt.New(opts...)
}

// DeviceClient connects a device over MQTT with a device connection
// string; it is closed when the test ends.
func (h *testHub) DeviceClient(t testing.TB, connectionString string) *iotdevice.Client {
	t.Helper()
	c, err := iotdevice.NewFromConnectionString(h.MQTTTransport(), connectionString)
	if err != nil {
		t.Fatalf("iotdevice.NewFromConnectionString: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("device connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// NewDevice registers a device with generated keys and returns it with
// its connection string.
func (h *testHub) NewDevice(t testing.TB, svc *iotservice.Client, id string) (*iotservice.Device, string) {
	t.Helper()
	d, err := svc.CreateDevice(testContext(t), &iotservice.Device{DeviceID: id})
	if err != nil {
		t.Fatalf("CreateDevice(%s): %v", id, err)
	}
	cs, err := svc.DeviceConnectionString(d, false)
	if err != nil {
		t.Fatalf("DeviceConnectionString(%s): %v", id, err)
	}
	return d, cs
}

// testContext bounds a test's calls; it ends with the test.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// statusOf is the HTTP status of an iotservice error: iotservice returns
// *BadRequestError for a 400 whose body has a Message, *RequestError for
// any other failure status, and other errors for transport failures (0).
func statusOf(err error) int {
	var re *iotservice.RequestError
	if errors.As(err, &re) {
		return re.Code
	}
	var bre *iotservice.BadRequestError
	if errors.As(err, &bre) {
		return http.StatusBadRequest
	}
	return 0
}

// wantStatus fails the test unless err is an SDK error with that status.
func wantStatus(t testing.TB, call string, err error, status int) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want HTTP %d", call, status)
		return
	}
	if got := statusOf(err); got != status {
		t.Errorf("%s: error %v (HTTP %d), want HTTP %d", call, err, got, status)
	}
}
