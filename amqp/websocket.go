package amqp

import (
	"crypto/x509"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/websocket"

	"github.com/twinhub/twinhub/internal/wsstream"
)

// AMQP over WebSocket on the HTTPS port, as IoT Hub serves it: the Event
// Hubs SDKs open /$servicebus/websocket, the device SDKs' AmqpWs
// /$iothub/websocket (which MQTT over WebSocket shares: the subprotocol
// tells them apart). The WebSocket carries the same byte stream as TLS
// on 5671, SASL and all.
const (
	WebSocketSubprotocol    = "AMQPWSB10"
	ServiceBusWebSocketPath = "/$servicebus/websocket"
	IoTHubWebSocketPath     = "/$iothub/websocket"
)

// upgrader upgrades AMQP WebSocket requests. Clients are not browsers:
// an Origin header means nothing here.
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 30 * time.Second,
	ReadBufferSize:   16 << 10,
	WriteBufferSize:  16 << 10,
	Subprotocols:     []string{WebSocketSubprotocol},
	CheckOrigin:      func(*http.Request) bool { return true },
}

// IsWebSocket reports whether r asks for AMQP over WebSocket.
func IsWebSocket(r *http.Request) bool {
	switch r.URL.Path {
	case ServiceBusWebSocketPath:
		return true
	case IoTHubWebSocketPath:
		return slices.Contains(websocket.Subprotocols(r), WebSocketSubprotocol)
	}
	return false
}

// ServeHTTP upgrades a request to a WebSocket carrying AMQP, and serves
// it as a connection to 5671.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade has answered with an HTTP error already.
		s.log.Debug("amqp websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// A message holds a frame or a few: bound it by the frames the hub
	// takes.
	ws.SetReadLimit(4 * int64(s.opts.MaxFrameSize))
	nc := wsstream.New(ws)
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	nc.SetDeadline(deadline)
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	s.ServeConn(nc, certs, deadline)
}

// Handler routes AMQP WebSocket requests to the endpoint and everything
// else to next (MQTT over WebSocket, the REST API), so that all share
// the HTTPS listener as on IoT Hub.
func (s *Server) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsWebSocket(r) {
			s.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
