package jetstream

import (
	"context"
	"errors"
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
