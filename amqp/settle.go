package amqp

import "github.com/twinhub/twinhub/amqp/wire"

// Links whose messages the hub stores asynchronously (device telemetry,
// appended to JetStream without waiting) are settled as their outcomes
// come, from whichever goroutine brings them (the hub's append
// acknowledgements): the outcome is queued on the connection, and a
// goroutine that runs only while the queue has outcomes (ondemand.Runner)
// writes their dispositions, and the credit they free, in one write. The
// reader never waits for the store, and no goroutine sits between a
// message and its store, as over MQTT (its PUBACKs).

// settlement is the outcome of a delivery the hub received.
type settlement struct {
	l         *link
	id        uint32
	unsettled bool
	outcome   wire.Described
}

// settleWith settles st with outcome (settleLater).
func (c *conn) settleWith(st settlement, outcome wire.Described) {
	st.outcome = outcome
	c.settleLater(st)
}

// settleLater queues st to be written. It never blocks: it is called by
// the hub's callbacks, and with mu held when an outcome is known at once.
func (c *conn) settleLater(st settlement) {
	c.settleMu.Lock()
	if c.settleClosed {
		c.settleMu.Unlock()
		return // the connection ended: its links and deliveries are gone
	}
	c.settles = append(c.settles, st)
	c.settleMu.Unlock()
	c.settler.Kick()
}

// settleQueued writes the queued settlements until there are none, each
// batch in one write (corked): the disposition of each unsettled delivery,
// and the credit it frees once the client has used half of what it may
// have outstanding.
func (c *conn) settleQueued() {
	for {
		c.settleMu.Lock()
		batch := c.settles
		c.settles, c.settleSpare = c.settleSpare, nil
		closed := c.settleClosed
		c.settleMu.Unlock()
		if len(batch) == 0 || closed {
			return
		}
		var err error
		c.mu.Lock()
		c.cork()
		for _, st := range batch {
			l := st.l
			if l.gone {
				continue
			}
			l.storing--
			if err = c.settleHandled(l, st.id, st.unsettled, st.outcome, int(l.storing)); err != nil {
				break
			}
		}
		if ferr := c.uncork(); err == nil {
			err = ferr
		}
		c.mu.Unlock()
		// The batch's slice takes the next settlements (one goroutine
		// settles at a time: ondemand.Runner).
		clear(batch)
		c.settleMu.Lock()
		if !c.settleClosed && cap(batch) <= 1024 {
			c.settleSpare = batch[:0]
		}
		c.settleMu.Unlock()
		if err != nil {
			c.stopSettling()
			return
		}
	}
}

// stopSettling drops what is queued and settles nothing more, when the
// connection ends.
func (c *conn) stopSettling() {
	c.settler.Stop()
	c.settleMu.Lock()
	c.settleClosed, c.settles = true, nil
	c.settleMu.Unlock()
}
