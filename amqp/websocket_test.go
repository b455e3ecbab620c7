package amqp_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
	"github.com/gorilla/websocket"

	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/wsstream"
	"github.com/twinhub/twinhub/sas"
)

// TestWebSocket: AMQP over WebSocket on the HTTPS port, subprotocol
// AMQPWSB10: on /$servicebus/websocket, and on /$iothub/websocket when
// the client asks for AMQPWSB10 (MQTT's subprotocol goes on to the next
// handler). go-amqp runs over the WebSocket as over TLS: CBS, then
// $management.
func TestWebSocket(t *testing.T) {
	e := newEndpointWith(t, amqp.Options{}, hubtest.WithMessaging())
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "next", http.StatusTeapot) })
	ts := httptest.NewUnstartedServer(e.srv.Handler(next))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{e.cert}}
	ts.StartTLS()
	defer ts.Close()
	wsURL := "wss" + strings.TrimPrefix(ts.URL, "https")
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}, HandshakeTimeout: 10 * time.Second}

	for _, path := range []string{amqp.ServiceBusWebSocketPath, amqp.IoTHubWebSocketPath} {
		ws, resp, err := dialer.Dial(wsURL+path, http.Header{"Sec-WebSocket-Protocol": {amqp.WebSocketSubprotocol}})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != amqp.WebSocketSubprotocol {
			t.Errorf("%s: subprotocol %q", path, got)
		}
		conn, err := goamqp.NewConn(wsstream.New(ws), &goamqp.ConnOptions{SASLType: goamqp.SASLTypeAnonymous(), HostName: e.hub.Host()})
		if err != nil {
			t.Fatalf("%s: AMQP over the WebSocket: %v", path, err)
		}
		s, err := conn.NewSession(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		entity := e.hub.EventHubName()
		p := e.hub.Policy("service")
		audience := "sb://" + e.hub.Host() + "/" + entity
		tok, err := sas.NewToken(audience, p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if code, desc := putToken(t, s, "servicebus.windows.net:sastoken", audience, tok, "ws"); code != 200 {
			t.Fatalf("%s: put-token %d %s", path, code, desc)
		}
		if code, body := management(t, s, map[string]any{"operation": "READ", "name": entity, "type": "com.microsoft:eventhub"}); code != 200 || body["name"] != entity {
			t.Errorf("%s: READ %d %#v", path, code, body)
		}
		conn.Close()
	}
	// MQTT's WebSocket, and a plain request, are the next handler's.
	if _, resp, err := dialer.Dial(wsURL+amqp.IoTHubWebSocketPath, http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}); err == nil || resp == nil || resp.StatusCode != http.StatusTeapot {
		t.Errorf("mqtt subprotocol on %s: %v %v", amqp.IoTHubWebSocketPath, resp, err)
	}
}
