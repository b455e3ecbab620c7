package amqp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/ondemand"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/throttle"
)

// The device side: devices and modules (azure-iot-device-amqp, the C# and
// Java SDKs' default transport) put their own SAS token, or a policy's
// with DeviceConnect, on $cbs for the audience <host>/devices/<id>[/modules/<m>],
// then attach links to their own addresses:
//
//	/devices/<id>[/modules/<m>]/messages/events   telemetry (device sends)
//	/devices/<id>/modules/<m>/messages/events     a module's inputs (module
//	                                              receives; nothing comes)
//	/devices/<id>/messages/devicebound            C2D (device receives)
//	/devices/<id>[/modules/<m>]/twin              twin requests and answers,
//	                                              desired changes (twin.go)
//	/devices/<id>[/modules/<m>]/methods/devicebound  direct method calls and
//	                                              answers (methods.go)
//
// A link is authenticated when it attaches, as MQTT authenticates a
// CONNECT (the identity exists and is enabled, the token is its own or a
// DeviceConnect policy's); each message then needs the grant it came
// with to be unexpired (renewed in place by a new put-token).

const (
	telemetrySuffix = "messages/events"
	c2dSuffix       = "messages/devicebound"
	// c2dRetry is how long a device's C2D receiver waits before looking
	// again after an error, or after the device abandoned a message.
	c2dRetry = 200 * time.Millisecond
)

// parseDeviceAddress reads "devices/<id>[/modules/<m>]/<rest>" (the ids
// URL-decoded, as the Node SDK encodes them).
func parseDeviceAddress(address string) (k twinhub.Key, rest string, ok bool) {
	parts := strings.SplitN(address, "/", 5)
	if len(parts) < 3 || !strings.EqualFold(parts[0], "devices") || parts[1] == "" {
		return twinhub.Key{}, "", false
	}
	unescape := func(s string) string {
		if u, err := url.PathUnescape(s); err == nil {
			return u
		}
		return s
	}
	if len(parts) >= 5 && strings.EqualFold(parts[2], "modules") && parts[3] != "" {
		return twinhub.ModuleKey(unescape(parts[1]), unescape(parts[3])), parts[4], true
	}
	return twinhub.DeviceKey(unescape(parts[1])), strings.Join(parts[2:], "/"), true
}

// deviceGrant finds a grant that lets the connection act as k: the
// device's (or module's) own token, or a policy's with DeviceConnect,
// authenticated as MQTT authenticates a device; else the client's TLS
// certificate, for an identity registered with X.509 (which needs no
// CBS), whose grant lasts as long as the certificate. It returns the
// grant's audience and how the identity authenticated, for its events.
// Called with mu held.
func (c *conn) deviceGrant(k twinhub.Key) (g *grant, auth hub.DeviceAuth, err error) {
	var last error = twinhub.Errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "no token of %s was put on $cbs for this connection, and no client certificate admits it", k)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, g := range c.grants.forIdentity(k) {
		if g.token == "" {
			return g, g.cert, nil // a certificate's, for k
		}
		auth, err := c.srv.hub.AuthenticateDevice(ctx, g.token, k)
		if err == nil {
			return g, auth, nil
		}
		last = err
	}
	if len(c.certs) > 0 {
		auth, err := c.srv.hub.AuthenticateDeviceX509(ctx, k, c.certs, c.srv.opts.DeviceCA)
		if err != nil {
			return nil, hub.DeviceAuth{}, err
		}
		g := c.grants.put(grant{audience: "x509:" + k.String(), device: k, cert: auth, expires: c.certs[0].NotAfter})
		return g, auth, nil
	}
	return nil, hub.DeviceAuth{}, last
}

