package mqtt

import (
	"errors"
	"sync"
)

var errQueueFull = errors.New("outbound queue full: the client does not read")

// outQueue holds encoded packets waiting for a connection's writer. It is
// bounded in bytes: a client that stops reading fills it, and the
// connection is then closed instead of holding memory or blocking the
// goroutine that produced the packet (a request handler, or the hub's
// delivery of desired-property changes).
type outQueue struct {
	mu     sync.Mutex
	bufs   [][]byte
	size   int
	max    int
	closed bool
	wake   chan struct{}
}

func newOutQueue(max int) *outQueue {
	return &outQueue{max: max, wake: make(chan struct{}, 1)}
}

// push appends one encoded packet. A packet larger than the whole bound
// still passes when the queue is empty, so that a big twin always gets
// out to a client that reads.
func (q *outQueue) push(b []byte) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed
	}
	if q.size > 0 && q.size+len(b) > q.max {
		q.mu.Unlock()
		return errQueueFull
	}
	q.bufs = append(q.bufs, b)
	q.size += len(b)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// drain moves everything queued into dst (reused) and empties the queue.
func (q *outQueue) drain(dst [][]byte) [][]byte {
	q.mu.Lock()
	dst = append(dst[:0], q.bufs...)
	clear(q.bufs)
	q.bufs = q.bufs[:0]
	q.size = 0
	q.mu.Unlock()
	return dst
}

func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	clear(q.bufs)
	q.bufs, q.size = nil, 0
	q.mu.Unlock()
}
