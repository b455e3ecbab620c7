package mqtt

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/throttle"
)

// handlePublish serves a device's PUBLISH: twin requests, method
// responses and telemetry. QoS 2 and retained messages are refused by
// closing the connection, as is any topic outside the IoT Hub set or
// about another identity (MQTT 3.1.1 has no other way to refuse a
// PUBLISH, and IoT Hub does the same).
func (c *conn) handlePublish(pk *packets.Packet) error {
	if pk.FixedHeader.Qos > 1 {
		return fmt.Errorf("%w: QoS 2 PUBLISH (IoT Hub supports QoS 0 and 1)", errNotAllowed)
	}
	if pk.FixedHeader.Retain {
		return fmt.Errorf("%w: retained PUBLISH", errNotAllowed)
	}
	if code := pk.PublishValidate(0); code != packets.CodeSuccess {
		return fmt.Errorf("%w: %s", errProtocol, code.Reason)
	}
	t, err := ParseTopic(pk.TopicName)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotAllowed, err)
	}
	switch t.Kind {
	case TopicTwinGet:
		if err := c.puback(pk); err != nil {
			return err
		}
		return c.twinGet(t)
	case TopicTwinPatchReported:
		if err := c.puback(pk); err != nil {
			return err
		}
		return c.twinPatch(t, pk.Payload)
	case TopicMethodResponse:
		c.methodResponse(t, pk.Payload)
		return c.puback(pk)
	case TopicTelemetry:
		if !t.BelongsTo(c.key) {
			return fmt.Errorf("%w: %s may not send telemetry as %s", errNotAllowed, c.key, twinhub.Key{DeviceID: t.DeviceID, ModuleID: t.ModuleID})
		}
		return c.telemetry(pk, t)
	}
	return fmt.Errorf("%w: topic %q", errNotAllowed, pk.TopicName)
}

func (c *conn) puback(pk *packets.Packet) error {
	if pk.FixedHeader.Qos == 0 {
		return nil
	}
	return c.send(encode(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}))
}

// telemetry stores a device-to-cloud message. The PUBACK is sent once
// the message is stored (the hub's promise: an acknowledged message
// survives a crash), but the connection does not wait for that before it
// reads its next packet: up to maxTelemetryInFlight messages of a
// connection are being stored at once, and their PUBACKs go out in the
// order the messages came (telemetryStored). A message that cannot be
// stored closes the connection, without PUBACK, so that the device sends
// it again.
func (c *conn) telemetry(pk *packets.Packet, t Topic) error {
	if th := c.srv.opts.Throttle; th != nil {
		// Over the telemetry rate, the message waits for its turn before
		// it is stored and acknowledged: the device slows down and loses
		// nothing.
		ctx, cancel := c.requestContext()
		err := th.Wait(ctx, throttle.Telemetry)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %v", errTelemetryFailed, err)
		}
	}
	w := c.telemetryWindow()
	n, err := w.reserve(c.ctx, pk.PacketID, pk.FixedHeader.Qos)
	if err != nil {
		return err
	}
	done := func(err error) { c.telemetryStored(w, n, err) }
	if fn := c.srv.opts.Telemetry; fn != nil {
		ctx, cancel := c.requestContext()
		err := fn(ctx, Message{
			Identity: c.key, AuthMethod: c.auth.Method, Properties: t.Properties,
			Body: pk.Payload, Received: time.Now(),
		})
		cancel()
		done(err)
		return nil
	}
	e := Event(c.key, c.auth, t.Properties, pk.Payload)
	if pk.FixedHeader.Qos == 1 {
		e.Retransmit = strconv.Itoa(int(pk.PacketID)) // the same when the device sends it again
	}
	c.srv.hub.SendEventAsync(e, c.srv.opts.RequestTimeout, done)
	return nil
}

// telemetryWindow returns the connection's window of messages being
// stored, made on the first message (most connections of a big fleet
// hold none).
func (c *conn) telemetryWindow() *inFlight {
	if c.inflight == nil {
		c.inflight = &inFlight{space: make(chan struct{}, 1)} // only the reader sets it
	}
	return c.inflight
}

