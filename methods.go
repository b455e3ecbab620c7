package twinhub

import (
	"encoding/json"
	"time"
)

// Direct methods: a back end calls a method on a device (or module) and
// waits for its answer. The call goes over the Bus to every node; the node
// that holds the identity's connection, subscribed to methods, accepts it
// and hands it to that connection; the connection's answer goes back to
// the calling node's reply subject. Only the connection that accepted a
// call can answer it.
//
// Subjects (all core NATS, at most once):
//
//	twinhub.methods.call.<identity>         a call, to every node
//	twinhub.methods.reply.<node>.<call id>  accepted / result, to the caller
//	twinhub.methods.ready.<identity>        a connection began serving methods

// Limits of direct methods, as IoT Hub documents them.
const (
	MaxMethodPayload             = 128 << 10
	DefaultMethodResponseTimeout = 30 * time.Second
	MinMethodResponseTimeout     = 5 * time.Second
	MaxMethodResponseTimeout     = 300 * time.Second
	MaxMethodConnectTimeout      = 300 * time.Second
	// MaxMethodNameLength bounds a method name, which travels in a topic.
	MaxMethodNameLength = 128
)

// MethodRequest is the body of POST /twins/{id}/methods.
type MethodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload,omitempty"`
	ResponseTimeoutInSeconds *int            `json:"responseTimeoutInSeconds,omitempty"`
	ConnectTimeoutInSeconds  *int            `json:"connectTimeoutInSeconds,omitempty"`
}

// MethodResult is the device's answer: its status and JSON payload.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// --- wire messages on the bus ---

// --- the router of one node ---
