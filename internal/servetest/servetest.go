// Package servetest runs the real twinhub binary, `twinhub serve`, as a
// child process on a loopback address, for the suites that must see the
// hub exactly as its users do: through its listeners, its TLS certificate,
// its data folder and its CLI (interop/goiothub, interop/reliability).
//
// A hub takes the ports IoT Hub uses (HTTPS on ADDR:443, MQTT on
// ADDR:8883) and its address as its HostName, so each test owns one
// loopback address and the tests need root or CAP_NET_BIND_SERVICE.
package servetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinhub/twinhub/datadir"
	"github.com/twinhub/twinhub/sas"
)

const (
	// readyTimeout bounds how long a hub may take to serve TLS on both
	// listeners; a replay of many twins takes a while.
	readyTimeout = 90 * time.Second
	// stopTimeout bounds how long a hub may take to exit after SIGTERM.
	stopTimeout = 30 * time.Second
	// cliTimeout bounds one CLI run, so that a hung hub fails the test
	// with its output rather than hitting go test's timeout.
	cliTimeout = 3 * time.Minute
	// logTail is how much of a hub's output a failing test prints.
	logTail = 64 << 10
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Main runs the tests and then removes the binary built for them; call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Binary is cmd/twinhub, built once per test binary, or the binary that
// $TWINHUB_BIN names by its absolute path (interop/node takes the same
// variable): one built with -race, say, whose detector then watches the
// hub under the real clients.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("TWINHUB_BIN"); bin != "" {
			if !filepath.IsAbs(bin) {
				buildErr = fmt.Errorf("TWINHUB_BIN=%s: give the binary's absolute path (each test package runs in its own folder)", bin)
			} else if _, err := os.Stat(bin); err != nil {
				buildErr = fmt.Errorf("TWINHUB_BIN: %w", err)
			}
			binPath = bin
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "twinhub-servetest-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "twinhub")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/twinhub/twinhub/cmd/twinhub").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build cmd/twinhub: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Hub is a twinhub process on one address and data folder, which a test
// may stop, kill and start again.
type Hub struct {
	// Addr is the loopback address the hub listens on and its HostName.
	Addr string
	// DataDir is the hub's data folder (a t.TempDir).
	DataDir string
	// CAFile is the hub's CA certificate (PEM) and CAPool a pool holding
	// it, known once the hub has started.
	CAFile string
	CAPool *x509.CertPool
	// HostName and Policies are the hub's identity from its hub.json.
	HostName string
	Policies map[string]sas.Policy
	// Ready is how long the last start took until both listeners served.
	Ready time.Duration

	args []string
	bin  string
	out  *Output

	mu   sync.Mutex
	proc *process // nil once the harness has stopped or killed the hub
}

// process is one run of `twinhub serve`.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done closes
}

// Start runs `twinhub serve` on addr with a fresh data folder and the
// extra flags args (e.g. "--sync-always"), and returns once the hub has
// written serve.json naming its process and both listeners complete TLS
// handshakes that verify against its CA. When the test ends the hub is
// stopped with SIGTERM; the test fails if it then exits non-zero or does
// not exit, or if it had died on its own, and a failed test prints the
// tail of the hub's output.
func Start(t testing.TB, addr string, args ...string) *Hub {
	t.Helper()
	h := &Hub{Addr: addr, DataDir: t.TempDir(), args: args, bin: Binary(t), out: &Output{}}
	h.CAFile = filepath.Join(h.DataDir, "ca.pem")
	t.Cleanup(func() {
		if _, err := h.stop(false); err != nil {
			t.Errorf("stopping twinhub on %s: %v", addr, err)
		}
		if t.Failed() {
			t.Logf("--- output of twinhub on %s ---\n%s", addr, h.out.tail(logTail))
		}
	})
	h.Start(t)
	return h
}

// Start starts the hub again, after Stop or Kill, on the same address and
// data folder.
func (h *Hub) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"serve", "--data", h.DataDir, "--hostname", h.Addr,
		"--https-addr", net.JoinHostPort(h.Addr, "443"),
		"--mqtt-addr", net.JoinHostPort(h.Addr, "8883"),
		"--amqp-addr", net.JoinHostPort(h.Addr, "5671")}, h.args...)
	cmd := exec.Command(h.bin, args...)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	// Should the test binary die without its cleanups, the hub dies too
	// instead of holding the address for the next run.
	dieWithParent(cmd)
	fmt.Fprintf(h.out, "### start: twinhub %s\n", strings.Join(args, " "))
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting twinhub: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.mu.Lock()
	h.proc = p
	h.mu.Unlock()
	if err := h.waitReady(p); err != nil {
		t.Fatalf("twinhub on %s did not become ready: %v\n%s", h.Addr, err, h.out.tail(logTail))
	}
	h.Ready = time.Since(began)
}

