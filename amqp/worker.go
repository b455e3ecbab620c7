package amqp

import "github.com/twinhub/twinhub/amqp/wire"

// A link whose messages take long to handle (a C2D send waits for
// JetStream) hands them to a worker of its own, so that the connection's
// reader goes on with the other links: messages of one link are handled
// in order, one at a time, links in parallel. The worker settles each
// delivery once its outcome is known, and renews the link's credit as it
// finishes messages rather than as they arrive, so that what waits for
// it never exceeds the credit.

// queued is a message waiting for the link's worker, with its delivery.
type queued struct {
	m         wire.Message
	decodeErr error
	id        uint32
	unsettled bool
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
// (called without the connection's lock), in order, on a queue whose
// goroutine runs only while it has messages: an idle link holds none.
// The worker stops when the link goes.
func (c *conn) startWorker(l *link, handle handler) {
	w := newSendQueue(0, &c.senders, func(q queued, waiting int) error {
		if q.decodeErr != nil {
			return c.finished(l, q, decodeRejected(q.decodeErr), waiting, nil)
		}
		outcome, then := handle(q.m)
		return c.finished(l, q, outcome, waiting, then)
	})
	l.stop = w.stop
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
	err := c.settleHandled(l, q.id, q.unsettled, outcome, waiting)
	if err == nil && then != nil {
		then()
	}
	if ferr := c.uncork(); err == nil {
		err = ferr
	}
	return err
}

// settleHandled writes the disposition of a handled delivery (when it
// is unsettled) and, when the client has used half of the credit it may
// have with waiting messages not settled yet, the link's new credit.
// Called with mu held.
func (c *conn) settleHandled(l *link, id uint32, unsettled bool, outcome wire.Described, waiting int) error {
	if unsettled {
		if err := c.sendSettled(l.s.channel, id, outcome); err != nil {
			return err
		}
	}
	if int(l.credit)+waiting <= linkCredit/2 {
		l.credit = uint32(linkCredit - waiting)
		return c.flow(l)
	}
	return nil
}
