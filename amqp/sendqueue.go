package amqp

import (
	"sync"

	"github.com/twinhub/twinhub/internal/ondemand"
)

// sendQueue is a queue of what a link has to carry out in order: what the
// hub hands it from its own goroutines (method calls, desired changes), or
// the messages a client sent on it (a link's worker, worker.go). A
// goroutine that runs only while the queue has some (ondemand.Runner) takes
// them
// one at a time.
type sendQueue[T any] struct {
	max int // how many may wait; 0: no bound (the link's credit bounds them)
	// send carries out v, with waiting more behind it, on the queue's
	// goroutine; an error stops the queue.
	send func(v T, waiting int) error

	mu    sync.Mutex
	items []T
	run   ondemand.Runner
}

// newSendQueue makes a queue of at most max items (0: no bound) that
// send carries out on a goroutine counted in wg.
func newSendQueue[T any](max int, wg *sync.WaitGroup, send func(v T, waiting int) error) *sendQueue[T] {
	q := &sendQueue[T]{max: max, send: send}
	q.run.Init(wg, q.drain)
	return q
}

// add queues v to be sent, or reports false when max wait already. It
// never blocks.
func (q *sendQueue[T]) add(v T) bool {
	q.mu.Lock()
	if q.max > 0 && len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.run.Kick()
	return true
}

// drain sends what is queued, in order, until the queue is empty or a send
// fails.
func (q *sendQueue[T]) drain() {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.items = nil // let a burst's array go
			q.mu.Unlock()
			return
		}
		v := q.items[0]
		var zero T
		q.items[0] = zero
		q.items = q.items[1:]
		waiting := len(q.items)
		q.mu.Unlock()
		if err := q.send(v, waiting); err != nil {
			q.stop()
			return
		}
	}
}

// stop drops what is queued and sends nothing more.
func (q *sendQueue[T]) stop() {
	q.run.Stop()
	q.mu.Lock()
	q.items = nil
	q.mu.Unlock()
}
