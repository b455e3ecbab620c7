package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/twinhub/twinhub/certs"
)

// The bare servers of the https and tls baselines: a Go net/http server
// answering every GET with a fixed twin, and a crypto/tls server that
// only completes handshakes. A baseline's server runs as the hub runs: in
// a process of its own on this machine when the hub has one
// (--hub-process, or a hub given by --connection-string), in this process
// when the hub is in it.
//
// Why: a server in the load generator's process shares its Go runtime
// with the clients, and the two keep each other's threads busy instead of
// sleeping and waking across processes. The bare HTTPS server in this
// process answered 47,950 GETs/s at 39.2 µs of CPU a GET, client and
// server together; in a process of its own, 35,147/s at 28.1 µs for the
// client and 21.4 µs for the server (the same client, 64 at once, a
// 60-line program of two modes, not kept). A hub in its own process was
// measured against the first: a ceiling no server of another process
// reaches on the same cores.

// bareKinds are the kinds of bare server.
var bareKinds = []string{"https", "tls"}

// bareServer is a running bare server: where to dial, whom to trust, the
// server process's CPU (nil when it runs in this process: it is then in
// the generator's), and how to stop it.
type bareServer struct {
	addr  string
	roots *x509.CertPool
	usage UsageFunc
	where string
	stop  func()
}

// bareHello is what a bare server process writes first on its standard
// output: its address and the PEM of the CA of its certificate.
type bareHello struct {
	Addr  string `json:"addr"`
	CAPEM []byte `json:"ca_pem"`
}

// startBare starts a bare server of kind, in a process of its own
// (Config.BareServerCommand) unless the hub runs in this process.
func (e *env) startBare(kind string) (*bareServer, error) {
	if e.t.InProcess || len(e.cfg.BareServerCommand) == 0 {
		hello, stop, err := serveBare(kind)
		if err != nil {
			return nil, err
		}
		return &bareServer{addr: hello.Addr, roots: newPool(hello.CAPEM), where: "client and server in this process", stop: stop}, nil
	}
	args := append(append([]string{}, e.cfg.BareServerCommand[1:]...), kind)
	cmd := exec.CommandContext(e.ctx, e.cfg.BareServerCommand[0], args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the bare %s server: %w", kind, err)
	}
	// Closing its standard input ends it.
	stop := func() {
		stdin.Close()
		awaitChild(cmd)
	}
	// A server that neither says where it listens nor exits is killed,
	// which ends the read.
	hung := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	var hello bareHello
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	hung.Stop()
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("the bare %s server did not say where it listens: %v; it said: %s", kind, err, stderr.String())
	}
	return &bareServer{addr: hello.Addr, roots: newPool(hello.CAPEM), usage: PIDUsage(cmd.Process.Pid, ""),
		where: "server in a process of its own, as the hub", stop: stop}, nil
}

// RunBareServer runs a bare server of kind for `twinhub
// bench-bare-server`: it writes a bareHello line to stdout, then serves
// until stdin ends.
func RunBareServer(kind string, stdin io.Reader, stdout io.Writer) error {
	hello, stop, err := serveBare(kind)
	if err != nil {
		return err
	}
	defer stop()
	line, err := json.Marshal(hello)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(append(line, '\n')); err != nil {
		return err
	}
	io.Copy(io.Discard, stdin)
	return nil
}

// serveBare serves a bare server of kind on a loopback port with a
// certificate of a CA of its own, like the hub's (ECDSA P-256, from
// certs), until stop.
func serveBare(kind string) (hello bareHello, stop func(), err error) {
	if !slices.Contains(bareKinds, kind) {
		return hello, nil, fmt.Errorf("no bare server %q: choose from %v", kind, bareKinds)
	}
	cert, caPEM, err := bareCertificate(kind)
	if err != nil {
		return hello, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return hello, nil, err
	}
	hello = bareHello{Addr: ln.Addr().String(), CAPEM: caPEM}
	if kind == "https" {
		srv := serveBareHTTPS(ln, cert)
		return hello, func() { srv.Close() }, nil
	}
	serveBareTLS(ln, cert)
	return hello, func() { ln.Close() }, nil
}

// bareCertificate makes a CA and a server certificate for "localhost"
// in a folder that it removes at once: the server keeps them in memory,
// and a bare server killed with the bench (its context ended) leaves no
// key behind.
func bareCertificate(kind string) (cert tls.Certificate, caPEM []byte, err error) {
	dir, err := os.MkdirTemp("", "twinhub-bench-"+kind+"-")
	if err != nil {
		return cert, nil, err
	}
	defer os.RemoveAll(dir)
	if cert, err = certs.EnsureServer(dir, certs.Hosts("localhost")); err != nil {
		return cert, nil, err
	}
	caPEM, err = os.ReadFile(filepath.Join(dir, certs.CAFile))
	return cert, caPEM, err
}

// serveBareHTTPS answers every GET on ln with baselineTwin, over TLS
// (HTTP/1.1 and keep-alive, as the REST client asks), without
// authentication.
func serveBareHTTPS(ln net.Listener, cert tls.Certificate) *http.Server {
	body := []byte(baselineTwin)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	go func() {
		if err := srv.Serve(tls.NewListener(ln, conf)); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "bare https server: %v\n", err)
		}
	}()
	return srv
}

// serveBareTLS completes a TLS handshake on each connection ln accepts
// (asking for a client certificate, as the hub does), then waits for the
// client to close it, as a server would read.
func serveBareTLS(ln net.Listener, cert tls.Certificate) {
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, conf)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					var b [1]byte
					tc.Read(b[:])
				}
				c.Close()
			}()
		}
	}()
}
