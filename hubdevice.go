package twinhub

import (
	"context"
	"strings"
)

// What the device front ends need from the hub beyond authentication and
// twins: telling the other nodes of a cluster that an identity has a new
// connection, so that the old one, wherever it is, gives way (IoT Hub
// keeps one connection an identity), and reading where an identity's
// desired properties stand.

const connectedSubject = "twinhub.connected."

// AnnounceConnection tells every node (this one included) that k now has
// the connection named connID. Delivery is at most once: a node that
// misses it keeps the old connection until that one drops by itself.
func (h *Hub) AnnounceConnection(k Key, connID string) {
	if h.bus == nil {
		return
	}
	if err := h.bus.Publish(connectedSubject+EncodeKey(k), []byte(connID)); err != nil {
		h.log.Warn("announcing a device connection", "identity", k.String(), "err", err)
	}
}

// WatchConnections calls fn with every announcement of every node until
// cancel is called. fn must not block.
func (h *Hub) WatchConnections(fn func(k Key, connID string)) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.bus.Subscribe(connectedSubject+">", func(subject string, data []byte) {
		k, err := DecodeKey(strings.TrimPrefix(subject, connectedSubject))
		if err != nil {
			return
		}
		fn(k, string(data))
	})
}

// DesiredVersion is the current $version of k's desired properties.
func (h *Hub) DesiredVersion(ctx context.Context, k Key) (int64, error) {
	rec, err := h.get(ctx, k)
	if err != nil {
		return 0, err
	}
	return rec.Twin.Desired.Version, nil
}

const revokedSubject = "twinhub.revoked."

// RevokeConnections tells every node to close the device connections of
// k, because k was deleted or disabled (IoT Hub drops them then). For a
// device it closes its modules' connections too.
func (h *Hub) RevokeConnections(k Key) {
	if h.bus == nil {
		return
	}
	if err := h.bus.Publish(revokedSubject+EncodeKey(k), nil); err != nil {
		h.log.Warn("revoking device connections", "identity", k.String(), "err", err)
	}
}

// WatchRevocations calls fn with every identity whose connections are
// revoked, on any node, until cancel is called. fn must not block.
func (h *Hub) WatchRevocations(fn func(k Key)) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.bus.Subscribe(revokedSubject+">", func(subject string, _ []byte) {
		if k, err := DecodeKey(strings.TrimPrefix(subject, revokedSubject)); err == nil {
			fn(k)
		}
	})
}
