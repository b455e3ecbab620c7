package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/sas"
)

// long reports whether the long variants run (TWINHUB_LONG=1).
func long() bool { return os.Getenv("TWINHUB_LONG") == "1" }

// pick is short in the default run and long with TWINHUB_LONG=1.
func pick[T any](short, long_ T) T {
	if long() {
		return long_
	}
	return short
}

const (
	apiVersion   = "2021-04-12"
	readyTimeout = 90 * time.Second
	exitTimeout  = 30 * time.Second
)

var (
	binOnce sync.Once
	binFile string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binFile != "" {
		os.RemoveAll(filepath.Dir(binFile))
	}
	os.Exit(code)
}

// binary is cmd/twinhub, built once for the whole test binary.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "twinhub-reliability-")
		if err != nil {
			binErr = err
			return
		}
		binFile = filepath.Join(dir, "twinhub")
		out, err := exec.Command("go", "build", "-o", binFile, "github.com/twinhub/twinhub/cmd/twinhub").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("building twinhub: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binFile
}

// proc is a twinhub process on one address and data folder, which the
// tests start, kill and start again. Its HostName is the address.
type proc struct {
	t    testing.TB
	addr string
	dir  string
	args []string
	log  *logBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed once cmd has exited
	werr error

	// Known once the hub has started.
	host     string
	policies map[string]sas.Policy
	pool     *x509.CertPool
	started  time.Time     // when the last start began
	ready    time.Duration // how long that start took until both listeners served TLS
}

// newProc starts `twinhub serve` on addr (HTTPS :443, MQTT :8883) with a
// fresh data folder and extra flags; it is stopped with SIGTERM when the
// test ends (a non-zero exit then fails the test) and its log printed if
// the test failed.
func newProc(t testing.TB, addr string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, addr: addr, dir: t.TempDir(), args: args, log: &logBuffer{}}
	t.Cleanup(func() {
		if p.running() {
			if _, err := p.term(); err != nil {
				t.Errorf("stopping twinhub on %s: %v", addr, err)
			}
		}
		if t.Failed() {
			t.Logf("--- twinhub on %s ---\n%s", addr, p.log.tail(64<<10))
		}
	})
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	args := append([]string{"serve", "--data", p.dir, "--hostname", p.addr,
		"--https-addr", net.JoinHostPort(p.addr, "443"),
		"--mqtt-addr", net.JoinHostPort(p.addr, "8883")}, p.args...)
	cmd := exec.Command(binary(p.t), args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(p.log, "### start: twinhub %s\n", strings.Join(args, " "))
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting twinhub: %v", err)
	}
	exit := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exit = cmd, exit
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.werr = err
		p.mu.Unlock()
		close(exit)
	}()
	if err := p.waitReady(cmd, exit); err != nil {
		p.t.Fatalf("twinhub on %s did not become ready: %v\n%s", p.addr, err, p.log.tail(16<<10))
	}
	p.ready = time.Since(p.started)
}

// waitReady waits for serve.json to name this process and for both
// listeners to complete TLS handshakes trusted by the hub's CA.
func (p *proc) waitReady(cmd *exec.Cmd, exit chan struct{}) error {
	var last error
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exit:
			return fmt.Errorf("exited: %v", p.werr)
		default:
		}
		if last = p.probe(cmd.Process.Pid); last == nil {
			return nil
		}
	}
	return last
}

func (p *proc) probe(pid int) error {
	dir, err := datadir.Open(p.dir)
	if err != nil {
		return err
	}
	s, err := dir.LoadServe()
	if err != nil {
		return err
	}
	if s.PID != pid {
		return fmt.Errorf("serve.json names pid %d", s.PID)
	}
	hub, err := dir.LoadHub()
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(p.dir, "ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("ca.pem holds no certificate")
	}
	for _, port := range []string{"443", "8883"} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(p.addr, port), &tls.Config{RootCAs: pool, ServerName: p.addr})
		if err != nil {
			return err
		}
		c.Close()
	}
	p.host, p.pool = hub.HostName, pool
	p.policies = map[string]sas.Policy{}
	for _, pol := range hub.Policies {
		p.policies[pol.Name] = pol
	}
	return nil
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exit:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exit := p.cmd, p.exit
	p.mu.Unlock()
	fmt.Fprintf(p.log, "### SIGKILL\n")
	cmd.Process.Signal(syscall.SIGKILL)
	<-exit
}

