package mqtt

import (
	"context"
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

	// The writer runs while there is something to write (writeLoop):
	// writing says it runs; start starts it, when a push finds none
	// running; writers counts it, so that the connection can wait for it
	// as it ends.
	writing bool
	start   func()
	writers sync.WaitGroup
	// held: pushes queue but start no writer until release (the CONNACK
	// waits for what its connection starts to be in place).
	held bool
}

// newOutQueue makes a queue of at most max bytes whose pushes start a
// writer with start (go writeLoop) when none runs.
func newOutQueue(max int, start func()) *outQueue {
	return &outQueue{max: max, start: start}
}

// push appends one encoded packet, and starts the writer unless it runs
// (a running writer drains the queue before it ends).
// A packet larger than the whole bound still passes when the queue is
// empty, so that a big twin always gets out to a client that reads.
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
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.start()
	}
	return nil
}

// claimWriter reports whether a writer is to start for what is queued (none
// runs, the queue is neither held nor closed) and marks it running; mu is
// held. The writer is counted before close can come (it takes mu), so that
// waiting for the writers after close sees this one.
func (q *outQueue) claimWriter() bool {
	if q.writing || q.held || q.closed || len(q.bufs) == 0 {
		return false
	}
	q.writing = true
	q.writers.Add(1)
	return true
}

// hold has pushes queue without starting the writer until release.
func (q *outQueue) hold() {
	q.mu.Lock()
	q.held = true
	q.mu.Unlock()
}

// release starts the writer for what was pushed while held.
func (q *outQueue) release() {
	q.mu.Lock()
	q.held = false
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.start()
	}
}

// drain moves everything queued into dst (reused) and empties the queue.
// With nothing queued, the writer that drains is done: the next push
// starts another.
func (q *outQueue) drain(dst [][]byte) [][]byte {
	q.mu.Lock()
	if len(q.bufs) == 0 {
		q.writing = false
	}
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

// maxTelemetryInFlight bounds the messages of one connection that are
// being stored at once; the connection reads no further packet while
// that many wait. (The Azure SDKs keep fewer outstanding.)
const maxTelemetryInFlight = 16

// inFlight is a connection's window of telemetry messages being stored:
// a ring, in the order received, of what their PUBACKs need.
type inFlight struct {
	mu         sync.Mutex
	head, tail uint64 // messages head..tail-1 are in the ring
	ring       [maxTelemetryInFlight]inFlightMsg
	space      chan struct{} // signalled when messages leave the ring
}

type inFlightMsg struct {
	packetID uint16
	qos      byte
	done     bool
	err      error
}

// reserve places a message in the window, waiting while it is full, and
// returns its number.
func (w *inFlight) reserve(ctx context.Context, packetID uint16, qos byte) (uint64, error) {
	w.mu.Lock()
	for w.tail-w.head >= maxTelemetryInFlight {
		w.mu.Unlock()
		select {
		case <-w.space:
		case <-ctx.Done():
			return 0, errClosed
		}
		w.mu.Lock()
	}
	n := w.tail
	w.tail++
	w.ring[n%maxTelemetryInFlight] = inFlightMsg{packetID: packetID, qos: qos}
	w.mu.Unlock()
	return n, nil
}

// complete records the outcome of message n. It returns the PUBACKs of
// the messages now done at the head of the window, in order, and the
// error of the first that failed (the messages after it get no PUBACK:
// the connection closes).
func (w *inFlight) complete(n uint64, err error) (acks []byte, failed error) {
	w.mu.Lock()
	if n < w.head || n >= w.tail {
		w.mu.Unlock()
		return nil, nil
	}
	m := &w.ring[n%maxTelemetryInFlight]
	m.done, m.err = true, err
	freed := false
	for w.head < w.tail {
		m := &w.ring[w.head%maxTelemetryInFlight]
		if !m.done {
			break
		}
		if m.err != nil {
			failed = m.err
			break
		}
		if m.qos > 0 {
			acks = append(acks, pubackByte, 2, byte(m.packetID>>8), byte(m.packetID))
		}
		*m = inFlightMsg{}
		w.head++
		freed = true
	}
	w.mu.Unlock()
	if freed {
		select {
		case w.space <- struct{}{}:
		default:
		}
	}
	return acks, failed
}

// pubackByte is the first byte of a PUBACK (type 4, no flags).
const pubackByte = 4 << 4
