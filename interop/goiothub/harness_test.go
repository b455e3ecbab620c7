package goiothub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// The harness runs the real twinhub binary, built once per test binary,
// as a child process: the suite then sees the hub exactly as SDK users do,
// through its listeners, its TLS certificate and its CLI.

const (
	// startTimeout bounds how long a hub may take to accept connections.
	startTimeout = 60 * time.Second
	// stopTimeout bounds how long a hub may take to exit after SIGTERM.
	stopTimeout = 20 * time.Second
	// callTimeout bounds one test's SDK calls so that a hung hub fails
	// the test with its output rather than hitting go test's timeout.
	callTimeout = 3 * time.Minute
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// twinhubBinary builds cmd/twinhub once per test binary.
func twinhubBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "twinhub-goiothub-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "twinhub")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/twinhub/twinhub/cmd/twinhub")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build cmd/twinhub: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// hubConfig is what hubOptions change.
type hubConfig struct {
	// MQTT makes startHub also wait for the MQTT listener on ADDR:8883.
	MQTT bool
	// Args are extra flags for `twinhub serve`.
	Args []string
}

type hubOption func(*hubConfig)

// withMQTT waits for the MQTT/TLS listener on ADDR:8883 as well as HTTPS.
func withMQTT() hubOption { return func(c *hubConfig) { c.MQTT = true } }

// withServeArgs passes extra flags to `twinhub serve`, e.g. "--sync-always".
func withServeArgs(args ...string) hubOption {
	return func(c *hubConfig) { c.Args = append(c.Args, args...) }
}

// testHub is a running twinhub process.
type testHub struct {
	// Addr is the loopback address the hub listens on and its HostName.
	Addr string
	// DataDir is the hub's data folder (a t.TempDir).
	DataDir string
	// ConnectionString is the iothubowner connection string.
	ConnectionString string
	// CAFile is the hub's CA certificate (PEM) and CAPool a pool holding it.
	CAFile string
	CAPool *x509.CertPool

	conf hubConfig
	bin  string
	out  *syncBuffer

	mu   sync.Mutex
	proc *hubProcess
}

// hubProcess is one run of `twinhub serve`.
type hubProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done closes
}

// startHub runs `twinhub serve` on addr (a loopback IP, which becomes the
// hub's HostName; HTTPS on addr:443, MQTT on addr:8883) with a fresh data
// folder, and returns once it accepts TLS connections. The hub is stopped
// with SIGTERM when the test ends; the test fails if it exits non-zero, dies
// early or does not stop, and the hub's output is printed then (and when
// the test failed for any other reason).
func startHub(t testing.TB, addr string, opts ...hubOption) *testHub {
	t.Helper()
	h := &testHub{
		Addr:    addr,
		DataDir: t.TempDir(),
		bin:     twinhubBinary(t),
		out:     &syncBuffer{},
	}
	for _, o := range opts {
		o(&h.conf)
	}
	h.CAFile = filepath.Join(h.DataDir, "ca.pem")
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("twinhub on %s: %v\n--- hub output ---\n%s", h.Addr, err, h.out.String())
		} else if t.Failed() {
			t.Logf("--- output of twinhub on %s ---\n%s", h.Addr, h.out.String())
		}
	})
	h.start(t)
	h.ConnectionString = strings.TrimSpace(h.CLI(t, "connection-string"))
	return h
}

// start launches the process and waits until it serves.
func (h *testHub) start(t testing.TB) {
	t.Helper()
	args := []string{"serve", "--data", h.DataDir, "--hostname", h.Addr,
		"--https-addr", net.JoinHostPort(h.Addr, "443"),
		"--mqtt-addr", net.JoinHostPort(h.Addr, "8883")}
	args = append(args, h.conf.Args...)
	cmd := exec.Command(h.bin, args...)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	// Should the test binary die without its cleanups, the hub dies too
	// instead of holding the address for the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(h.out, "=== harness: %s %s\n", h.bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting twinhub: %v", err)
	}
	p := &hubProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.mu.Lock()
	h.proc = p
	h.mu.Unlock()
	if err := h.waitReady(p); err != nil {
		t.Fatalf("twinhub on %s did not start: %v\n--- hub output ---\n%s", h.Addr, err, h.out.String())
	}
}

// waitReady polls until the hub has written its CA and serve.json (which
// the CLI reads) and completes TLS handshakes that verify against the CA.
func (h *testHub) waitReady(p *hubProcess) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("the hub exited: %v", p.err)
		default:
		}
		last = h.probe(p)
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", startTimeout, last)
}

func (h *testHub) probe(p *hubProcess) error {
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no certificate", h.CAFile)
	}
	var serve struct {
		PID int `json:"pid"`
	}
	data, err := os.ReadFile(filepath.Join(h.DataDir, "serve.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &serve); err != nil {
		return fmt.Errorf("serve.json: %v", err)
	}
	if serve.PID != p.cmd.Process.Pid {
		return fmt.Errorf("serve.json names pid %d, not %d", serve.PID, p.cmd.Process.Pid)
	}
	ports := []string{"443"}
	if h.conf.MQTT {
		ports = append(ports, "8883")
	}
	for _, port := range ports {
		if err := tlsHandshake(net.JoinHostPort(h.Addr, port), h.Addr, pool); err != nil {
			return err
		}
	}
	h.CAPool = pool
	return nil
}

func tlsHandshake(addr, serverName string, pool *x509.CertPool) error {
	d := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return err
	}
	return conn.Close()
}

// stop sends SIGTERM and waits for the process to exit; an error says
// what went wrong (a non-zero exit, an early death, a hang).
func (h *testHub) stop() error {
	h.mu.Lock()
	p := h.proc
	h.proc = nil
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("the hub had exited before the harness stopped it: %v", exitDescription(p.err))
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("sending SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("the hub did not exit within %s of SIGTERM (killed)", stopTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("the hub exited after SIGTERM with %v", exitDescription(p.err))
	}
	return nil
}

func exitDescription(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Restart stops the hub with SIGTERM (failing the test unless it exits
// cleanly) and starts it again on the same address and data folder.
// Service clients made before keep working for idempotent calls only:
// make new ones.
func (h *testHub) Restart(t testing.TB) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatalf("stopping twinhub on %s: %v\n--- hub output ---\n%s", h.Addr, err, h.out.String())
	}
	h.start(t)
}

// Output is everything the hub has printed so far.
func (h *testHub) Output() string { return h.out.String() }

// CLI runs `twinhub --data DIR args...` and returns its standard output;
// the test fails (and stops) if it exits non-zero.
func (h *testHub) CLI(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, err := h.RunCLI(args...)
	if err != nil {
		t.Fatalf("twinhub %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// RunCLI runs `twinhub --data DIR args...` and returns what it printed
// and its exit error (an *exec.ExitError for a non-zero status).
func (h *testHub) RunCLI(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, append([]string{"--data", h.DataDir}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// PolicyConnectionString is the hub connection string of a shared access
// policy: iothubowner, service, device, registryRead or registryReadWrite.
func (h *testHub) PolicyConnectionString(t testing.TB, policy string) string {
	t.Helper()
	return strings.TrimSpace(h.CLI(t, "connection-string", "--policy", policy))
}

// TLSConfig trusts the hub's CA and nothing else.
func (h *testHub) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: h.CAPool}
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

// MQTTListening reports whether the hub accepts TLS on ADDR:8883.
func (h *testHub) MQTTListening() bool {
	return tlsHandshake(net.JoinHostPort(h.Addr, "8883"), h.Addr, h.CAPool) == nil
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

// syncBuffer collects the hub's output from two pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
