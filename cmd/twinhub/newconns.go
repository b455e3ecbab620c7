package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// newConns keeps the HTTPS connections that have not begun a request yet
// (http.StateNew), so that a shutdown can close the ones that stay so.
//
// http.Server.Shutdown closes idle connections at once but leaves a new
// one open until 5 s after its accept, in case a slow client is still
// sending its first request. Clients' pools open connections they never
// use: Go's Transport dials one for a request that waits, then gives the
// request a connection that came free meanwhile and keeps the new one
// idle. Under load such a connection held a SIGTERM'd hub for about 4 s
// (TestGracefulShutdown: 3 of 12 shutdowns took 4.2-4.8 s, the others
// 35-50 ms; a goroutine dump showed Shutdown waiting on one connection
// reading its first request line).
type newConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// track is the server's ConnState hook.
func (n *newConns) track(c net.Conn, s http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s != http.StateNew {
		delete(n.conns, c)
		return
	}
	if n.conns == nil {
		n.conns = map[net.Conn]struct{}{}
	}
	n.conns[c] = struct{}{}
}

// closeAll closes the connections that are still new, and returns how
// many it closed. Called newConnGrace into a shutdown, after the listener
// closed, every one of them has had that long to begin a request.
func (n *newConns) closeAll() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	closed := len(n.conns)
	for c := range n.conns {
		c.Close()
	}
	clear(n.conns)
	return closed
}

// newConnGrace is how long a shutdown lets a new connection begin its
// first request before it closes the connection (Go's own wait is 5 s).
const newConnGrace = time.Second
