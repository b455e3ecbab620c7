package amqp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/throttle"
)

// Twins over AMQP: a device (or module) attaches a sender and a receiver
// to /devices/<id>[/modules/<m>]/twin, both with the attach property
// com.microsoft:channel-correlation-id ("twin:<uuid>") that pairs them.
// Requests come on the sender, with the message annotations operation
// (GET, PATCH, PUT, DELETE) and resource (/properties/reported,
// /notifications/twin/properties/desired) and a correlation-id; the
// answer goes on the paired receiver with that correlation-id, an int
// annotation status and a JSON body (the twin's desired and reported
// properties for a GET). Once the device PUTs the notification resource,
// desired-property changes are pushed on the receiver with no
// correlation-id, in $version order, until it DELETEs it.

const (
	twinSuffix            = "twin"
	channelCorrelationKey = wire.Symbol("com.microsoft:channel-correlation-id")
	reportedResource      = "/properties/reported"
	desiredResource       = "/notifications/twin/properties/desired"
	// maxPendingDesiredPushes bounds the desired changes waiting for a
	// device's credit; past it the twin receiver is detached with
	// amqp:resource-limit-exceeded (the device reads its twin again when
	// it attaches again).
	maxPendingDesiredPushes = 1024
)

// twinChannel is a device's pair of twin links, by the channel
// correlation id of their attach.
type twinChannel struct {
	key    twinhub.Key
	out    *link // the device's receiver: answers and desired changes
	feed   *hub.DesiredFeed
	pushes *sendQueue[hub.DesiredPatch]
}

// channelOf is the channel correlation id of an attach: its property, or
// the identity's address when the client sends none.
func channelOf(a wire.Attach, address string) string {
	if v, ok := a.Properties.Get(channelCorrelationKey); ok {
		if s := textOf(v, true); s != "" {
			return s
		}
	}
	return strings.ToLower(address)
}

// attachTwin registers a twin link: the device's sender gets a worker
// that answers its requests, its receiver becomes the channel's out.
func (c *conn) attachTwin(l *link, a wire.Attach, address string, k twinhub.Key, g *grant) {
	id := channelOf(a, address)
	ch := c.twins[id]
	if ch == nil || ch.key != k {
		ch = &twinChannel{key: k}
		c.twins[id] = ch
	}
	if l.receiving {
		c.startWorker(l, func(m wire.Message) (wire.Described, func()) {
			return wire.Accepted, c.twinRequest(id, k, g, m)
		})
		return
	}
	ch.out = l
	l.stop = func() { c.endTwinChannel(id, l) }
}

// endTwinChannel stops what a channel's receiver carried. Called with mu
// held, when the receiver goes.
func (c *conn) endTwinChannel(id string, out *link) {
	ch := c.twins[id]
	if ch == nil || ch.out != out {
		return
	}
	c.stopDesiredPushes(ch)
	delete(c.twins, id)
}

// stopDesiredPushes ends a channel's desired feed. Called with mu held.
func (c *conn) stopDesiredPushes(ch *twinChannel) {
	if ch.feed != nil {
		ch.feed.Stop()
		ch.feed = nil
		ch.pushes.stop()
		ch.pushes = nil
	}
}

// twinRequest carries out one request of a device's twin sender, on the
// link's worker without the lock, and returns what sends its answer on
// the channel's receiver (with the lock held, in the write that settles
// the request).
func (c *conn) twinRequest(id string, k twinhub.Key, g *grant, m wire.Message) (answer func()) {
	op, _ := m.Annotations.Get(wire.Symbol("operation"))
	res, _ := m.Annotations.Get(wire.Symbol("resource"))
	operation, resource := textOf(op, true), textOf(res, true)
	status, version, body := c.twinAnswer(id, k, g, operation, resource, m)
	reply := wire.Message{
		Properties:  wire.Properties{CorrelationID: m.Properties.CorrelationID},
		Annotations: wire.Map{{Key: wire.Symbol("status"), Value: int32(status)}},
		Data:        body,
	}
	if version > 0 {
		reply.Annotations = append(reply.Annotations, wire.MapEntry{Key: wire.Symbol("version"), Value: version})
	}
	return func() {
		ch := c.twins[id]
		if ch == nil || ch.out == nil || ch.out.gone {
			c.srv.log.Debug("amqp twin answer dropped: no twin receiver", "identity", k.String())
			return
		}
		if err := c.sendMessage(ch.out, reply); err != nil {
			c.srv.log.Debug("amqp twin answer not sent", "identity", k.String(), "err", err)
		}
	}
}

