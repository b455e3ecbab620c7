package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub/certs"
	tjs "github.com/twinhub/twinhub/jetstream"
)

// kvBaseline measures raw JetStream KV on an embedded server in this
// process, configured as twinhub's store (file storage, history 1), with
// 700-byte values and the scenarios' concurrency: put, and get followed by
// compare-and-set (what a twin update costs the backbone at least).
func (e *env) kvBaseline() error {
	dir, err := os.MkdirTemp("", "twinhub-bench-kv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := tjs.StartEmbedded(tjs.EmbeddedOptions{Dir: dir})
	if err != nil {
		return err
	}
	defer srv.Close()
	js, err := jetstream.New(srv.Conn)
	if err != nil {
		return err
	}
	kv, err := js.CreateKeyValue(e.ctx, jetstream.KeyValueConfig{Bucket: "bench", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	value := make([]byte, 700)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	const keysPerWorker = 16
	n := e.cfg.Clients
	key := func(w, i int) string { return fmt.Sprintf("k.%d.%d", w, i) }
	for w := range n {
		for i := range keysPerWorker {
			if _, err := kv.Put(e.ctx, key(w, i), value); err != nil {
				return err
			}
		}
	}
	var seq atomic.Int64
	rec := newRecorder()
	res := e.measure("kv-put", "puts", n, rec, func() {
		e.forDuration(n, e.cfg.Duration, func(w int) {
			start := time.Now()
			_, err := kv.Put(e.ctx, key(w, int(seq.Add(1))%keysPerWorker), value)
			rec.done(start, err)
		})
	})
	res.Kind, res.Hub = "baseline", nil
	res.note("raw JetStream KV put, embedded server in this process, 700-byte values")
	rec = newRecorder()
	res = e.measure("kv-cas", "updates", n, rec, func() {
		e.forDuration(n, e.cfg.Duration, func(w int) {
			start := time.Now()
			k := key(w, int(seq.Add(1))%keysPerWorker)
			ent, err := kv.Get(e.ctx, k)
			if err == nil {
				_, err = kv.Update(e.ctx, k, value, ent.Revision())
			}
			rec.done(start, err)
		})
	})
	res.Kind, res.Hub = "baseline", nil
	res.note("raw JetStream KV get then compare-and-set (Update on the revision), no conflicts")
	return nil
}

// findMosquitto returns the mosquitto binary, or "" when not installed.
func (e *env) findMosquitto() string {
	if e.cfg.Mosquitto != "" {
		return e.cfg.Mosquitto
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// mosquittoBaseline starts Mosquitto on a loopback port with a TLS
// listener and measures the telemetry scenario's publish load against it,
// with the same paho client code. Mosquitto stores nothing.
func (e *env) mosquittoBaseline() error {
	bin := e.findMosquitto()
	if bin == "" {
		e.skip("mosquitto: not installed (Debian: apt-get install mosquitto); its baseline is not measured")
		return nil
	}
	dir, err := os.MkdirTemp("", "twinhub-bench-mosquitto-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// A certificate from the hub's CA when this process has it, else from
	// a CA made for the run.
	if e.t.CADir != "" {
		for _, f := range []string{certs.CAFile, certs.CAKeyFile} {
			data, err := os.ReadFile(filepath.Join(e.t.CADir, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
				return err
			}
		}
	}
	if _, err := certs.EnsureServer(dir, certs.Hosts("localhost")); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
max_inflight_messages 0
max_queued_messages 100000
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
`, port, filepath.Join(dir, certs.CAFile), filepath.Join(dir, certs.ServerFile), filepath.Join(dir, certs.ServerKeyFile))
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	// mosquitto drops root privileges to user "mosquitto", which must be
	// able to read the key.
	os.Chmod(dir, 0o755)
	for _, f := range []string{certs.ServerKeyFile, certs.ServerFile, certs.CAFile, "mosquitto.conf"} {
		os.Chmod(filepath.Join(dir, f), 0o644)
	}
	var stderr limitedBuffer
	cmd := exec.CommandContext(e.ctx, bin, "-c", confPath)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting mosquitto: %w", err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		awaitChild(cmd)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(addr, 10*time.Second); err != nil {
		return fmt.Errorf("mosquitto did not listen on %s: %v; it said: %s", addr, err, stderr.String())
	}
	roots := newPool(caPEM)
	o := deviceOptions{addr: addr, tls: &tls.Config{RootCAs: roots, ServerName: "localhost"}, username: "bench", password: "x", host: "localhost"}
	devs, err := e.connectDevices(e.ids("mosq", e.cfg.Clients), o)
	if err != nil {
		return fmt.Errorf("mosquitto: %w; it said: %s", err, stderr.String())
	}
	defer closeAll(devs)
	res := e.measureBaseline(PIDUsage(cmd.Process.Pid, ""), "the mosquitto process", func() *Result {
		return e.publishLoop("mosquitto", devs, func(d *device) string { return "devices/" + d.id + "/messages/events/" })
	})
	res.note("Mosquitto %s over TLS, QoS 1, same paho client code and load as telemetry; persists nothing", mosquittoVersion(bin))
	return nil
}

func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// tlsBaseline measures the handshake rate of a bare Go TLS server with the
// same kind of certificate as the hub (ECDSA P-256 from certs), TLS 1.2
// and TLS 1.3, with the connect scenario's concurrency; the server runs
// where the hub runs (startBare).
func (e *env) tlsBaseline() error {
	srv, err := e.startBare("tls")
	if err != nil {
		return err
	}
	defer srv.stop()
	for _, v := range []struct {
		name    string
		version uint16
	}{{"tls1.2", tls.VersionTLS12}, {"tls1.3", tls.VersionTLS13}} {
		conf := &tls.Config{RootCAs: srv.roots, ServerName: "localhost", MinVersion: v.version, MaxVersion: v.version}
		rec := newRecorder()
		res := e.measureBaseline(srv.usage, "the bare server's process", func() *Result {
			return e.measure("tls-handshake/"+v.name, "handshakes", e.cfg.ConnectConcurrency, rec, func() {
				e.forDuration(e.cfg.ConnectConcurrency, e.cfg.Duration, func(int) {
					start := time.Now()
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", srv.addr, conf)
					rec.done(start, err)
					if err == nil {
						c.Close()
					}
				})
			})
		})
		res.note("bare Go crypto/tls server, new TCP+TLS connection per handshake, ECDSA P-256 certificate, %s", srv.where)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
