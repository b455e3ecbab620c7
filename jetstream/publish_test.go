package jetstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

func TestPubAck(t *testing.T) {
	for data, want := range map[string]uint64{
		`{"stream":"KV_twinhub-registry","seq":12}`:                   12,
		`{"stream":"KV_twinhub-registry","domain":"x","seq":9007199}`: 9007199,
		`{"stream":"s","seq":3,"duplicate":true}`:                     3,
	} {
		if a := pubAck(&nats.Msg{Data: []byte(data)}); a.err != nil || a.seq != want {
			t.Errorf("%s read as %d, %v; want %d", data, a.seq, a.err, want)
		}
	}
	for _, data := range []string{`{"stream":"s"}`, `{"stream":"s","seq":0}`, `{"stream":"s","seq":-1}`, `{"stream":"s","seq":"1"}`} {
		if a := pubAck(&nats.Msg{Data: []byte(data)}); a.err == nil {
			t.Errorf("%s read as %d, without an error", data, a.seq)
		}
	}
	conflict := `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 4"},"stream":"s","seq":0}`
	var apiErr *jetstream.APIError
	if a := pubAck(&nats.Msg{Data: []byte(conflict)}); !errors.As(a.err, &apiErr) || apiErr.ErrorCode != 10071 {
		t.Errorf("a conflict read as %v", a.err)
	}
}

// TestRequest: a request gets its message's sequence number; one nobody
// answers ends with its context, and one no stream listens to ends as no
// responders, after its retries; the store reports both as unavailable.
// Each leaves nothing pending.
func TestRequest(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	js, err := jetstream.New(e.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	silent, err := e.Conn.Subscribe("silent.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Unsubscribe()
	a, err := newAcker(e.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		seq, err := a.request(ctx, e.Conn, &nats.Msg{Subject: "s.a", Data: []byte("x")})
		if err != nil || seq != i {
			t.Fatalf("request %d: sequence %d, %v", i, seq, err)
		}
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := a.request(short, e.Conn, &nats.Msg{Subject: "silent.a"}); !errors.Is(err, context.DeadlineExceeded) || !unavailable(err) {
		t.Errorf("an unanswered request: %v", err)
	}
	if _, err := a.request(ctx, e.Conn, &nats.Msg{Subject: "nowhere.a"}); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("a request to no stream: %v", err)
	} else if e := twinhub.AsError(storeError(err)); e == nil || e.Status != 503 {
		t.Errorf("the store reports no responders as %v", storeError(err))
	}
	a.mu.Lock()
	pending := len(a.pending)
	a.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d requests still pending", pending)
	}
}

// TestSweepAnswersLateRequests: a request whose answer does not come by
// its deadline gets errNoAnswer from the sweep, which the store reports
// as unavailable.
func TestSweepAnswersLateRequests(t *testing.T) {
	a := &acker{prefix: "_INBOX.t.", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
	ch := make(chan pubAnswer, 1)
	a.add(pendingAck{answer: ch, deadline: time.Now()})
	select {
	case r := <-ch:
		if !errors.Is(r.err, errNoAnswer) || !unavailable(r.err) {
			t.Errorf("a late request answered with %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sweep did not answer a late request")
	}
}

// TestWithdrawSparesTheNextHolder: a request that gives up after its
// answer came (its context ended as the answer arrived) must not withdraw
// the wait of the request that holds its number next. It did once: that
// request then waited for an answer that had been thrown away, and the
// first one's answer sat in the recycled channel, where a third request
// took it for its own, acknowledging a write the stream had refused
// (TestGracefulShutdown lost acknowledged twin updates that way).
func TestWithdrawSparesTheNextHolder(t *testing.T) {
	a := &acker{prefix: "_INBOX.t.", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
	later := time.Now().Add(time.Minute)
	answer := func(reply string, seq int) {
		a.onAnswer(&nats.Msg{Subject: reply, Data: fmt.Appendf(nil, `{"stream":"s","seq":%d}`, seq)})
	}
	first := make(chan pubAnswer, 1)
	t1, reply1 := a.add(pendingAck{answer: first, deadline: later})
	answer(reply1, 7)
	second := make(chan pubAnswer, 1)
	t2, reply2 := a.add(pendingAck{answer: second, deadline: later})
	if t2.id != t1.id || reply2 != reply1 {
		t.Fatalf("the answered number was not used again (%v, %v): the test needs it to be", t1, t2)
	}
	if _, ok := a.withdraw(t1); ok {
		t.Error("an answered request withdrew the next holder of its number")
	}
	if r := <-first; r.seq != 7 {
		t.Errorf("the first request got %+v, want seq 7", r)
	}
	answer(reply2, 8)
	select {
	case r := <-second:
		if r.err != nil || r.seq != 8 {
			t.Errorf("the second request got %+v, want seq 8", r)
		}
	default:
		t.Fatal("the second request's answer was thrown away")
	}

	// A withdrawn number is retired: its late answer reaches no one.
	third := make(chan pubAnswer, 1)
	t3, reply3 := a.add(pendingAck{answer: third, deadline: later})
	if _, ok := a.withdraw(t3); !ok {
		t.Fatal("a waiting request could not withdraw")
	}
	fourth := make(chan pubAnswer, 1)
	t4, _ := a.add(pendingAck{answer: fourth, deadline: later})
	if t4.id == t3.id {
		t.Fatalf("a withdrawn number was used again (%v)", t4)
	}
	answer(reply3, 9)
	if len(third) != 0 || len(fourth) != 0 {
		t.Error("a withdrawn request's late answer was delivered")
	}
	a.withdraw(t4)
}
