package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// methodAckWait is how long a call waits for a node to accept it when the
// registry says the device is connected but no connect timeout was given.
const methodAckWait = 2 * time.Second

// methodTimeoutMargin is how much sooner than the caller's own deadline
// (connect + response timeout after the request) the hub answers 504.
const methodTimeoutMargin = 250 * time.Millisecond

const (
	methodCallSubject  = "twinhub.methods.call."
	methodReplySubject = "twinhub.methods.reply."
	methodReadySubject = "twinhub.methods.ready."
)

// MethodCall is a call handed to the connection that serves an identity's
// methods. The connection answers it once with Respond.
type MethodCall struct {
	ID       string
	Name     string
	Payload  json.RawMessage // valid JSON, "null" when the caller sent none
	Deadline time.Time

	respond func(status int, payload []byte)
	once    sync.Once
}

// Respond sends the device's answer to the caller. A payload that is not
// JSON is passed on as a JSON string; an empty one as null.
func (c *MethodCall) Respond(status int, payload []byte) {
	c.once.Do(func() { c.respond(status, normalizeJSON(payload)) })
}

func normalizeJSON(b []byte) json.RawMessage {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

type methodCallMsg struct {
	ID       string          `json:"id"`
	Reply    string          `json:"reply"`
	Name     string          `json:"name"`
	Payload  json.RawMessage `json:"payload"`
	Deadline int64           `json:"deadline"` // unix ms
}

const (
	replyAccepted = "accepted"
	replyResult   = "result"
)

type methodReplyMsg struct {
	Kind    string          `json:"kind"`
	Conn    string          `json:"conn"`
	Status  int             `json:"status,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type methodServer struct {
	connID string
	fn     func(*MethodCall)
}

type pendingCall struct {
	k       twinhub.Key
	msg     []byte // the call as published, for re-sending
	replies chan methodReplyMsg
}

type methodRouter struct {
	h    *Hub
	node string
	err  error

	mu      sync.Mutex
	servers map[twinhub.Key]*methodServer
	pending map[string]*pendingCall // calls made from this node, by id
	seen    map[string]time.Time    // calls accepted here, until their deadline
	// nextSweep is when seen is next cleared of past deadlines.
	nextSweep time.Time
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// methods returns the node's router, subscribing it to the bus on first use.
func (h *Hub) methods() (*methodRouter, error) {
	h.methodsOnce.Do(func() {
		r := &methodRouter{
			h: h, node: randomHex(8),
			servers: map[twinhub.Key]*methodServer{},
			pending: map[string]*pendingCall{},
			seen:    map[string]time.Time{},
		}
		h.methodRouter = r
		if h.bus == nil {
			return
		}
		if _, err := h.bus.Subscribe(methodCallSubject+">", r.onCall); err != nil {
			r.err = err
			return
		}
		if _, err := h.bus.Subscribe(methodReplySubject+r.node+".>", r.onReply); err != nil {
			r.err = err
			return
		}
		if _, err := h.bus.Subscribe(methodReadySubject+">", r.onReady); err != nil {
			r.err = err
		}
	})
	return h.methodRouter, h.methodRouter.err
}

// ServeMethods makes connection connID the receiver of identity k's
// method calls on this node until cancel is called, and tells callers
// waiting for k to come online. fn must not block.
func (h *Hub) ServeMethods(k twinhub.Key, connID string, fn func(*MethodCall)) (cancel func()) {
	r, err := h.methods()
	if err != nil {
		h.log.Error("direct methods unavailable", "err", err)
		return func() {}
	}
	s := &methodServer{connID: connID, fn: fn}
	r.mu.Lock()
	r.servers[k] = s
	r.mu.Unlock()
	if h.bus != nil {
		h.bus.Publish(methodReadySubject+twinhub.EncodeKey(k), nil)
	}
	return func() {
		r.mu.Lock()
		if r.servers[k] == s {
			delete(r.servers, k)
		}
		r.mu.Unlock()
	}
}

// onCall hands a call to the local connection of its identity, if any,
// and tells the caller it was accepted. A call seen before (the caller
// sends again while it waits) is ignored.
func (r *methodRouter) onCall(subject string, data []byte) {
	k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, methodCallSubject))
	if err != nil {
		return
	}
	var m methodCallMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return
	}
	deadline := time.UnixMilli(m.Deadline)
	now := time.Now()
	r.mu.Lock()
	s := r.servers[k]
	_, dup := r.seen[m.ID]
	if s == nil || dup || now.After(deadline) {
		r.mu.Unlock()
		return
	}
	r.seen[m.ID] = deadline
	if now.After(r.nextSweep) {
		r.nextSweep = now.Add(time.Second)
		for id, d := range r.seen {
			if now.After(d) {
				delete(r.seen, id)
			}
		}
	}
	r.mu.Unlock()
	r.reply(m.Reply, methodReplyMsg{Kind: replyAccepted, Conn: s.connID})
	call := &MethodCall{ID: m.ID, Name: m.Name, Payload: m.Payload, Deadline: deadline}
	call.respond = func(status int, payload []byte) {
		r.reply(m.Reply, methodReplyMsg{Kind: replyResult, Conn: s.connID, Status: status, Payload: payload})
	}
	s.fn(call)
}

func (r *methodRouter) reply(subject string, m methodReplyMsg) {
	data, err := json.Marshal(m)
	if err == nil {
		err = r.h.bus.Publish(subject, data)
	}
	if err != nil {
		r.h.log.Warn("answering a method call", "err", err)
	}
}

func (r *methodRouter) onReply(subject string, data []byte) {
	id := subject[strings.LastIndexByte(subject, '.')+1:]
	var m methodReplyMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return
	}
	r.mu.Lock()
	p := r.pending[id]
	r.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p.replies <- m:
	default:
	}
}

// onReady sends again the calls waiting for an identity that has just
// begun serving methods somewhere.
func (r *methodRouter) onReady(subject string, _ []byte) {
	k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, methodReadySubject))
	if err != nil {
		return
	}
	r.mu.Lock()
	var resend []*pendingCall
	for _, p := range r.pending {
		if p.k == k {
			resend = append(resend, p)
		}
	}
	r.mu.Unlock()
	for _, p := range resend {
		r.h.bus.Publish(methodCallSubject+twinhub.EncodeKey(k), p.msg)
	}
}

func errDeviceNotOnline(k twinhub.Key) *twinhub.Error {
	return twinhub.Errorf(http.StatusNotFound, "DeviceNotOnline", "Timed out waiting for %s to connect", k)
}

func errMethodTimeout(k twinhub.Key, name string) *twinhub.Error {
	return twinhub.Errorf(http.StatusGatewayTimeout, "GatewayTimeout", "Timed out waiting for the response from %s to method %s", k, name)
}

// checkMethodRequest validates a request and returns its timeouts.
func checkMethodRequest(req *twinhub.MethodRequest) (response, connect time.Duration, err error) {
	name := req.MethodName
	if name == "" {
		return 0, 0, twinhub.ErrInvalid("methodName is required")
	}
	if len(name) > twinhub.MaxMethodNameLength || strings.ContainsAny(name, "/#+?\x00") {
		return 0, 0, twinhub.ErrInvalid("methodName %q is longer than %d bytes or holds / # + or ?", name, twinhub.MaxMethodNameLength)
	}
	if len(req.Payload) > twinhub.MaxMethodPayload {
		return 0, 0, twinhub.ErrTooLarge("method payload is %d bytes; the limit is %d", len(req.Payload), twinhub.MaxMethodPayload)
	}
	response = twinhub.DefaultMethodResponseTimeout
	if req.ResponseTimeoutInSeconds != nil {
		response = time.Duration(*req.ResponseTimeoutInSeconds) * time.Second
		if response < twinhub.MinMethodResponseTimeout || response > twinhub.MaxMethodResponseTimeout {
			return 0, 0, twinhub.ErrInvalid("responseTimeoutInSeconds must be from %d to %d", int(twinhub.MinMethodResponseTimeout.Seconds()), int(twinhub.MaxMethodResponseTimeout.Seconds()))
		}
	}
	if req.ConnectTimeoutInSeconds != nil {
		connect = time.Duration(*req.ConnectTimeoutInSeconds) * time.Second
		if connect < 0 || connect > twinhub.MaxMethodConnectTimeout {
			return 0, 0, twinhub.ErrInvalid("connectTimeoutInSeconds must be from 0 to %d", int(twinhub.MaxMethodConnectTimeout.Seconds()))
		}
	}
	return response, connect, nil
}

// InvokeMethod calls a direct method on identity k and waits for its
// answer: 404 DeviceNotOnline if no connection of k serves methods within
// the connect timeout, 504 GatewayTimeout if the device does not answer
// within the response timeout (counted from when the call reached it).
func (h *Hub) InvokeMethod(ctx context.Context, k twinhub.Key, req twinhub.MethodRequest) (res *twinhub.MethodResult, err error) {
	if h.metrics != nil {
		start := time.Now()
		defer func() { h.metrics.Method(time.Since(start), resultOf(err)) }()
	}
	respTimeout, connTimeout, err := checkMethodRequest(&req)
	if err != nil {
		return nil, err
	}
	payload := normalizeJSON(req.Payload)
	r, err := h.methods()
	if err != nil {
		return nil, err
	}
	if s := r.local(k); s != nil {
		return r.invokeLocal(ctx, k, s, req.MethodName, payload, respTimeout, connTimeout)
	}
	rec, err := h.get(ctx, k)
	if err != nil {
		return nil, err
	}
	state := twinhub.StateDisconnected
	if rec.Module != nil {
		state = rec.Module.ConnectionState
	} else if rec.Device != nil {
		state = rec.Device.ConnectionState
	}
	if connTimeout == 0 && state != twinhub.StateConnected {
		return nil, errDeviceNotOnline(k)
	}
	if h.bus == nil {
		return nil, errDeviceNotOnline(k)
	}
	id := randomHex(12)
	start := time.Now()
	msg, _ := json.Marshal(methodCallMsg{
		ID: id, Reply: methodReplySubject + r.node + "." + id, Name: req.MethodName, Payload: payload,
		Deadline: start.Add(max(connTimeout, methodAckWait) + respTimeout).UnixMilli(),
	})
	p := &pendingCall{k: k, msg: msg, replies: make(chan methodReplyMsg, 16)}
	r.mu.Lock()
	r.pending[id] = p
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}()
	subject := methodCallSubject + twinhub.EncodeKey(k)
	if err := h.bus.Publish(subject, msg); err != nil {
		return nil, err
	}

	// Wait for a node to accept the call, sending it again now and then
	// (besides when a connection announces itself) while the device is
	// away.
	accept := time.NewTimer(max(connTimeout, methodAckWait))
	defer accept.Stop()
	resend := time.NewTicker(h.methodResend)
	defer resend.Stop()
	var conn string
	for conn == "" {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-accept.C:
			return nil, errDeviceNotOnline(k)
		case <-resend.C:
			h.bus.Publish(subject, msg)
		case m := <-p.replies:
			if m.Kind == replyAccepted {
				conn = m.Conn
			}
		}
	}
	resend.Stop()
	// The device has the response timeout from when the call reached it,
	// but the answer must reach callers before their own timer, which
	// starts with the request (the Node SDK drops the request after
	// exactly connect + response timeout and would report a TimeoutError
	// instead of the 504).
	wait := min(respTimeout, time.Until(start.Add(connTimeout+respTimeout-methodTimeoutMargin)))
	respond := time.NewTimer(wait)
	defer respond.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-respond.C:
			return nil, errMethodTimeout(k, req.MethodName)
		case m := <-p.replies:
			if m.Kind == replyResult && m.Conn == conn {
				return &twinhub.MethodResult{Status: m.Status, Payload: normalizeJSON(m.Payload)}, nil
			}
		}
	}
}

// local returns the connection of this node that serves k's methods, if
// any.
func (r *methodRouter) local(k twinhub.Key) *methodServer {
	r.mu.Lock()
	s := r.servers[k]
	r.mu.Unlock()
	return s
}

// invokeLocal calls a method on a connection of this node. The
// connection serving the identity's methods proves that it exists and is
// connected, so neither the registry nor the bus is needed: the call is
// handed over directly and its answer comes back on a channel. Waiting
// for the answer follows the rules of calls over the bus.
func (r *methodRouter) invokeLocal(ctx context.Context, k twinhub.Key, s *methodServer, name string, payload json.RawMessage, respTimeout, connTimeout time.Duration) (*twinhub.MethodResult, error) {
	start := time.Now()
	result := make(chan twinhub.MethodResult, 1)
	call := &MethodCall{
		ID: randomHex(12), Name: name, Payload: payload,
		Deadline: start.Add(max(connTimeout, methodAckWait) + respTimeout),
	}
	call.respond = func(status int, payload []byte) {
		result <- twinhub.MethodResult{Status: status, Payload: payload} // once (Respond), into room for one
	}
	s.fn(call)
	wait := min(respTimeout, time.Until(start.Add(connTimeout+respTimeout-methodTimeoutMargin)))
	respond := time.NewTimer(wait)
	defer respond.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-respond.C:
		return nil, errMethodTimeout(k, name)
	case res := <-result:
		return &res, nil
	}
}