// twinAnswer carries out a twin request: the status, the reported
// $version of a patch, and the body.
func (c *conn) twinAnswer(id string, k twinhub.Key, g *grant, operation, resource string, m wire.Message) (int, int64, []byte) {
	c.mu.Lock()
	valid := g.valid()
	c.mu.Unlock()
	if !valid {
		return c.twinError(twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "the token of %s on this connection has expired", k))
	}
	h := c.srv.hub
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := c.srv.opts.Throttle
	switch {
	case operation == "GET" && (resource == "" || resource == "/"):
		if !th.Allow(throttle.TwinReads) {
			return c.twinError(twinhub.ErrThrottled(throttle.TwinReads))
		}
		body, err := h.DeviceTwinJSON(ctx, k)
		if err != nil {
			return c.twinError(err)
		}
		return http.StatusOK, 0, body
	case operation == "PATCH" && resource == reportedResource:
		if !th.Allow(throttle.TwinUpdates) {
			return c.twinError(twinhub.ErrThrottled(throttle.TwinUpdates))
		}
		patch, err := twinhub.ParsePatch("reported", bodyOf(m))
		if err != nil {
			return c.twinError(err)
		}
		version, err := h.UpdateReported(ctx, k, patch)
		if err != nil {
			return c.twinError(err)
		}
		return http.StatusNoContent, version, nil
	case operation == "PUT" && resource == desiredResource:
		c.startDesiredPushes(ctx, id, k)
		return http.StatusOK, 0, nil
	case operation == "DELETE" && resource == desiredResource:
		c.mu.Lock()
		if ch := c.twins[id]; ch != nil {
			c.stopDesiredPushes(ch)
		}
		c.mu.Unlock()
		return http.StatusOK, 0, nil
	}
	return c.twinError(twinhub.ErrInvalid("twin operation %q on resource %q is not one IoT Hub serves", operation, resource))
}

// twinError is the answer of a failed twin request: its status and IoT
// Hub's error body.
func (c *conn) twinError(err error) (int, int64, []byte) {
	e := twinhub.AsError(err)
	return e.Status, 0, e.TwinAnswerJSON(c.id)
}

// startDesiredPushes follows the identity's desired-property changes onto
// the channel's receiver, from the twin's version now.
func (c *conn) startDesiredPushes(ctx context.Context, id string, k twinhub.Key) {
	c.mu.Lock()
	ch := c.twins[id]
	if ch == nil || ch.out == nil || ch.feed != nil {
		c.mu.Unlock()
		return
	}
	out := ch.out
	pushes := newSendQueue(maxPendingDesiredPushes, &c.senders, func(p hub.DesiredPatch, _ int) error {
		data, err := p.DeviceJSON()
		if err != nil {
			c.srv.log.Error("encoding a desired-property change", "err", err)
			return nil
		}
		return c.deliver(out, wire.Message{Data: data})
	})
	feed := hub.NewDesiredFeed(func(p hub.DesiredPatch) {
		if !pushes.add(p) {
			go c.steal(out, fmt.Sprintf("more than %d desired-property changes wait for the device's credit", maxPendingDesiredPushes))
		}
	}, 0)
	ch.feed, ch.pushes = feed, pushes
	c.mu.Unlock()
	c.srv.hub.FollowDesired(ctx, k, feed)
}