// revoke detaches the links of identity k (and of its modules, for a
// device) and drops the grants made for it (its tokens, its
// certificate's), because it was deleted or disabled. A policy's grant
// stays: a new link authenticates the identity again.
func (c *conn) revoke(k twinhub.Key) {
	revoked := func(d twinhub.Key) bool {
		return d == k || k.ModuleID == "" && d.DeviceID == k.DeviceID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.grants.revoke(revoked)
	c.closeDeviceLinks(revoked, &wire.Error{Condition: condUnauthorized, Description: fmt.Sprintf("%s was deleted or disabled", k)})
}

// closeDeviceLinks detaches, with e, the device links of the identities
// that match. Called with mu held.
func (c *conn) closeDeviceLinks(match func(twinhub.Key) bool, e *wire.Error) {
	for _, s := range c.sessions {
		for _, l := range s.links {
			if l.device != nil && match(l.device.key) {
				if err := c.closeLink(l, e); err != nil {
					return
				}
			}
		}
	}
}

// attachDevice checks a link to a device's address (the device's grant,
// the direction, the node) and arranges for its messages to be handled.
// It returns the error to refuse the link with.
func (c *conn) attachDevice(l *link, a wire.Attach, address string, k twinhub.Key, rest string) *wire.Error {
	telemetry, c2d := strings.EqualFold(rest, telemetrySuffix), strings.EqualFold(rest, c2dSuffix) && k.ModuleID == ""
	twin, methods := strings.EqualFold(rest, twinSuffix), strings.EqualFold(rest, methodsSuffix)
	switch {
	case !telemetry && !c2d && !twin && !methods:
		return &wire.Error{Condition: condNotFound, Description: fmt.Sprintf("twinhub serves no device node %q over AMQP yet", rest)}
	case telemetry && !l.receiving && k.ModuleID == "":
		return &wire.Error{Condition: condNotAllowed, Description: "telemetry is sent to /" + address + ", not received from it"}
	case c2d && l.receiving:
		return &wire.Error{Condition: condNotAllowed, Description: "cloud-to-device messages are received from /" + address + ", not sent to it"}
	}
	g, auth, err := c.deviceGrant(k)
	if err != nil {
		e := twinhub.AsError(err)
		c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectRefusal(e.Status))
		return &wire.Error{Condition: condUnauthorized, Description: e.Message}
	}
	// A device's first link on the connection is its connection, which
	// the rate of new connections counts, as MQTT counts a CONNECT.
	if c.devices[k] == nil && !c.srv.opts.Throttle.Allow(throttle.Connects) {
		c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectThrottled)
		return &wire.Error{Condition: condThrottled, Description: twinhub.ErrThrottled(throttle.Connects).Message}
	}
	// From here on, k is the identity's one copy on the connection, not
	// a part of this attach's address, which the link does not keep.
	k = c.deviceLinkOpened(l, k)
	if twin {
		c.attachTwin(l, a, address, k, g)
		return nil
	}
	if methods {
		c.attachMethods(l, a, address, k)
		return nil
	}
	if c2d {
		l.awaitOutcome = true
		l.start = func() { c.deliverC2D(l, k.DeviceID, g) }
		return nil
	}
	if !l.receiving {
		// A module's inputs: azure-iot-device-amqp's ModuleClient
		// listens for input messages (x-opt-input-name) on a receiver
		// from its events address. On IoT Hub only an IoT Edge hub feeds
		// inputs, by its deployment's routes; the cloud service sends
		// none to a module connected to it, and neither does twinhub.
		// The link is taken, as MQTT takes the subscription to
		// devices/<id>/modules/<m>/inputs/#, and counts as the module's
		// connection; nothing is sent on it.
		return nil
	}
	l.store = func(m wire.Message, st settlement) { c.deviceTelemetry(k, g, auth, m, st) }
	return nil
}

// deviceOnConn is an identity with links on the connection: its ids (one
// copy, which its links share), how many links it has, and its
// connection's id here (its first link made it: hub.NewConnectionID),
// announced to every node so that an older connection of the identity,
// over any transport, gives way. replaced: its newer connection is
// elsewhere.
type deviceOnConn struct {
	key      twinhub.Key
	links    int
	connID   string
	replaced bool
}

// deviceLinkOpened counts a link of identity k and returns the
// connection's copy of k: with its first link, the identity is connected
// (its connectionState, as over MQTT), and this is its connection,
// announced so that an older one gives way. Called with mu held.
func (c *conn) deviceLinkOpened(l *link, k twinhub.Key) twinhub.Key {
	d := c.devices[k]
	if d == nil {
		k = twinhub.Key{DeviceID: strings.Clone(k.DeviceID), ModuleID: strings.Clone(k.ModuleID)}
		d = &deviceOnConn{key: k, connID: c.srv.hub.NewConnectionID()}
		c.devices[k] = d
		c.srv.hub.NoteConnectionState(k, true)
		c.srv.hub.AnnounceConnection(k, d.connID)
		c.srv.opts.Metrics.DeviceConnect(metricsTransport, metrics.ConnectOK)
	}
	d.links++
	l.device = d
	return d.key
}

// deviceLinkClosed uncounts a device's link: with its last, the identity
// is disconnected, unless a newer connection of it took over. Called with
// mu held, when the link goes.
func (c *conn) deviceLinkClosed(l *link) {
	d := l.device
	if d == nil {
		return
	}
	if d.links--; d.links <= 0 {
		delete(c.devices, d.key)
		c.srv.opts.Metrics.DeviceDisconnect(metricsTransport)
		if d.replaced {
			return
		}
		c.srv.hub.NoteConnectionState(d.key, false)
	}
}

