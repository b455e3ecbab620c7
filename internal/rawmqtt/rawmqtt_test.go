package rawmqtt

import (
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestRoundTrip: what Send writes, Read decodes; Drain returns what came
// before the peer closed, and reports a connection left open.
func TestRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	pub := packets.Packet{ProtocolVersion: 4, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", PacketID: 7, Payload: []byte("x")}
	data, err := Encode(pub)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		New(b).Send(append(data, data...))
		b.Close()
	}()
	c := New(a)
	pk, err := c.Read(5 * time.Second)
	if err != nil || pk.TopicName != "t" || pk.PacketID != 7 || string(pk.Payload) != "x" {
		t.Fatalf("read %+v, %v", pk, err)
	}
	if got, closed := c.Drain(5 * time.Second); len(got) != 1 || !closed {
		t.Errorf("drain: %d packets, closed %v; want 1, true", len(got), closed)
	}

	open, peer := net.Pipe()
	defer open.Close()
	defer peer.Close()
	if _, closed := New(open).Drain(50 * time.Millisecond); closed {
		t.Error("drain of an open, silent connection says closed")
	}
	if _, err := Encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}); err == nil {
		t.Error("encoded a packet only the hub sends")
	}
}
