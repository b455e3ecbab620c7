package amqp

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/amqp/wire"
	"github.com/twinhub/twinhub/hub"
)

// Direct methods over AMQP: a device (or module) attaches a receiver and
// a sender to /devices/<id>[/modules/<m>]/methods/devicebound, paired by
// com.microsoft:channel-correlation-id ("methods:<uuid>"). While its
// receiver is attached, the connection serves the identity's method calls
// on this node (hub.ServeMethods, as an MQTT subscription does): each call
// goes to the device with a uuid correlation-id, the application property
// IoThub-methodname and the payload as the body; the device answers on
// its sender with that correlation-id, the application property
// IoThub-status and its payload.

const (
	methodsSuffix      = "methods/devicebound"
	methodNameProperty = "IoThub-methodname"
	methodStatusKey    = "IoThub-status"
	// maxPendingMethodCalls bounds the calls of a channel that wait for
	// the device's credit or answer; past it a call is dropped (its
	// caller times out), as over MQTT.
	maxPendingMethodCalls = 1024
)

// methodChannel is a device's pair of method links.
type methodChannel struct {
	key   twinhub.Key
	out   *link // the device's receiver: the calls
	calls map[string]*hub.MethodCall
	stop  func() // ends serving the calls
}

// attachMethods registers a method link: the device's receiver starts
// serving its identity's calls, its sender gets a worker for the answers.
// Called with mu held.
func (c *conn) attachMethods(l *link, a wire.Attach, address string, k twinhub.Key) {
	id := channelOf(a, address)
	ch := c.methodChannels[id]
	if ch == nil || ch.key != k {
		ch = &methodChannel{key: k, calls: map[string]*hub.MethodCall{}}
		c.methodChannels[id] = ch
	}
	if l.receiving {
		c.startWorker(l, func(m wire.Message) (wire.Described, func()) {
			c.methodAnswer(id, m)
			return wire.Accepted, nil
		})
		return
	}
	if ch.out != nil && !ch.out.gone {
		c.closeLink(ch.out, &wire.Error{Condition: condStolen, Description: "another method receiver of the channel attached"})
	}
	ch.out = l
	// start runs once the attach is answered, with mu held: it starts
	// serving; the calls are sent from a queue whose goroutine runs while
	// it has calls, and takes mu.
	l.start = func() {
		calls := newSendQueue(maxPendingMethodCalls, &c.senders, func(call *hub.MethodCall, _ int) error {
			cid := newUUID()
			c.mu.Lock()
			ch.calls[idString(cid)] = call
			c.mu.Unlock()
			return c.deliver(l, wire.Message{
				Properties:            wire.Properties{CorrelationID: cid},
				ApplicationProperties: wire.Map{{Key: methodNameProperty, Value: call.Name}},
				Data:                  call.Payload,
			})
		})
		cancel := c.srv.hub.ServeMethods(k, c.id, func(call *hub.MethodCall) {
			if !calls.add(call) {
				c.srv.log.Warn("amqp: method call dropped: too many wait for the device", "identity", k.String(), "method", call.Name)
			}
		})
		ch.stop = func() { cancel(); calls.stop() }
	}
	l.stop = func() { c.endMethodChannel(id, l) }
}

// endMethodChannel stops serving a channel's calls when its receiver
// goes; calls not answered time out at their callers. Called with mu
// held.
func (c *conn) endMethodChannel(id string, out *link) {
	ch := c.methodChannels[id]
	if ch == nil || ch.out != out {
		return
	}
	if ch.stop != nil {
		ch.stop()
	}
	delete(c.methodChannels, id)
}

// methodAnswer passes a device's answer to the call it answers; one to
// no call (unknown, or timed out) is ignored, as IoT Hub does. It runs
// on the sender's worker.
func (c *conn) methodAnswer(id string, m wire.Message) {
	cid := idString(m.Properties.CorrelationID)
	v, _ := m.ApplicationProperties.Get(methodStatusKey)
	status, err := statusOf(v)
	c.mu.Lock()
	var call *hub.MethodCall
	if ch := c.methodChannels[id]; ch != nil {
		call = ch.calls[cid]
		delete(ch.calls, cid)
	}
	c.mu.Unlock()
	if call == nil {
		c.srv.log.Debug("amqp method answer with no pending call", "correlation-id", cid)
		return
	}
	if err != nil {
		c.srv.log.Debug("amqp method answer without a status", "err", err)
		status = 500
	}
	call.Respond(status, bodyOf(m))
}

// statusOf reads IoThub-status, an int the SDKs send as one of AMQP's
// integer types (a JavaScript number may come as a double, or a string).
func statusOf(v any) (int, error) {
	switch x := v.(type) {
	case int32:
		return int(x), nil
	case int64:
		return int(x), nil
	case int16:
		return int(x), nil
	case int8:
		return int(x), nil
	case uint32:
		return int(x), nil
	case uint16:
		return int(x), nil
	case uint8:
		return int(x), nil
	case uint64:
		return int(x), nil
	case float64:
		return int(x), nil
	case float32:
		return int(x), nil
	case string:
		return strconv.Atoi(strings.TrimSpace(x))
	}
	return 0, fmt.Errorf("%s is a %T", methodStatusKey, v)
}

// newUUID is a random (version 4) UUID.
func newUUID() wire.UUID {
	var u wire.UUID
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