// term sends SIGTERM and returns how long the hub took to exit, or why it
// did not exit cleanly.
func (p *proc) term() (time.Duration, error) {
	p.mu.Lock()
	cmd, exit := p.cmd, p.exit
	p.mu.Unlock()
	fmt.Fprintf(p.log, "### SIGTERM\n")
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-exit:
	case <-time.After(exitTimeout):
		cmd.Process.Kill()
		<-exit
		return 0, fmt.Errorf("no exit within %s of SIGTERM (killed)", exitTimeout)
	}
	took := time.Since(began)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr != nil {
		return took, fmt.Errorf("exit after SIGTERM: %v", p.werr)
	}
	return took, nil
}

// --- credentials ---

// policyToken is an hour-long token of a policy for the whole hub.
func (p *proc) policyToken(name string) string {
	return p.tokenFor(p.host, name, p.policies[name].PrimaryKey, time.Hour)
}

func (p *proc) tokenFor(resource, keyName, key string, ttl time.Duration) string {
	tok, err := sas.NewToken(resource, keyName, key, time.Now().Add(ttl))
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// deviceToken is an hour-long device token signed with key.
func (p *proc) deviceToken(id, key string) string {
	return p.tokenFor(p.host+"/devices/"+url.PathEscape(id), "", key, time.Hour)
}

// --- REST ---

// rest is a REST client that sends what it is given, token included.
type rest struct {
	p  *proc
	hc *http.Client
}

func (p *proc) rest() *rest {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: p.addr}, MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	p.t.Cleanup(tr.CloseIdleConnections)
	return &rest{p: p, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// reply is a REST answer.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("reply %d is not a JSON object: %v: %.300s", r.Status, err, r.Body)
	}
	return m
}

// do sends method path (with api-version unless the path has a query) and
// body (marshalled unless []byte or string) with an Authorization header
// of token, unless token is "".
func (c *rest) do(ctx context.Context, token, method, path string, body any, hdr ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(data)
	}
	u := "https://" + c.p.addr + path
	if !strings.Contains(path, "?") {
		u += "?api-version=" + apiVersion
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: data}, err
}

// status sends a GET for a streaming route and returns its status and
// error body once the headers are in, without waiting for the stream.
func (c *rest) status(ctx context.Context, token, path string) (reply, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+c.p.addr+path+"?api-version="+apiVersion, nil)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		r.Body, err = io.ReadAll(resp.Body)
	}
	return r, err
}

// owner sends a request as iothubowner and fails the test on a transport
// error or an unexpected status.
func (c *rest) owner(t testing.TB, want int, method, path string, body any, hdr ...string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.do(ctx, c.p.policyToken("iothubowner"), method, path, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if want != 0 && r.Status != want {
		t.Fatalf("%s %s: %d %.500s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

// device is a registered device with its primary key.
type device struct {
	ID, Key string
}

// createDevice registers a device with generated keys.
func (c *rest) createDevice(t testing.TB, id string) device {
	t.Helper()
	m := c.owner(t, 200, "PUT", "/devices/"+url.PathEscape(id), map[string]any{"deviceId": id}).json(t)
	key, _ := m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	if key == "" {
		t.Fatalf("device %s has no primary key: %v", id, m)
	}
	return device{ID: id, Key: key}
}

// createModule registers a module and returns it as a device whose ID is
// "device/module" for MQTT.
func (c *rest) createModule(t testing.TB, id, mid string) device {
	t.Helper()
	m := c.owner(t, 200, "PUT", "/devices/"+url.PathEscape(id)+"/modules/"+url.PathEscape(mid), map[string]any{"deviceId": id, "moduleId": mid}).json(t)
	key, _ := m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	if key == "" {
		t.Fatalf("module %s/%s has no primary key: %v", id, mid, m)
	}
	return device{ID: id + "/" + mid, Key: key}
}

// logBuffer keeps what the hub prints.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n bytes of the log.
func (b *logBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
