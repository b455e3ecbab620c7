package reliability

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestBadInputWebSocket: MQTT over WebSocket (wss://host/$iothub/websocket)
// refuses what a WebSocket can add to MQTT's own bad input: text frames,
// messages far over the packet limit, garbage in a binary frame, and a
// handshake without the mqtt subprotocol still only speaks MQTT. A
// sentinel is served throughout.
func TestBadInputWebSocket(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.69")
	c := p.rest()
	d := c.createDevice(t, "ws-victim")
	s := startSentinel(t, p, c)
	tok := p.deviceToken(d.ID, d.Key)
	connect := packetBytes(connectPacket(d.ID, p.username(d.ID), tok))

	dial := func(t *testing.T) *websocket.Conn {
		t.Helper()
		dialer := websocket.Dialer{
			TLSClientConfig:  p.TLSConfig(),
			Subprotocols:     []string{"mqtt"},
			HandshakeTimeout: 10 * time.Second,
		}
		ws, resp, err := dialer.Dial("wss://"+p.Addr+"/$iothub/websocket", nil)
		if err != nil {
			t.Fatalf("WebSocket dial: %v", err)
		}
		resp.Body.Close()
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	// closed reads until the hub ends the WebSocket; it returns whether a
	// CONNACK came first.
	closed := func(t *testing.T, what string, ws *websocket.Conn) (connack bool) {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			typ, msg, err := ws.ReadMessage()
			if err != nil {
				if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
					t.Errorf("%s: the hub kept the WebSocket open", what)
				}
				return connack
			}
			if typ == websocket.BinaryMessage && len(msg) > 0 && msg[0]>>4 == packets.Connack {
				connack = true
			}
		}
	}

	// A well-formed CONNECT in a binary message works (the baseline).
	ws := dial(t)
	ws.WriteMessage(websocket.BinaryMessage, connect)
	if _, msg, err := ws.ReadMessage(); err != nil || !bytes.Equal(msg, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("CONNECT over WebSocket: %x %v, want CONNACK 0", msg, err)
	}
	ws.Close()

	cases := []struct {
		name string
		send func(ws *websocket.Conn) error
	}{
		{"CONNECT in a text frame", func(ws *websocket.Conn) error { return ws.WriteMessage(websocket.TextMessage, connect) }},
		{"garbage in a binary frame", func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, []byte{0x00, 0xff, 0xff, 0xff, 0xff})
		}},
		{"a 1 MB binary message", func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0x10}, 1<<20))
		}},
		{"nothing at all", func(ws *websocket.Conn) error { return nil }},
	}
	for _, tc := range cases {
		ws := dial(t)
		if err := tc.send(ws); err != nil {
			// The hub closed the connection while the message was being
			// written: what it should do with a message this large.
			continue
		}
		if closed(t, tc.name, ws) {
			t.Errorf("%s: the hub accepted a CONNECT", tc.name)
		}
	}

	// Without the subprotocol, or with a plain GET, no MQTT is spoken.
	r, err := c.do(t.Context(), "", "GET", "/$iothub/websocket?", nil)
	if err != nil || r.Status < 400 {
		t.Errorf("plain GET of the WebSocket path: %d %v, want an HTTP error", r.Status, err)
	}
	if r.Status == http.StatusOK {
		t.Errorf("plain GET of the WebSocket path answered 200")
	}
	t.Logf("MQTT over WebSocket: %d bad inputs closed the connection without a CONNACK; a plain GET got %d", len(cases), r.Status)
	s.stop(t)
}
