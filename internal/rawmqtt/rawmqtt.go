// Package rawmqtt speaks MQTT 3.1.1 packet by packet on a bare
// connection, for tests that send what a well-behaved client never would
// (a bad CONNECT, a forbidden topic, a packet over the limit, silence)
// and must see exactly which packets the hub answers with, or that it
// closes the connection. A client library hides both. The codec is the
// `packets` package of mochi-mqtt, the one the hub itself uses.
package rawmqtt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// WriteTimeout bounds each Send, so that a hub that stopped reading fails
// the test instead of hanging it.
const WriteTimeout = 10 * time.Second

// Conn reads and writes MQTT packets on a connection. It does not close
// the connection; its owner does.
type Conn struct {
	nc net.Conn
	br *bufio.Reader
}

// New reads and writes packets on nc, typically a *tls.Conn to the hub.
func New(nc net.Conn) *Conn { return &Conn{nc: nc, br: bufio.NewReader(nc)} }

// Send writes b, one or more encoded packets or deliberately broken
// bytes, within WriteTimeout.
func (c *Conn) Send(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
	_, err := c.nc.Write(b)
	return err
}

// Read returns the next packet within timeout, decoded if it is one the
// hub sends a device (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK; others
// come with only their fixed header). The error is io.EOF or a reset once
// the hub closed the connection, and a net.Error with Timeout() when
// nothing came.
func (c *Conn) Read(timeout time.Duration) (packets.Packet, error) {
	var pk packets.Packet
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	b, err := c.br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.br)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = 4
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	}
	return pk, err
}

// Drain reads until the hub closes the connection or timeout passes, and
// returns the packets read before; closed is false when the connection
// was still open at the end. A read error other than a timeout counts as
// the close: after it nothing more can be read.
func (c *Conn) Drain(timeout time.Duration) (got []packets.Packet, closed bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		pk, err := c.Read(time.Until(deadline))
		if err != nil {
			var ne net.Error
			return got, !errors.As(err, &ne) || !ne.Timeout()
		}
		got = append(got, pk)
	}
	return got, false
}

// Encode returns the bytes of a packet a device sends, at the protocol
// level of pk.ProtocolVersion (the caller sets it: a test of MQTT 5
// refusals encodes at 5).
func Encode(pk packets.Packet) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	default:
		err = fmt.Errorf("rawmqtt: no encoder for packet type %d", pk.FixedHeader.Type)
	}
	return buf.Bytes(), err
}

// Connect is an MQTT 3.1.1 CONNECT with a clean session; the user name and password
// flags are set when they are not empty, as a client sets them.
func Connect(clientID, user, password string, keepAlive uint16) packets.Packet {
	return packets.Packet{
		ProtocolVersion: 4,
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Keepalive: keepAlive, Clean: true,
			Username: []byte(user), UsernameFlag: user != "",
			Password: []byte(password), PasswordFlag: password != "",
		},
	}
}
