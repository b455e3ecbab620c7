package mqtt

import (
	"context"
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
)

// Cloud-to-device messages: while a device connection holds the
// devices/<id>/messages/devicebound/# subscription, it takes the device's
// pending messages from the hub one at a time, in order, publishes each
// at QoS 1 and removes it from the queue when the device's PUBACK comes.
// A message whose PUBACK never comes stays queued and goes to the next
// connection, so delivery is at least once, as on IoT Hub.

// c2dSettle delays the first delivery after the subscription. The Go
// SDK (amenzhinsky/iothub) registers its receiver only after the SUBACK,
// and drops, yet acknowledges, a message that comes before.
const c2dSettle = 200 * time.Millisecond

type c2dDelivery struct {
	wake   chan struct{}
	acked  chan uint16
	cancel context.CancelFunc
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
	ctx, cancel := context.WithCancel(c.ctx)
	d := &c2dDelivery{wake: make(chan struct{}, 1), acked: make(chan uint16, 4), cancel: cancel}
	c.mu.Lock()
	if c.c2d != nil {
		c.mu.Unlock()
		cancel()
		return
	}
	c.c2d = d
	c.mu.Unlock()
	unwatch, err := c.srv.hub.WatchC2D(c.key.DeviceID, func() {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		c.log.Warn("watching cloud-to-device messages", "err", err)
		unwatch = func() {}
	}
	go func() {
		defer unwatch()
		c.deliverC2D(ctx, d)
	}()
}

func (c *conn) stopC2D() {
	c.mu.Lock()
	d := c.c2d
	c.c2d = nil
	c.mu.Unlock()
	if d != nil {
		d.cancel()
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
	select {
	case d.acked <- id:
	default:
	}
}

func (c *conn) deliverC2D(ctx context.Context, d *c2dDelivery) {
	dev := c.key.DeviceID
	var packetID uint16
	// An idle delivery looks at the queue by itself now and then, in
	// case a notice of a new message was lost.
	looks := 0
	poll := time.NewTimer(hub.C2DPollAfter(looks))
	defer poll.Stop()
	select {
	case <-ctx.Done():
		return
	case <-time.After(c2dSettle):
	}
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, min(c.srv.opts.RequestTimeout, hub.C2DReadTimeout))
		m, err := c.srv.hub.NextC2DDelivery(rctx, dev, 0)
		cancel()
		if err != nil {
			// A failed look is tried again soon and is not counted as
			// one that found the queue empty.
			failed := !errors.Is(err, twinhub.ErrNotFound)
			if failed && ctx.Err() == nil {
				c.log.Warn("reading cloud-to-device messages", "err", err)
				poll.Reset(hub.C2DRetryAfter)
			}
			select {
			case <-ctx.Done():
			case <-d.wake:
			case <-poll.C:
				if !failed {
					looks++
				}
				poll.Reset(hub.C2DPollAfter(looks))
			}
			continue
		}
		if looks > 0 {
			looks = 0
			poll.Reset(hub.C2DPollAfter(looks))
		}
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
			packetID++
			if packetID == 0 {
				packetID = 1
			}
			pk.PacketID = packetID
		}
		if err := c.send(encode(pk)); err != nil {
			return
		}
	wait:
		for qos == 1 {
			select {
			case <-ctx.Done():
				return
			case id := <-d.acked:
				if id == packetID {
					break wait
				}
			}
		}
		rctx, cancel = context.WithTimeout(context.Background(), c.srv.opts.RequestTimeout)
		if err := c.srv.hub.CompleteC2D(rctx, dev, m); err != nil {
			c.log.Warn("completing a cloud-to-device message", "err", err)
		}
		cancel()
	}
}
