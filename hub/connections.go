package hub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub"
)

// What the device front ends need from the hub beyond authentication and
// twins: telling the other nodes of a cluster that an identity has a new
// connection, so that the old one, wherever it is, gives way (IoT Hub
// keeps one connection an identity), and reading where an identity's
// desired properties stand.

const connectedSubject = "twinhub.connected."

// NewConnectionID names a device connection made on this node, over any
// transport: the time it was made in fixed-width hex, then the node and a
// counter. Ids of one identity compare as strings in the order the
// connections were made, so that when two connections of the same
// identity are announced (two nodes, or MQTT and AMQP) the newer one stays.
func (h *Hub) NewConnectionID() string {
	return fmt.Sprintf("%016x-%s-%x", time.Now().UnixNano(), h.node, h.connSeq.Add(1))
}

// AnnounceConnection tells every node (this one included) that k now has
// the connection named connID. Delivery is at most once: a node that
// misses it keeps the old connection until that one drops by itself.
func (h *Hub) AnnounceConnection(k twinhub.Key, connID string) {
	if h.bus == nil {
		return
	}
	if err := h.bus.Publish(connectedSubject+twinhub.EncodeKey(k), []byte(connID)); err != nil {
		h.log.Warn("announcing a device connection", "identity", k.String(), "err", err)
	}
}

// WatchConnections calls fn with every announcement of every node until
// cancel is called. fn must not block.
func (h *Hub) WatchConnections(fn func(k twinhub.Key, connID string)) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.bus.Subscribe(connectedSubject+">", func(subject string, data []byte) {
		k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, connectedSubject))
		if err != nil {
			return
		}
		fn(k, string(data))
	})
}

// DesiredVersion is the current $version of k's desired properties.
func (h *Hub) DesiredVersion(ctx context.Context, k twinhub.Key) (int64, error) {
	e, err := h.read(ctx, k)
	if err != nil {
		return 0, err
	}
	return e.rec.Twin.Desired.Version, nil
}

const revokedSubject = "twinhub.revoked."

// RevokeConnections tells every node to close the device connections of
// k, because k was deleted or disabled (IoT Hub drops them then). For a
// device it closes its modules' connections too.
func (h *Hub) RevokeConnections(k twinhub.Key) {
	if h.bus == nil {
		return
	}
	if err := h.bus.Publish(revokedSubject+twinhub.EncodeKey(k), nil); err != nil {
		h.log.Warn("revoking device connections", "identity", k.String(), "err", err)
	}
}

// WatchRevocations calls fn with every identity whose connections are
// revoked, on any node, until cancel is called. fn must not block.
func (h *Hub) WatchRevocations(fn func(k twinhub.Key)) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.bus.Subscribe(revokedSubject+">", func(subject string, _ []byte) {
		if k, err := twinhub.DecodeKey(strings.TrimPrefix(subject, revokedSubject)); err == nil {
			fn(k)
		}
	})
}

// --- connection states ---

// IoT Hub documents an identity's connectionState as informational, and
// updated with some delay. twinhub stores it in the identity's record, a
// compare-and-set like any other write; a new connection need not wait
// for it (NoteConnectionState), which takes a store read and write off
// the path of every CONNACK.
//
// connStates orders the writes of each identity's state and coalesces
// them: at most one write of an identity is under way at once, and while
// it is, later changes wait in pending, the last one winning. So the state
// stored last is the state asked for last, whether callers wait for the
// write (SetConnectionState) or not. Reads of an identity on this node
// wait for its pending write (settle), so that a device that has its
// CONNACK reads as connected here at once; other nodes see the state
// when it is written, a few milliseconds later.
//
// Writes go out in windows: a state change waits in queue until the
// window that it opened or found open ends (connStateWindow), and then
// the window's writes go out together, on at most connStateWriters
// goroutines. Why: JetStream's cost of a write falls with the writes it
// takes at once. One by one, as devices connect at a few thousand a
// second, each write woke the stream's goroutines and flushed on its own,
// and the connection-state writes took a fifth of the hub's CPU while
// devices connected, more than the reported patch a device sends, end to
// end. Identities that wait take no memory but their entry in pending.
type connStates struct {
	mu sync.Mutex
	// pending holds the state each identity should get next; active, the
	// identities a writer has taken, with the write under way (nil
	// between writes); queue, the identities in pending that wait for
	// their window to end (a window is open, its timer set, while queue
	// has any); batch, those whose window ended, for the writers to take.
	pending map[twinhub.Key]*connWrite
	active  map[twinhub.Key]*connWrite
	queue   []twinhub.Key
	batch   []twinhub.Key
	writers int
	// n counts the identities in pending or active, so that reads of
	// settled identities take no lock; peak is the most since the tables
	// were last made anew.
	n    atomic.Int64
	peak int
}

type connWrite struct {
	connected bool
	// detached: a caller does not wait for the write, so its error is
	// logged here.
	detached bool
	done     chan struct{}
	err      error
}

// connStateWriters bounds the connection-state writes under way at once;
// connStateTimeout, each write; connStateWindow is how long a state change
// waits for others to go out with.
const (
	connStateWriters = 32
	connStateTimeout = 30 * time.Second
	connStateWindow  = 5 * time.Millisecond
)

func (s *connStates) init() {
	s.pending = map[twinhub.Key]*connWrite{}
	s.active = map[twinhub.Key]*connWrite{}
}