func (h *Hub) waitReady(p *process) error {
	var last error
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			return fmt.Errorf("the hub exited: %v", p.err)
		default:
		}
		if last = h.probe(p.cmd.Process.Pid); last == nil {
			return nil
		}
	}
	return fmt.Errorf("not ready after %s: %v", readyTimeout, last)
}

func (h *Hub) probe(pid int) error {
	dir, err := datadir.Open(h.DataDir)
	if err != nil {
		return err
	}
	s, err := dir.LoadServe()
	if err != nil {
		return err
	}
	if s.PID != pid {
		return fmt.Errorf("serve.json names pid %d, not %d", s.PID, pid)
	}
	id, err := dir.LoadHub()
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no certificate", h.CAFile)
	}
	for _, port := range []string{"443", "8883"} {
		conf := &tls.Config{RootCAs: pool, ServerName: h.Addr}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(h.Addr, port), conf)
		if err != nil {
			return err
		}
		c.Close()
	}
	h.CAPool, h.HostName = pool, id.HostName
	h.Policies = map[string]sas.Policy{}
	for _, pol := range id.Policies {
		h.Policies[pol.Name] = pol
	}
	return nil
}

// TLSConfig trusts the hub's CA and nothing else.
func (h *Hub) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: h.CAPool, ServerName: h.Addr}
}

// Stop sends SIGTERM and returns how long the hub took to exit, or why it
// did not exit cleanly (a non-zero exit, an earlier death, a hang).
func (h *Hub) Stop() (time.Duration, error) { return h.stop(false) }

// Kill sends SIGKILL and waits for the process to be gone.
func (h *Hub) Kill() { h.stop(true) }

// Restart stops the hub with SIGTERM, failing the test unless it exits
// cleanly, and starts it again.
func (h *Hub) Restart(t testing.TB) {
	t.Helper()
	if _, err := h.Stop(); err != nil {
		t.Fatalf("stopping twinhub on %s: %v\n%s", h.Addr, err, h.out.tail(logTail))
	}
	h.Start(t)
}

func (h *Hub) stop(kill bool) (time.Duration, error) {
	h.mu.Lock()
	p := h.proc
	h.proc = nil
	h.mu.Unlock()
	if p == nil {
		return 0, nil
	}
	select {
	case <-p.done:
		return 0, fmt.Errorf("the hub had exited before the harness stopped it: %v", exitDescription(p.err))
	default:
	}
	sig, name := syscall.SIGTERM, "SIGTERM"
	if kill {
		sig, name = syscall.SIGKILL, "SIGKILL"
	}
	fmt.Fprintf(h.out, "### %s\n", name)
	began := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		return 0, fmt.Errorf("sending %s: %v", name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return 0, fmt.Errorf("the hub did not exit within %s of %s (killed)", stopTimeout, name)
	}
	took := time.Since(began)
	if p.err != nil && !kill {
		return took, fmt.Errorf("the hub exited after SIGTERM with %v", exitDescription(p.err))
	}
	return took, nil
}

func exitDescription(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Output is everything the hub has printed so far, with the harness's
// start and signal lines (### ...) between its runs.
func (h *Hub) Output() string { return h.out.String() }

// Command is `twinhub --data DIR args...`, the CLI on this hub's data
// folder, not yet started.
func (h *Hub) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, h.bin, append([]string{"--data", h.DataDir}, args...)...)
}

// RunCLI runs `twinhub --data DIR args...` and returns what it printed
// and its exit error (an *exec.ExitError for a non-zero status).
func (h *Hub) RunCLI(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := h.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// CLI is RunCLI's standard output; the test fails (and stops) if the CLI
// exits non-zero.
func (h *Hub) CLI(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, err := h.RunCLI(args...)
	if err != nil {
		t.Fatalf("twinhub %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// Output collects a process's output from two pipes (stdout and stderr
// may write at once); the zero value is ready.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Output) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Output) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n bytes of the output.
func (b *Output) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// EnvCount is the number in the environment variable name, or def when it
// is unset: how long tests that run short in CI run locally. A value
// outside lo..hi fails the test.
func EnvCount(t testing.TB, name string, def, lo, hi int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		t.Fatalf("%s=%q: want %d to %d", name, s, lo, hi)
	}
	return n
}
