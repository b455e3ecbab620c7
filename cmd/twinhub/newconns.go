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
	conns map[net.Conn]time.Time // accepted at
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
		n.conns = map[net.Conn]time.Time{}
	}
	n.conns[c] = time.Now()
}

// closeOlder closes the connections that are still new and were accepted
// more than age ago, and returns how many it closed.
func (n *newConns) closeOlder(age time.Duration) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	closed := 0
	for c, at := range n.conns {
		if time.Since(at) > age {
			c.Close()
			delete(n.conns, c)
			closed++
		}
	}
	return closed
}

// newConnGrace is how long a shutdown lets a new connection begin its
// first request before it closes the connection (Go's own wait is 5 s).
const newConnGrace = time.Second
