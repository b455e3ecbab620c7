package main

import (
	"net"
	"net/http"
	"testing"
)

// TestNewConnsClosesOnlyNewOnes: a shutdown closes the connections that
// began no request, not those that did or have since.
func TestNewConnsClosesOnlyNewOnes(t *testing.T) {
	var n newConns
	fresh, freshPeer := net.Pipe()
	busy, busyPeer := net.Pipe()
	idle, idlePeer := net.Pipe()
	defer freshPeer.Close()
	defer busyPeer.Close()
	defer idlePeer.Close()
	n.track(fresh, http.StateNew)
	n.track(busy, http.StateNew)
	n.track(busy, http.StateActive)
	n.track(idle, http.StateNew)
	n.track(idle, http.StateActive)
	n.track(idle, http.StateIdle)

	if closed := n.closeAll(); closed != 1 {
		t.Errorf("closed %d connections, want the new one only", closed)
	}
	if _, err := fresh.Write([]byte("x")); err == nil {
		t.Error("the connection that began no request is still open")
	}
	for _, c := range []net.Conn{busy, idle} {
		go c.Write([]byte("x"))
	}
	buf := make([]byte, 1)
	for _, peer := range []net.Conn{busyPeer, idlePeer} {
		if _, err := peer.Read(buf); err != nil {
			t.Errorf("a connection that began a request was closed: %v", err)
		}
	}
	if closed := n.closeAll(); closed != 0 {
		t.Errorf("a second shutdown pass closed %d connections", closed)
	}
}
