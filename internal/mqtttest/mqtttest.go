// Package mqtttest serves a test hub's device endpoint the way `twinhub
// serve` does, but in the test's own process: MQTT over TLS on one
// loopback port and HTTPS on another (MQTT over WebSocket, and the REST
// API when the test passes it), with a server certificate from a fresh CA.
// Tests of the mqtt package and the in-process benchmark target use it;
// tests of the real binary use internal/servetest.
//
// It is its own package, not part of hubtest, because it imports package
// mqtt: the mqtt package's internal tests could not import hubtest then.
package mqtttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/testcerts"
	"github.com/twinhub/twinhub/mqtt"
)

// Options change what Serve serves.
type Options struct {
	// MQTT configures the MQTT server. A nil MQTT.Log logs to
	// slog.Default, as mqtt.New does.
	MQTT mqtt.Options
	// HTTP serves the HTTPS requests that are not MQTT over WebSocket,
	// e.g. httpapi.New; nil answers them 404.
	HTTP http.Handler
}

// Server is a hub's device endpoint on loopback. It stops when the test
// ends.
type Server struct {
	// MQTT is the server of both transports.
	MQTT *mqtt.Server
	// MQTTAddr is the host:port of MQTT over TLS.
	MQTTAddr string
	// HTTPSAddr is the host:port of HTTPS; MQTT over WebSocket is at
	// mqtt.WebSocketPath on it (see WebSocketURL).
	HTTPSAddr string
	// CADir holds the CA (certs.CAFile) and its key, which issued the
	// server certificate for the hub's host name.
	CADir string
	// RootCAs holds that CA, for clients.
	RootCAs *x509.CertPool
	// TLSConfig is the servers' TLS configuration, for a test that serves
	// another listener (AMQP) with the same certificate.
	TLSConfig *tls.Config
}

// Serve serves h's devices (and opts.HTTP) until the test ends. The
// certificate is for h.Host(), so clients must use that server name.
func Serve(t testing.TB, h *hub.Hub, opts Options) *Server {
	t.Helper()
	cert, roots, dir := testcerts.HubServer(t, h.Host())
	// As in `twinhub serve`: a client certificate is requested but not
	// required, since X.509 devices present one and SAS devices do not.
	tlsConf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
		ClientAuth:   tls.RequestClientCert,
	}
	devices, err := mqtt.New(h, opts.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	mqttLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		mqttLn.Close()
		t.Fatal(err)
	}
	next := opts.HTTP
	if next == nil {
		next = http.NotFoundHandler()
	}
	log := opts.MQTT.Log
	if log == nil {
		log = slog.Default()
	}
	// TLS handshake errors, e.g. of a test's untrusted client, are for
	// debugging, not the test output.
	hs := &http.Server{Handler: devices.Handler(next), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go devices.Serve(mqttLn, mqtt.TLSConfig(tlsConf))
	go hs.Serve(tls.NewListener(httpsLn, tlsConf))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		devices.Close(ctx)
		hs.Shutdown(ctx)
	})
	return &Server{
		MQTT: devices, MQTTAddr: mqttLn.Addr().String(), HTTPSAddr: httpsLn.Addr().String(),
		CADir: dir, RootCAs: roots, TLSConfig: tlsConf,
	}
}

// WebSocketURL is the wss:// URL of MQTT over WebSocket.
func (s *Server) WebSocketURL() string { return "wss://" + s.HTTPSAddr + mqtt.WebSocketPath }
