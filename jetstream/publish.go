package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acker matches the stream's answers to publishes by the number at the
// end of their reply subject, on one subscription for all of them:
// telemetry appends that do not wait (Telemetry.AppendAsync) and registry
// writes that do (request).
//
// Why not nats.go's JetStream publish: each one is a request with a
// context, a channel, a response map entry and its answer decoded into a
// PubAck by encoding/json, about a tenth of the hub's CPU a reported
// patch (BENCHMARKS.md, issue 17).
//
// The number of a publish that got its answer is used again (a publish
// gets exactly one answer, so no other can arrive for it): the reply
// subjects in use stay as few as the publishes that wait at once, and the
// NATS server finds them in its subject cache instead of matching a new
// subject for every answer. The number of a publish that timed out or
// was given up is never used again, lest its late answer be taken for
// another's.
type acker struct {
	prefix string

	mu       sync.Mutex
	seq      uint64
	tickets  uint64   // publishes registered, to tell a number's holders apart
	free     []uint64 // numbers answered, to use again
	pending  map[uint64]pendingAck
	replies  map[uint64]string // reply subjects of the numbers pending or free
	sweeping bool
}

// pendingAck is a publish waiting for its answer: an append's done is
// called with it, a request's answer channel (buffered, one) receives it.
type pendingAck struct {
	done     func(error)
	answer   chan pubAnswer
	deadline time.Time
	ticket   uint64 // set by add
}

// ackTicket names one publish's wait: its number, which another publish
// holds again once this one's answer came, and the wait's own count,
// which no other has. A waiter that gives up withdraws by its ticket, so
// that it cannot take the wait of the number's next holder (which would
// leave that one without its answer, and this one's answer in its
// channel for whoever used the channel next).
type ackTicket struct{ id, n uint64 }

// pubAnswer is the stream's answer to a request: the message's sequence
// number, or why it was not stored.
type pubAnswer struct {
	seq uint64
	err error
}

func (p pendingAck) deliver(a pubAnswer) {
	if p.done != nil {
		p.done(a.err)
		return
	}
	p.answer <- a
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

// add registers a publish and returns its ticket and reply subject.
func (a *acker) add(p pendingAck) (ackTicket, string) {
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
	a.tickets++
	p.ticket = a.tickets
	a.pending[id] = p
	sweep := !a.sweeping
	a.sweeping = true
	a.mu.Unlock()
	if sweep {
		go a.sweep()
	}
	return ackTicket{id, p.ticket}, reply
}

// answered removes and returns the publish that holds number id, whose
// answer came, and frees the number for use again; false when none holds
// it (it timed out or was withdrawn).
func (a *acker) answered(id uint64) (pendingAck, bool) {
	a.mu.Lock()
	p, ok := a.pending[id]
	if ok {
		delete(a.pending, id)
		if len(a.free) < maxFreeIDs {
			a.free = append(a.free, id)
		} else {
			delete(a.replies, id)
		}
	}
	a.mu.Unlock()
	return p, ok
}

// withdraw removes the publish of ticket t, which no longer waits for its
// answer, and retires its number; false when it was answered or timed out
// already (its answer is then delivered, or on its way).
func (a *acker) withdraw(t ackTicket) (pendingAck, bool) {
	a.mu.Lock()
	p, ok := a.pending[t.id]
	ok = ok && p.ticket == t.n
	if ok {
		delete(a.pending, t.id)
		delete(a.replies, t.id)
	}
	a.mu.Unlock()
	return p, ok
}

func (a *acker) onAnswer(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(a.prefix):], 36, 64)
	if err != nil {
		return
	}
	p, ok := a.answered(id)
	if !ok {
		return
	}
	if p.done != nil {
		p.done(pubAckError(m)) // an append needs no sequence number
		return
	}
	p.answer <- pubAck(m)
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
			p.deliver(pubAnswer{err: errNoAnswer})
			late[i] = pendingAck{}
		}
		late = late[:0]
		if idle {
			return
		}
	}
}

// answerChans recycles the channels requests wait on; a channel goes back
// empty.
var answerChans = sync.Pool{New: func() any { return make(chan pubAnswer, 1) }}

// requestTimeout bounds a request whose context has no deadline, as
// nats.go's JetStream API timeout does.
const requestTimeout = 5 * time.Second

// noResponderRetries is how many times a request is sent again when no
// stream listened on its subject, as while a cluster elects the stream's
// leader (nats.go's JetStream publish does the same), noResponderWait
// apart.
const (
	noResponderRetries = 2
	noResponderWait    = 250 * time.Millisecond
)

// request publishes m on nc and waits for the stream's answer: the
// message's sequence number, or an error (a *jetstream.APIError when the
// stream refused it). m's reply subject is set.
func (a *acker) request(ctx context.Context, nc *nats.Conn, m *nats.Msg) (uint64, error) {
	for try := 0; ; try++ {
		seq, err := a.requestOnce(ctx, nc, m)
		if !errors.Is(err, nats.ErrNoResponders) || try == noResponderRetries {
			return seq, err
		}
		t := time.NewTimer(noResponderWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

func (a *acker) requestOnce(ctx context.Context, nc *nats.Conn, m *nats.Msg) (uint64, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(requestTimeout)
	}
	ch := answerChans.Get().(chan pubAnswer)
	t, reply := a.add(pendingAck{answer: ch, deadline: deadline})
	m.Reply = reply
	if err := nc.PublishMsg(m); err != nil {
		if _, ok := a.withdraw(t); !ok {
			<-ch // timed out meanwhile: the sweep answered
		}
		answerChans.Put(ch)
		return 0, err
	}
	select {
	case r := <-ch:
		answerChans.Put(ch)
		return r.seq, r.err
	case <-ctx.Done():
		if _, ok := a.withdraw(t); !ok {
			<-ch // answered meanwhile
		}
		answerChans.Put(ch)
		return 0, ctx.Err()
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

// pubAck reads JetStream's answer to a publish with the stored message's
// sequence number, which a success holds as "seq":N.
func pubAck(m *nats.Msg) pubAnswer {
	if err := pubAckError(m); err != nil {
		return pubAnswer{err: err}
	}
	_, after, ok := bytes.Cut(m.Data, []byte(`"seq":`))
	end := 0
	for end < len(after) && after[end] >= '0' && after[end] <= '9' {
		end++
	}
	seq, err := strconv.ParseUint(string(after[:end]), 10, 64)
	if !ok || err != nil || seq == 0 {
		return pubAnswer{err: fmt.Errorf("publish: answer %q has no sequence number", m.Data)}
	}
	return pubAnswer{seq: seq}
}
