// Package wsstream presents a WebSocket as the byte stream that MQTT and
// AMQP run on when a client tunnels them through the HTTPS port
// (/$iothub/websocket, /$servicebus/websocket), so that the front ends
// serve a WebSocket as they serve a TLS connection.
package wsstream

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextFrame is the error of a text message: both protocols are binary
// over WebSocket (MQTT 3.1.1 section 6; AMQP WebSocket binding, section 2).
var ErrTextFrame = errors.New("a text WebSocket message (the protocol runs on binary messages)")

// Conn reads binary messages back to back (a packet or frame may span
// messages, or a message hold several), and writes each Write as one
// binary message.
type Conn struct {
	ws *websocket.Conn
	r  io.Reader
}

var _ net.Conn = (*Conn)(nil)

// New wraps an upgraded WebSocket.
func New(ws *websocket.Conn) *Conn { return &Conn{ws: ws} }

func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, ErrTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the network connection (gorilla sends no close frame).
func (c *Conn) Close() error                       { return c.ws.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