// takeover detaches the links of identity k when another connection of
// it, newer than this one's (connID, from any node or transport), was
// announced: a device has one connection, as on IoT Hub, and the newer
// stays. Its links end with amqp:link:stolen; other devices multiplexed
// on the connection go on.
func (c *conn) takeover(k twinhub.Key, connID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.devices[k]
	if d == nil || d.connID >= connID {
		return
	}
	d.replaced = true
	c.closeDeviceLinks(func(d twinhub.Key) bool { return d == k },
		&wire.Error{Condition: condStolen, Description: fmt.Sprintf("%s connected again, elsewhere; this connection of it gives way", k)})
}

// deliverC2D sends a device's cloud-to-device messages on l, one at a
// time and in order, each settled as the device settles its delivery:
// accepted (complete) removes it, with feedback; rejected removes it
// with Rejected feedback; released or modified (abandon) leaves it to
// come again. A message whose outcome never comes stays queued for the
// next receiver, so delivery is at least once, as over MQTT. Called with
// mu held, when the attach is answered.
func (c *conn) deliverC2D(l *link, deviceID string, g *grant) {
	r := &c2dReceiver{c: c, l: l, deviceID: deviceID, grant: g}
	r.run.Init(&c.senders, r.deliver)
	// The poll timer is set before the watch, whose first notice may
	// have deliver read it, and armed once r.poll is set.
	r.poll = time.AfterFunc(time.Duration(math.MaxInt64), r.kick)
	r.poll.Reset(hub.C2DPollAfter(0))
	unwatch, err := c.srv.hub.WatchC2D(deviceID, r.kick)
	if err != nil {
		c.srv.log.Warn("amqp: watching cloud-to-device messages", "device", deviceID, "err", err)
		unwatch = func() {}
	}
	l.stop = func() {
		r.run.Stop()
		unwatch()
		r.poll.Stop()
	}
	r.kick()
}

// c2dReceiver is the delivery of a device's C2D link. Its goroutine runs
// while the device has messages (ondemand.Runner): an idle receiver waits for a
// notice of a new message (the hub's C2D watch) or its poll timer, and
// holds no goroutine, so that a hub can keep many idle devices.
//
// It keeps no context of its own: an idle receiver of each of thousands
// of multiplexed devices held one, with the done channel and the table of
// children that its reads' contexts left (about 350 bytes a device, bench
// sessions-amqp). Its reads end with the connection (c.ending) or their
// timeout, and stop ends the loop at its next turn.
type c2dReceiver struct {
	c        *conn
	l        *link
	deviceID string
	grant    *grant
	poll     *time.Timer // looks again in case a notice was lost
	looks    int         // looks without a message since the last (deliver's own)
	run      ondemand.Runner
}

// kick looks at the queue. It never blocks (it is the watch's callback).
func (r *c2dReceiver) kick() { r.run.Kick() }

// deliver sends the queued messages until there is none, then sets the
// poll timer to look again later.
func (r *c2dReceiver) deliver() {
	c, l, h := r.c, r.l, r.c.srv.hub
	for !r.run.Stopped() {
		rctx, rcancel := context.WithTimeout(c.ending, hub.C2DReadTimeout)
		m, err := h.NextC2DDelivery(rctx, r.deviceID, 0)
		rcancel()
		if err != nil {
			empty := errors.Is(err, twinhub.ErrNotFound)
			if !empty && !r.run.Stopped() && c.ending.Err() == nil {
				c.srv.log.Warn("amqp: reading cloud-to-device messages", "device", r.deviceID, "err", err)
			}
			switch {
			case r.run.Stopped():
			case empty:
				r.poll.Reset(hub.C2DPollAfter(r.looks))
				r.looks++
			default:
				r.poll.Reset(hub.C2DRetryAfter)
			}
			return
		}
		r.looks = 0
		c.mu.Lock()
		valid := r.grant.valid()
		if !valid {
			c.closeLink(l, &wire.Error{Condition: condUnauthorized, Description: "the device's token on this connection has expired"})
		}
		c.mu.Unlock()
		if !valid {
			return
		}
		settled := make(chan uint64, 1)
		if err := c.deliverTracked(l, c2dMessage(m), func(state uint64) { settled <- state }); err != nil {
			return
		}
		// The outcome always comes: from the device, or released when
		// the link goes (forget), which then ends this loop.
		state := <-settled
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		switch state {
		case wire.CodeAccepted:
			err = h.CompleteC2D(sctx, r.deviceID, m)
		case wire.CodeRejected:
			err = h.RejectC2D(sctx, r.deviceID, m)
		default: // released, modified: abandoned, it comes again after a
			// pause; released as the link goes (stopped first): the end
			if !r.run.Stopped() {
				select {
				case <-c.ending.Done():
				case <-time.After(c2dRetry):
				}
			}
		}
		scancel()
		if err != nil {
			c.srv.log.Warn("amqp: settling a cloud-to-device message", "device", r.deviceID, "err", err)
		}
	}
}