// connStatesKeptRoom is the most identities whose room the tables keep
// once every write is done: Go's maps and slices keep the room of their
// largest size, and a connect storm of 2,000 devices left about 340 bytes
// an identity there, for good (bench sessions-amqp, the heap after a
// collection).
const connStatesKeptRoom = 256

// count refreshes n, and makes the tables anew when they are empty after
// holding more than connStatesKeptRoom; s.mu is held.
func (s *connStates) count() {
	n := len(s.pending) + len(s.active)
	s.n.Store(int64(n))
	s.peak = max(s.peak, n)
	if n == 0 && s.peak > connStatesKeptRoom {
		s.init()
		// Every identity in queue and batch is in pending: both are empty.
		s.queue, s.batch = nil, nil
		s.peak = 0
	}
}

// SetConnectionState records that an identity connected or disconnected
// and returns once the store has it.
func (h *Hub) SetConnectionState(ctx context.Context, k twinhub.Key, connected bool) error {
	w := h.queueConnectionState(k, connected, false)
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NoteConnectionState records that an identity connected or disconnected
// without waiting for the store: the write follows within a window, in
// order with the identity's other connection-state writes, and reads on
// this node wait for it. An error is logged.
func (h *Hub) NoteConnectionState(k twinhub.Key, connected bool) {
	h.queueConnectionState(k, connected, true)
}

// FlushConnectionStates returns once every connection state noted before
// it is stored (or its write failed), or when ctx ends.
func (h *Hub) FlushConnectionStates(ctx context.Context) error {
	for {
		s := &h.states
		s.mu.Lock()
		var waits []chan struct{}
		for _, w := range s.pending {
			waits = append(waits, w.done)
		}
		for _, w := range s.active {
			if w != nil {
				waits = append(waits, w.done)
			}
		}
		s.mu.Unlock()
		if len(waits) == 0 {
			return nil
		}
		for _, done := range waits {
			select {
			case <-done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func (h *Hub) queueConnectionState(k twinhub.Key, connected, detached bool) *connWrite {
	s := &h.states
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.pending[k]; w != nil {
		w.connected = connected
		w.detached = w.detached || detached
		return w
	}
	w := &connWrite{connected: connected, detached: detached, done: make(chan struct{})}
	s.pending[k] = w
	defer s.count()
	if _, taken := s.active[k]; taken {
		return w // its writer takes it next
	}
	s.queue = append(s.queue, k)
	if len(s.queue) == 1 { // the first of its window
		time.AfterFunc(connStateWindow, h.endConnStateWindow)
	}
	return w
}

// endConnStateWindow hands the window's state changes to writers: new
// ones, up to the bound, since the running ones are each in a write (a
// slow one holds its writer up to connStateTimeout).
func (h *Hub) endConnStateWindow() {
	s := &h.states
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch = append(s.batch, s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	for n := len(s.batch); n > 0 && s.writers < connStateWriters; n-- {
		s.writers++
		go h.writeConnectionStates()
	}
}

// writeConnectionStates takes identities from the batch and writes their
// pending states, one after the other, until the batch is empty.
func (h *Hub) writeConnectionStates() {
	s := &h.states
	var k twinhub.Key
	taken := false
	for {
		s.mu.Lock()
		var w *connWrite
		if taken {
			if w = s.pending[k]; w == nil {
				delete(s.active, k)
				taken = false
			}
		}
		if !taken {
			if len(s.batch) == 0 {
				s.writers--
				s.count()
				s.mu.Unlock()
				return
			}
			k, taken = s.batch[0], true
			s.batch = s.batch[1:]
			w = s.pending[k]
		}
		delete(s.pending, k)
		s.active[k] = w
		s.count()
		detached := w.detached
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), connStateTimeout)
		w.err = h.writeConnectionState(ctx, k, w.connected)
		cancel()
		if w.err != nil && detached {
			if notFound(w.err) {
				h.log.Debug("recording a connection state: the identity is gone", "identity", k.String())
			} else {
				h.log.Warn("recording a connection state", "identity", k.String(), "connected", w.connected, "err", w.err)
			}
		}
		s.mu.Lock()
		s.active[k] = nil
		s.mu.Unlock()
		close(w.done)
	}
}

// settle waits until k has no connection-state write pending on this node.
func (s *connStates) settle(ctx context.Context, k twinhub.Key) error {
	for s.n.Load() != 0 {
		s.mu.Lock()
		w := s.pending[k]
		if w == nil {
			w = s.active[k]
		}
		s.mu.Unlock()
		if w == nil {
			return nil
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// writeConnectionState stores that an identity connected or disconnected
// (connections.go orders these writes).
func (h *Hub) writeConnectionState(ctx context.Context, k twinhub.Key, connected bool) error {
	state := twinhub.StateDisconnected
	if connected {
		state = twinhub.StateConnected
	}
	_, err := h.modifyShallow(ctx, k, func(rec *twinhub.Record) error {
		now := twinhub.Now()
		if rec.Module != nil {
			rec.Module.ConnectionState, rec.Module.ConnectionStateUpdatedTime, rec.Module.LastActivityTime = state, now, now
		} else {
			rec.Device.ConnectionState, rec.Device.ConnectionStateUpdatedTime, rec.Device.LastActivityTime = state, now, now
		}
		return nil
	})
	return err
}
