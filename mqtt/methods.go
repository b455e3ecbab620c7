package mqtt

import (
	"strconv"
	"time"

	"github.com/twinhub/twinhub/hub"
)

// Direct methods: while a connection holds the $iothub/methods/POST/#
// subscription, it serves its identity's method calls on this node. A
// call goes out as $iothub/methods/POST/<name>/?$rid=<rid> (QoS 0, JSON
// body: "null" when there is no payload, since the Node SDK parses every
// body), and only this connection's $iothub/methods/res/<status>/?$rid=<rid>
// answers it.

// maxPendingCalls bounds the calls a connection has been given and not
// answered; older ones past their deadline are forgotten first.
const maxPendingCalls = 1024

// methodState is the direct-method side of a connection, under conn.mu.
type methodState struct {
	cancel func() // ends serving methods
	calls  map[string]*hub.MethodCall
	seq    uint64
}

// MethodTopic is $iothub/methods/POST/<name>/?$rid=<rid>.
func MethodTopic(name, rid string) string {
	return methodRequestPrefix + name + "/?" + requestIDParam + "=" + rid
}

// startMethods begins serving method calls, once.
func (c *conn) startMethods() {
	c.mu.Lock()
	if c.methods.cancel != nil {
		c.mu.Unlock()
		return
	}
	c.methods.cancel = func() {}
	c.mu.Unlock()
	cancel := c.srv.hub.ServeMethods(c.key, c.id, c.deliverMethod)
	c.mu.Lock()
	stopped := c.methods.cancel == nil
	if !stopped {
		c.methods.cancel = cancel
	}
	c.mu.Unlock()
	if stopped {
		cancel()
	}
}

// stopMethods ends serving method calls; pending ones time out at the caller.
func (c *conn) stopMethods() {
	c.mu.Lock()
	cancel := c.methods.cancel
	c.methods.cancel = nil
	c.methods.calls = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// deliverMethod sends a call to the device. It runs on the hub's delivery
// goroutine and must not block: send only queues.
func (c *conn) deliverMethod(call *hub.MethodCall) {
	now := time.Now()
	c.mu.Lock()
	if c.methods.cancel == nil {
		c.mu.Unlock()
		return
	}
	if c.methods.calls == nil {
		c.methods.calls = map[string]*hub.MethodCall{}
	}
	if len(c.methods.calls) >= maxPendingCalls {
		for rid, p := range c.methods.calls {
			if now.After(p.Deadline) {
				delete(c.methods.calls, rid)
			}
		}
	}
	if len(c.methods.calls) >= maxPendingCalls {
		c.mu.Unlock()
		c.log.Warn("method call dropped: too many unanswered calls", "method", call.Name)
		return
	}
	c.methods.seq++
	// Hex, as the Go SDK writes its own request ids; Node takes any string.
	rid := strconv.FormatUint(c.methods.seq, 16)
	c.methods.calls[rid] = call
	c.mu.Unlock()
	c.send(publishPacket(MethodTopic(call.Name, rid), call.Payload))
}

// methodResponse passes a device's answer to the call it answers. An
// answer to no call (unknown, or timed out) is ignored, as IoT Hub does.
func (c *conn) methodResponse(t Topic, body []byte) {
	c.mu.Lock()
	call := c.methods.calls[t.RequestID]
	delete(c.methods.calls, t.RequestID)
	c.mu.Unlock()
	if call == nil {
		c.log.Debug("method response with no pending call", "rid", t.RequestID, "status", t.Status)
		return
	}
	call.Respond(t.Status, body)
}