// telemetryStored records the outcome of message n and sends the PUBACKs
// of the messages that are stored, in order, up to the first one still
// being stored.
func (c *conn) telemetryStored(w *inFlight, n uint64, err error) {
	acks, failed := w.complete(n, err)
	if len(acks) > 0 {
		c.send(acks)
	}
	if failed != nil {
		c.close(fmt.Errorf("%w: %v", errTelemetryFailed, failed))
	}
}

// Event turns a telemetry PUBLISH into the hub's event: the "$." keys of
// the property bag become system properties, the others application
// properties.
func Event(k twinhub.Key, auth hub.DeviceAuth, props []Property, body []byte) *twinhub.Event {
	e := &twinhub.Event{Identity: k, AuthMethod: auth.Method, AuthGenerationID: auth.GenerationID, Body: body}
	for _, p := range props {
		switch p.Key {
		case "$.mid":
			e.MessageID = p.Value
		case "$.cid":
			e.CorrelationID = p.Value
		case "$.ct":
			e.ContentType = p.Value
		case "$.ce":
			e.ContentEncoding = p.Value
		case "$.uid":
			e.UserID = p.Value
		case "$.to":
			e.To = p.Value
		default:
			if strings.HasPrefix(p.Key, "$.") {
				continue // $.exp, $.ifid, $.on, $.ctime, $.sub...: not kept
			}
			e.Properties = append(e.Properties, twinhub.Property{Key: p.Key, Value: p.Value})
		}
	}
	return e
}

// --- twin ---

// twinGet answers $iothub/twin/GET with the twin's desired and reported
// properties. The request body is ignored (SDKs send nothing or a space).
//
// Replies to twin requests go to the client that asked, whether or not it
// holds a $iothub/twin/res/# subscription. The SDKs always subscribe first;
// but the Node SDK never subscribes again after a reconnect, so a client
// whose session was lost (a hub restart, another node) would otherwise
// wait forever for every reply.
func (c *conn) twinGet(t Topic) error {
	if !c.srv.opts.Throttle.Allow(throttle.TwinReads) {
		return c.twinError(t.RequestID, twinhub.ErrThrottled(throttle.TwinReads))
	}
	ctx, cancel := c.requestContext()
	body, err := c.srv.hub.DeviceTwinJSON(ctx, c.key)
	cancel()
	if err != nil {
		return c.twinError(t.RequestID, err)
	}
	return c.send(publishPacket(TwinResponseTopic(http.StatusOK, t.RequestID, 0), body))
}

// twinPatch merges a reported-properties patch and answers 204 with the
// new reported $version, or the error.
func (c *conn) twinPatch(t Topic, body []byte) error {
	if !c.srv.opts.Throttle.Allow(throttle.TwinUpdates) {
		return c.twinError(t.RequestID, twinhub.ErrThrottled(throttle.TwinUpdates))
	}
	patch, err := twinhub.ParsePatch("reported", body)
	if err != nil {
		return c.twinError(t.RequestID, err)
	}
	ctx, cancel := c.requestContext()
	version, err := c.srv.hub.UpdateReported(ctx, c.key, patch)
	cancel()
	if err != nil {
		return c.twinError(t.RequestID, err)
	}
	return c.send(publishPacket(TwinResponseTopic(http.StatusNoContent, t.RequestID, version), nil))
}

func (c *conn) twinError(rid string, err error) error {
	e := twinhub.AsError(err)
	if e.Status >= 500 {
		c.log.Error("twin request failed", "rid", rid, "err", err)
	}
	return c.send(publishPacket(TwinResponseTopic(e.Status, rid, 0), e.TwinAnswerJSON(c.id)))
}

// --- subscriptions ---

