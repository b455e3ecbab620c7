package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamStatus is one of the hub's streams (its buckets' included) as
// JetStream reports it: size, and where its replicas are.
type StreamStatus struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	Replicas int    `json:"replicas"`
	// Leader and Peers: the node that takes the stream's writes and the
	// others that copy them (empty without a cluster).
	Leader string       `json:"leader,omitempty"`
	Peers  []PeerStatus `json:"peers,omitempty"`
}

// PeerStatus is a replica as its leader sees it: whether it has every
// write (current), how many it lacks (lag), when it was last heard from.
type PeerStatus struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag,omitempty"`
	// ActiveMs is how long ago the leader last heard from it.
	ActiveMs int64 `json:"activeMs"`
}

// Streams lists the hub's streams, by name.
func Streams(ctx context.Context, nc *nats.Conn) ([]StreamStatus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var out []StreamStatus
	list := js.ListStreams(ctx)
	for info := range list.Info() {
		name := info.Config.Name
		if !strings.HasPrefix(name, "twinhub") && !strings.HasPrefix(name, "KV_twinhub") {
			continue
		}
		s := StreamStatus{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes, Replicas: info.Config.Replicas}
		if c := info.Cluster; c != nil {
			s.Leader = c.Leader
			for _, p := range c.Replicas {
				s.Peers = append(s.Peers, PeerStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, ActiveMs: p.Active.Milliseconds()})
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, storeError(list.Err())
}

// MetaStatus is the JetStream meta group of an embedded cluster: the
// nodes that place streams, and which of them leads.
type MetaStatus struct {
	Leader string       `json:"leader"`
	Size   int          `json:"size"`
	Peers  []PeerStatus `json:"peers"`
}

// Meta is the meta group as this node sees it; nil without a cluster.
func (e *Embedded) Meta() (*MetaStatus, error) {
	if !e.Server.JetStreamIsClustered() {
		return nil, nil
	}
	jsz, err := e.Server.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return nil, fmt.Errorf("reading the cluster's JetStream state: %v", err)
	}
	m := &MetaStatus{Leader: jsz.Meta.Leader, Size: jsz.Meta.Size}
	for _, p := range jsz.Meta.Replicas {
		m.Peers = append(m.Peers, PeerStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, ActiveMs: p.Active.Milliseconds()})
	}
	return m, nil
}

// NodeStatus is what a node of the hub says of itself when asked.
type NodeStatus struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	// Addresses are where it listens (https, mqtt, amqp).
	Addresses map[string]string `json:"addresses"`
	// Connections counts its device and module connections by transport.
	Connections map[string]int `json:"connections"`
}

// statusSubject is where nodes are asked for their status; each answers
// on the reply subject of the request.
const statusSubject = "twinhub.cluster.status"

// AnswerStatus has this node answer requests for its status with what
// status returns, until stop is called.
func AnswerStatus(nc *nats.Conn, status func() NodeStatus) (stop func(), err error) {
	sub, err := nc.Subscribe(statusSubject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		data, err := json.Marshal(status())
		if err == nil {
			nc.Publish(m.Reply, data)
		}
	})
	if err != nil {
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}

// NodeStatuses asks every node of the hub for its status and returns the
// answers that come within wait, by name. A node that is down, or cut off
// from this one, is missing.
func NodeStatuses(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]NodeStatus, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(statusSubject, inbox, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []NodeStatus
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the wait is over
		}
		var s NodeStatus
		if json.Unmarshal(m.Data, &s) == nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
