package amqp

import (
	"context"
	"sync"

	"github.com/twinhub/twinhub/amqp/wire"
)

// A link whose messages take long to handle (a C2D send waits for
// JetStream) hands them to a worker of its own, so that the connection's
// reader goes on with the other links: messages of one link are handled
// in order, one at a time, links in parallel. The worker settles each
// delivery once its outcome is known, and renews the link's credit as it
// finishes messages rather than as they arrive, so that what waits for
// it never exceeds the credit.

// linkWork is the queue of a link's worker.
type linkWork struct {
	mu     sync.Mutex
	queue  []queued
	wake   chan struct{} // a token when the queue may have grown
	handle func(m wire.Message) wire.Described
}

// queued is a message waiting for the worker, with its delivery.
type queued struct {
	m         wire.Message
	decodeErr error
	id        uint32
	unsettled bool
}

func (w *linkWork) push(q queued) {
	w.mu.Lock()
	w.queue = append(w.queue, q)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pop takes the next message and says how many wait behind it.
func (w *linkWork) pop() (q queued, waiting int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return queued{}, 0, false
	}
	q = w.queue[0]
	w.queue[0] = queued{}
	w.queue = w.queue[1:]
	return q, len(w.queue), true
}

// decodeRejected is the outcome of a message that does not decode.
func decodeRejected(err error) wire.Described {
	return wire.State(wire.CodeRejected, (&wire.Error{Condition: condDecodeError, Description: err.Error()}).Field())
}

// startWorker gives l a worker that handles its messages with handle
// (called without the connection's lock), until the link goes.
func (c *conn) startWorker(l *link, handle func(m wire.Message) wire.Described) {
	w := &linkWork{wake: make(chan struct{}, 1), handle: handle}
	l.work = w
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	c.senders.Add(1)
	go func() {
		defer c.senders.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			}
			for ctx.Err() == nil {
				q, waiting, ok := w.pop()
				if !ok {
					break
				}
				var outcome wire.Described
				if q.decodeErr != nil {
					outcome = decodeRejected(q.decodeErr)
				} else {
					outcome = w.handle(q.m)
				}
				if err := c.finished(l, q, outcome, waiting); err != nil {
					return
				}
			}
		}
	}()
}

// finished settles a delivery the worker handled and renews the link's
// credit when the client has used half of what it may have waiting.
func (c *conn) finished(l *link, q queued, outcome wire.Described, waiting int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.gone {
		return errLinkGone
	}
	if q.unsettled {
		d := wire.Disposition{Role: wire.RoleReceiver, First: q.id, Settled: true, State: outcome}
		if err := c.send(l.s.channel, wire.CodeDisposition, d.List(), nil); err != nil {
			return err
		}
	}
	if int(l.credit)+waiting <= linkCredit/2 {
		l.credit = uint32(linkCredit - waiting)
		return c.flow(l)
	}
	return nil
}
