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

// linkWork is the queue of a link's worker. The worker's goroutine runs
// only while the queue has messages (onDemand): an idle link holds none.
type linkWork struct {
	c      *conn
	l      *link
	ctx    context.Context
	handle handler
	run    onDemand

	mu    sync.Mutex
	queue []queued
}

// queued is a message waiting for the worker, with its delivery.
type queued struct {
	m         wire.Message
	decodeErr error
	id        uint32
	unsettled bool
}

// push queues a message for the worker.
func (w *linkWork) push(q queued) {
	w.mu.Lock()
	w.queue = append(w.queue, q)
	w.mu.Unlock()
	w.run.kick(&w.c.senders, w.drain)
}

// pop takes the next message and says how many wait behind it.
func (w *linkWork) pop() (q queued, waiting int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 || w.ctx.Err() != nil {
		return queued{}, 0, false
	}
	q = w.queue[0]
	w.queue[0] = queued{}
	w.queue = w.queue[1:]
	if len(w.queue) == 0 {
		w.queue = nil // let a burst's array go
	}
	return q, len(w.queue), true
}

// drain handles the queued messages in order until the queue is empty or
// the link goes.
func (w *linkWork) drain() {
	for {
		q, waiting, ok := w.pop()
		if !ok {
			return
		}
		var outcome wire.Described
		var then func()
		if q.decodeErr != nil {
			outcome = decodeRejected(q.decodeErr)
		} else {
			outcome, then = w.handle(q.m)
		}
		if err := w.c.finished(w.l, q, outcome, waiting, then); err != nil {
			w.run.stop()
			w.mu.Lock()
			w.queue = nil
			w.mu.Unlock()
			return
		}
	}
}

// decodeRejected is the outcome of a message that does not decode.
func decodeRejected(err error) wire.Described {
	return wire.State(wire.CodeRejected, (&wire.Error{Condition: condDecodeError, Description: err.Error()}).Field())
}

// handler carries out one message of a link, without the connection's
// lock, and says how its delivery ends; then, when not nil, sends what
// the message calls for (a request's answer) with the lock held, in the
// same write as the delivery's settlement.
type handler func(m wire.Message) (outcome wire.Described, then func())

// startWorker gives l a worker that handles its messages with handle
// (called without the connection's lock), until the link goes.
func (c *conn) startWorker(l *link, handle handler) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &linkWork{c: c, l: l, ctx: ctx, handle: handle}
	l.stop = func() {
		w.run.stop()
		cancel()
	}
	l.work = w
}

// finished settles a delivery the worker handled, sends what the
// handler left to send (then), and renews the link's credit when the
// client has used half of what it may have waiting: all in one write.
func (c *conn) finished(l *link, q queued, outcome wire.Described, waiting int, then func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.gone {
		return errLinkGone
	}
	c.cork()
	err := c.settleHandled(l, q, outcome, waiting)
	if err == nil && then != nil {
		then()
	}
	if ferr := c.uncork(); err == nil {
		err = ferr
	}
	return err
}

// settleHandled writes a handled delivery's disposition and, when due,
// the link's new credit. Called with mu held.
func (c *conn) settleHandled(l *link, q queued, outcome wire.Described, waiting int) error {
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
