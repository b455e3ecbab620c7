package amqp

import "github.com/twinhub/twinhub/amqp/wire"

// Links whose messages the hub stores asynchronously (device telemetry,
// appended to JetStream without waiting) are settled as their outcomes
// come, from whichever goroutine brings them (the hub's append
// acknowledgements): the outcome is queued on the connection, and a
// goroutine that runs only while the queue has outcomes (onDemand)
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
	c.settler.kick(&c.senders, c.settleQueued)
}

// settleQueued writes the queued settlements until there are none.
func (c *conn) settleQueued() {
	var buf []byte
	for {
		c.settleMu.Lock()
		batch := c.settles
		c.settles = nil
		closed := c.settleClosed
		c.settleMu.Unlock()
		if len(batch) == 0 || closed {
			return
		}
		buf = buf[:0]
		var err error
		c.mu.Lock()
		for _, st := range batch {
			if buf, err = c.appendSettlement(buf, st); err != nil {
				break
			}
		}
		if err == nil && len(buf) > 0 {
			err = c.write(buf)
		}
		c.mu.Unlock()
		if err != nil {
			c.stopSettling()
			return
		}
	}
}

// appendSettlement appends the frames of st to buf: the disposition of an
// unsettled delivery, and a flow that renews the link's credit once the
// client has used half of what it may have outstanding. Called with mu
// held.
func (c *conn) appendSettlement(buf []byte, st settlement) ([]byte, error) {
	l := st.l
	if l.gone {
		return buf, nil
	}
	l.storing--
	var err error
	if st.unsettled {
		d := wire.Disposition{Role: wire.RoleReceiver, First: st.id, Settled: true, State: st.outcome}
		if buf, err = c.appendFrame(buf, l.s.channel, wire.CodeDisposition, d.List()); err != nil {
			return buf, err
		}
	}
	if int(l.credit)+l.storing <= linkCredit/2 {
		l.credit = uint32(linkCredit - l.storing)
		channel, fields := c.flowFields(l)
		return c.appendFrame(buf, channel, wire.CodeFlow, fields)
	}
	return buf, nil
}

// stopSettling drops what is queued and settles nothing more, when the
// connection ends.
func (c *conn) stopSettling() {
	c.settler.stop()
	c.settleMu.Lock()
	c.settleClosed, c.settles = true, nil
	c.settleMu.Unlock()
}
