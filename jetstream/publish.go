package jetstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acker matches the stream's answers to telemetry appends that do not
// wait (Telemetry.AppendAsync) by the number at the end of their reply
// subject, on one subscription for all of them.
//
// Why not nats.go's JetStream publish: each one is a request with a
// context, a channel, a response map entry and its answer decoded into a
// PubAck by encoding/json. (Registry writes went through it too for a
// while, 2026-12-06; the hub's graceful shutdown then timed out in some
// runs of TestGracefulShutdown, so they went back to nats.go's KV.)
//
// The number of a publish that got its answer is used again (a publish
// gets exactly one answer, so no other can arrive for it): the reply
// subjects in use stay as few as the publishes that wait at once, and the
// NATS server finds them in its subject cache instead of matching a new
// subject for every answer. The number of a publish that timed out is
// never used again, lest its late answer be taken for another's.
type acker struct {
	prefix string

	mu       sync.Mutex
	seq      uint64
	free     []uint64 // numbers answered, to use again
	pending  map[uint64]pendingAck
	replies  map[uint64]string // reply subjects of the numbers pending or free
	sweeping bool
}

// pendingAck is an append waiting for its answer: done is called with
// it.
type pendingAck struct {
	done     func(error)
	deadline time.Time
}

// maxFreeIDs bounds the numbers kept for use again.
const maxFreeIDs = 4096

// ackSweep is how often publishes are checked for a missing answer.
const ackSweep = 500 * time.Millisecond

// errNoAnswer is a publish whose answer did not come by its deadline; it
// is a nats.ErrTimeout, which the store reports as unavailable.
var errNoAnswer = fmt.Errorf("%w: no answer from the stream in time", nats.ErrTimeout)

// newAcker subscribes to the answers. An inbox of its own: the
// connection's request inbox (NewRespInbox) would also take the answers
// of JetStream API requests, and its subscription these answers.
func newAcker(nc *nats.Conn) (*acker, error) {
	a := &acker{prefix: nc.NewInbox() + ".", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
	sub, err := nc.Subscribe(a.prefix+"*", a.onAnswer)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	return a, nil
}

// add registers a publish and returns its number and reply subject.
func (a *acker) add(p pendingAck) (uint64, string) {
	a.mu.Lock()
	var id uint64
	var reply string
	if n := len(a.free); n > 0 {
		id = a.free[n-1]
		a.free = a.free[:n-1]
		reply = a.replies[id]
	} else {
		a.seq++
		id = a.seq
		reply = a.prefix + strconv.FormatUint(id, 36)
		a.replies[id] = reply
	}
	a.pending[id] = p
	sweep := !a.sweeping
	a.sweeping = true
	a.mu.Unlock()
	if sweep {
		go a.sweep()
	}
	return id, reply
}

// take removes and returns a publish; false when it has been answered or
// timed out already. answered says that the answer came, so that the
// number may be used again.
func (a *acker) take(id uint64, answered bool) (pendingAck, bool) {
	a.mu.Lock()
	p, ok := a.pending[id]
	if ok {
		delete(a.pending, id)
		if answered && len(a.free) < maxFreeIDs {
			a.free = append(a.free, id)
		} else {
			delete(a.replies, id)
		}
	}
	a.mu.Unlock()
	return p, ok
}

func (a *acker) onAnswer(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(a.prefix):], 36, 64)
	if err != nil {
		return
	}
	if p, ok := a.take(id, true); ok {
		p.done(pubAckError(m))
	}
}

// sweep fails the publishes left without an answer past their deadline,
// while any are pending.
func (a *acker) sweep() {
	var late []pendingAck
	for {
		time.Sleep(ackSweep)
		now := time.Now()
		a.mu.Lock()
		for id, p := range a.pending {
			if now.After(p.deadline) {
				late = append(late, p)
				delete(a.pending, id)
				delete(a.replies, id)
			}
		}
		idle := len(a.pending) == 0
		if idle {
			a.sweeping = false
		}
		a.mu.Unlock()
		for i, p := range late {
			p.done(errNoAnswer)
			late[i] = pendingAck{}
		}
		late = late[:0]
		if idle {
			return
		}
	}
}

// pubAckError reads JetStream's answer to a publish: nil when the message
// is stored. A success is {"stream":..,"seq":..}; the answer is decoded
// only when it mentions an error.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return nats.ErrNoResponders
		}
		return errors.New("publish: empty answer from the stream")
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) {
		return nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("publish: answer %q: %w", m.Data, err)
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}