// c2dMessage is a queued cloud-to-device message as the device SDKs
// receive it over AMQP.
func c2dMessage(m *twinhub.C2DMessage) wire.Message {
	w := wire.Message{
		Properties: wire.Properties{
			MessageID: m.MessageID, To: m.To, UserID: []byte(m.UserID),
			ContentType: wire.Symbol(m.ContentType), ContentEncoding: wire.Symbol(m.ContentEncoding),
			AbsoluteExpiryTime: m.Expiry.Time,
		},
		Annotations: wire.Map{{Key: wire.Symbol("iothub-enqueuedtime"), Value: m.Enqueued.Time.UTC()}},
		Data:        m.Body,
	}
	// The header's delivery-count counts the earlier attempts (AMQP's
	// meaning): 0 the first time.
	if m.Deliveries > 1 {
		w.DeliveryCount = uint32(m.Deliveries - 1)
	}
	if m.UserID == "" {
		w.Properties.UserID = nil
	}
	if m.CorrelationID != "" {
		w.Properties.CorrelationID = m.CorrelationID
	}
	if m.Ack != "" && m.Ack != twinhub.AckNone {
		w.ApplicationProperties = append(w.ApplicationProperties, wire.MapEntry{Key: "iothub-ack", Value: m.Ack})
	}
	for _, p := range m.Properties {
		w.ApplicationProperties = append(w.ApplicationProperties, wire.MapEntry{Key: p.Key, Value: p.Value})
	}
	return w
}

// deviceTelemetry starts storing one message of a device's telemetry
// link, with the properties the device gave it; st is settled with the
// outcome once the stream has it (the hub's asynchronous append, as
// MQTT's PUBACK waits for). Called by the reader, with mu held.
func (c *conn) deviceTelemetry(k twinhub.Key, g *grant, auth hub.DeviceAuth, m wire.Message, st settlement) {
	if !g.valid() {
		c.settleWith(st, rejected(condUnauthorized, fmt.Sprintf("the token of %s on this connection has expired; put a new one on $cbs", k)))
		return
	}
	// The event and room for a few application properties are one
	// allocation, not two: this runs for every message.
	ev := &struct {
		twinhub.Event
		props [4]twinhub.Property
	}{}
	e := &ev.Event
	*e = twinhub.Event{
		Identity: k, AuthMethod: auth.Method, AuthGenerationID: auth.GenerationID,
		MessageID: idString(m.Properties.MessageID), CorrelationID: idString(m.Properties.CorrelationID),
		ContentType: string(m.Properties.ContentType), ContentEncoding: string(m.Properties.ContentEncoding),
		UserID: string(m.Properties.UserID), To: m.Properties.To,
		Body:       bodyOf(m),
		Properties: ev.props[:0],
	}
	for _, p := range m.ApplicationProperties {
		key, ok := p.Key.(string)
		if !ok {
			continue
		}
		e.Properties = append(e.Properties, twinhub.Property{Key: key, Value: textValue(p.Value)})
	}
	// Over the telemetry rate, the message is stored when its turn comes,
	// and its disposition comes then: the device slows down and loses
	// nothing (a timer, not a goroutine, waits; turns come in order).
	wait, ok := c.srv.opts.Throttle.Reserve(throttle.Telemetry, telemetryTimeout)
	switch {
	case !ok:
		c.settleWith(st, rejected(condThrottled, twinhub.ErrThrottled(throttle.Telemetry).Message))
	case wait > 0:
		time.AfterFunc(wait, func() { c.storeTelemetry(e, st) })
	default:
		c.storeTelemetry(e, st)
	}
}

// storeTelemetry stores e and settles st with the outcome.
func (c *conn) storeTelemetry(e *twinhub.Event, st settlement) {
	c.srv.hub.SendEventAsync(e, telemetryTimeout, func(err error) {
		if err != nil {
			te := twinhub.AsError(err)
			c.settleWith(st, rejected(conditionOf(te), te.Message))
			return
		}
		c.settleWith(st, wire.Accepted)
	})
}

// telemetryTimeout bounds how long a device's message waits for the
// stream.
const telemetryTimeout = 30 * time.Second

// bodyOf is a message's body as bytes: its data sections, or an
// amqp-value string or binary.
func bodyOf(m wire.Message) []byte {
	if m.Data != nil {
		return m.Data
	}
	switch v := m.Value.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}

// textValue is an application property's value as the text IoT Hub keeps.
func textValue(v any) string {
	if s, ok := asText(v); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