func (c *conn) handleSubscribe(pk *packets.Packet) error {
	if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
		return fmt.Errorf("%w: %s", errProtocol, code.Reason)
	}
	granted := make([]byte, len(pk.Filters))
	var started subscriptions
	before := c.snapshot()
	next := before
	for i, sub := range pk.Filters {
		f, err := ParseFilter(sub.Filter, c.key)
		if err != nil {
			granted[i] = packets.ErrUnspecifiedError.Code // 0x80: failure
			c.log.Debug("subscription refused", "filter", sub.Filter)
			continue
		}
		// IoT Hub grants at most QoS 1 (a QoS 2 request gets 1).
		qos := min(sub.Qos, 1)
		granted[i] = qos
		started[f] = qos + 1
		next[f] = qos + 1
	}
	// A session that outlives the connection is saved before the SUBACK
	// grants it: a device told it holds a subscription holds it on
	// whichever node it comes back to. If it cannot be saved, nothing of
	// this SUBSCRIBE is granted (the SDKs subscribe again).
	if !c.clean && next != before {
		if err := c.saveSession(next); err != nil {
			c.log.Warn("subscription refused: the session could not be saved", "err", err)
			for i := range granted {
				granted[i] = packets.ErrUnspecifiedError.Code
			}
			return c.send(encode(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: pk.PacketID, ReasonCodes: granted}))
		}
	}
	c.mu.Lock()
	startDesired := started.has(FilterDesired) && c.desired == nil
	c.subs = next
	c.mu.Unlock()
	// The desired feed starts before the SUBACK: every change made once
	// the device has its SUBACK is above the version the feed starts
	// from, so none is taken for one the device reads with its twin.
	if startDesired {
		c.startDesired()
	}
	if err := c.send(encode(&packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Suback},
		PacketID:    pk.PacketID,
		ReasonCodes: granted,
	})); err != nil {
		return err
	}
	c.startServices(started)
	return nil
}

// startServices begins serving the direct methods and cloud-to-device
// messages whose filters subs holds (each starts once).
func (c *conn) startServices(subs subscriptions) {
	if subs.has(FilterMethods) {
		c.startMethods()
	}
	if subs.has(FilterC2D) && c.key.ModuleID == "" {
		c.startC2D()
	}
}

func (c *conn) handleUnsubscribe(pk *packets.Packet) error {
	if code := pk.UnsubscribeValidate(); code != packets.CodeSuccess {
		return fmt.Errorf("%w: %s", errProtocol, code.Reason)
	}
	var feed *hub.DesiredFeed
	var stopMethods, stopC2D bool
	c.mu.Lock()
	before := c.subs
	for _, sub := range pk.Filters {
		f, err := ParseFilter(sub.Filter, c.key)
		if err != nil {
			continue // MQTT: unsubscribing from nothing is still acknowledged
		}
		c.subs[f] = 0
		if f == FilterDesired {
			feed, c.desired = c.desired, nil
		}
		stopMethods = stopMethods || f == FilterMethods
		stopC2D = stopC2D || f == FilterC2D
	}
	subs := c.subs
	c.mu.Unlock()
	if feed != nil {
		feed.Stop()
	}
	if stopMethods {
		c.stopMethods()
	}
	if stopC2D {
		c.stopC2D()
	}
	if !c.clean && subs != before {
		if err := c.saveSession(subs); err != nil {
			// MQTT 3.1.1 has no failed UNSUBACK; the connection is
			// unsubscribed, a resumed session may not be.
			c.log.Warn("an unsubscription could not be saved in the session", "err", err)
		}
	}
	return c.send(encode(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback}, PacketID: pk.PacketID}))
}

// snapshot returns the connection's subscriptions.
func (c *conn) snapshot() subscriptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs
}

// startDesired subscribes to the identity's desired-property changes and
// passes them on from the version the twin has now (hub.FollowDesired).
func (c *conn) startDesired() {
	feed := hub.NewDesiredFeed(c.sendDesired, c.srv.opts.DesiredGapWait)
	c.mu.Lock()
	if c.desired != nil {
		c.mu.Unlock()
		return
	}
	c.desired = feed
	c.mu.Unlock()
	ctx, done := c.requestContext()
	c.srv.hub.FollowDesired(ctx, c.key, feed)
	done()
}

// sendDesired publishes one change, QoS 0, the patch with its $version.
func (c *conn) sendDesired(p hub.DesiredPatch) {
	data, err := p.DeviceJSON()
	if err != nil {
		c.log.Error("encoding a desired-property change", "err", err)
		return
	}
	c.send(publishPacket(DesiredTopic(p.Version), data))
}
