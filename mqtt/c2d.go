package mqtt

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/ondemand"
)

// Cloud-to-device messages: while a device connection holds the
// devices/<id>/messages/devicebound/# subscription, it takes the device's
// pending messages from the hub one at a time, in order, publishes each
// at QoS 1 and removes it from the queue when the device's PUBACK comes.
// A message whose PUBACK never comes stays queued and goes to the next
// connection, so delivery is at least once, as on IoT Hub.

// never is a timer's duration before it is armed (Reset).
const never = time.Duration(math.MaxInt64)

// c2dSettle delays the first delivery after the subscription. The Go
// SDK (amenzhinsky/iothub) registers its receiver only after the SUBACK,
// and drops, yet acknowledges, a message that comes before.
const c2dSettle = 200 * time.Millisecond

// c2dDelivery is the delivery of a connection's C2D messages. Its work
// runs while there is some (ondemand.Runner): when the hub notices a new
// message for the device, when the PUBACK of the message sent comes, or
// when its poll timer fires. In between it holds no goroutine: one that
// waited for each subscribed device's messages was about 10 KB of RSS a
// connection (bench connect, with the C2D subscription every SDK makes,
// 2 runs: 56.7 and 54.3 KB a connection with that goroutine, 45.9 and
// 44.0 KB without).
type c2dDelivery struct {
	c   *conn
	run ondemand.Runner
	wg  sync.WaitGroup // counts run's goroutine; nothing waits: stop ends it at its next turn
	// poll looks at the queue now and then, in case a notice of a new
	// message was lost; its first look, after c2dSettle, starts the
	// delivery (settled): notices before it do nothing.
	poll    *time.Timer
	settled atomic.Bool
	unwatch func()

	// The work's own, which runs one at a time: its looks at an empty
	// queue since its last message.
	looks int

	// mu guards the message sent at QoS 1 that waits for its PUBACK,
	// the last packet id used (that message's), and whether the PUBACK
	// came.
	mu       sync.Mutex
	sent     *twinhub.C2DMessage
	packetID uint16
	acked    bool
}

// C2DTopic is the topic of a cloud-to-device message: system properties
// first ($.mid, $.to: the Go SDK drops a message whose bag does not start
// with a "$." key), then iothub-ack and the application properties.
func C2DTopic(deviceID string, m *twinhub.C2DMessage) string {
	props := []Property{{"$.mid", m.MessageID}, {"$.to", m.To}}
	if !m.Expiry.IsZero() {
		props = append(props, Property{"$.exp", m.Expiry.UTC().Format("2006-01-02T15:04:05.000Z")})
	}
	for _, p := range []Property{{"$.cid", m.CorrelationID}, {"$.uid", m.UserID}, {"$.ct", m.ContentType}, {"$.ce", m.ContentEncoding}} {
		if p.Value != "" {
			props = append(props, p)
		}
	}
	if m.Ack != "" && m.Ack != twinhub.AckNone {
		props = append(props, Property{"iothub-ack", m.Ack})
	}
	for _, p := range m.Properties {
		props = append(props, Property{p.Key, p.Value})
	}
	return devicesPrefix + deviceID + "/" + deviceboundSegment + "/" + EncodePropertyBag(props)
}

func (c *conn) startC2D() {
	d := &c2dDelivery{c: c}
	d.run.Init(&d.wg, d.deliver)
	c.mu.Lock()
	if c.c2d != nil {
		c.mu.Unlock()
		return
	}
	c.c2d = d
	// Under c.mu, so that stopC2D finds the timer and the watch set; the
	// timer is armed once d.poll is set, which deliver reads.
	d.poll = time.AfterFunc(never, func() {
		d.settled.Store(true)
		d.run.Kick()
	})
	d.poll.Reset(c2dSettle)
	unwatch, err := c.srv.hub.WatchC2D(c.key.DeviceID, func() {
		if d.settled.Load() {
			d.run.Kick()
		}
	})
	if err != nil {
		c.log.Warn("watching cloud-to-device messages", "err", err)
		unwatch = func() {}
	}
	d.unwatch = unwatch
	c.mu.Unlock()
}

func (c *conn) stopC2D() {
	c.mu.Lock()
	d := c.c2d
	c.c2d = nil
	c.mu.Unlock()
	if d != nil {
		d.run.Stop()
		d.poll.Stop()
		d.unwatch()
	}
}

// c2dAcked takes a PUBACK from the device.
func (c *conn) c2dAcked(id uint16) {
	c.mu.Lock()
	d := c.c2d
	c.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	match := d.sent != nil && d.packetID == id
	d.acked = d.acked || match
	d.mu.Unlock()
	if match {
		d.run.Kick()
	}
}

// deliver completes the message sent when its PUBACK came, then sends the
// queued messages, one at a time and in order, until the queue is empty
// (it then sets the poll timer) or a message waits for its PUBACK.
func (d *c2dDelivery) deliver() {
	c := d.c
	dev := c.key.DeviceID
	d.mu.Lock()
	sent, acked := d.sent, d.acked
	if acked {
		d.sent, d.acked = nil, false
	}
	d.mu.Unlock()
	if sent != nil {
		if !acked {
			return // the PUBACK kicks again
		}
		d.complete(sent)
	}
	for !d.run.Stopped() {
		rctx, cancel := context.WithTimeout(c.ctx, min(c.srv.opts.RequestTimeout, hub.C2DReadTimeout))
		m, err := c.srv.hub.NextC2DDelivery(rctx, dev, 0)
		cancel()
		if d.run.Stopped() {
			return // unsubscribed or gone during the read: nothing more is sent, nor looked for
		}
		if err != nil {
			// A failed look is tried again soon and is not counted as
			// one that found the queue empty.
			if !errors.Is(err, twinhub.ErrNotFound) {
				if c.ctx.Err() == nil {
					c.log.Warn("reading cloud-to-device messages", "err", err)
				}
				d.poll.Reset(hub.C2DRetryAfter)
				return
			}
			d.poll.Reset(hub.C2DPollAfter(d.looks))
			d.looks++
			return
		}
		d.looks = 0
		// MQTT delivers at the lower of the two QoS: a client that
		// subscribed at QoS 0 gets the message once, with no PUBACK to
		// wait for, and it counts as completed when sent.
		qos := byte(1)
		if c.snapshot()[FilterC2D] == 1 {
			qos = 0
		}
		pk := &packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
			TopicName:   C2DTopic(dev, m),
			Payload:     m.Body,
		}
		if qos == 1 {
			d.mu.Lock()
			d.packetID++
			if d.packetID == 0 {
				d.packetID = 1
			}
			pk.PacketID = d.packetID
			d.sent, d.acked = m, false
			d.mu.Unlock()
		}
		if err := c.send(encode(pk)); err != nil || qos == 1 {
			return // gone; or the PUBACK kicks
		}
		d.complete(m)
	}
}

// complete removes a delivered message from the device's queue (with its
// feedback).
func (d *c2dDelivery) complete(m *twinhub.C2DMessage) {
	c := d.c
	rctx, cancel := context.WithTimeout(context.Background(), c.srv.opts.RequestTimeout)
	defer cancel()
	if err := c.srv.hub.CompleteC2D(rctx, c.key.DeviceID, m); err != nil {
		c.log.Warn("completing a cloud-to-device message", "err", err)
	}
}
