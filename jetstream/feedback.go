package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Feedback on cloud-to-device messages lives in stream FeedbackStream,
// subject twinhub.feedback, one JSON twinhub.FeedbackRecord a message,
// kept two days. Back ends read it through the durable consumer
// "service": a receive locks what is there (for FeedbackLock, the
// consumer's AckWait) under a lock token that completes (acks) or
// abandons (naks) the batch. Lock tokens live in the memory of the node
// that handed them out; after a restart, locked records come back when
// their lock expires.
const (
	FeedbackStream  = "twinhub-feedback"
	FeedbackSubject = "twinhub.feedback"
	FeedbackLock    = time.Minute
	maxFeedbackRead = 100
)

// Feedback is twinhub.FeedbackStore on a JetStream stream.
type Feedback struct {
	js   jetstream.JetStream
	cons jetstream.Consumer

	mu    sync.Mutex
	locks map[string]feedbackLock
}

type feedbackLock struct {
	msgs    []jetstream.Msg
	expires time.Time
}

var _ twinhub.FeedbackStore = (*Feedback)(nil)

// OpenFeedback creates or updates the feedback stream and its consumer.
func OpenFeedback(ctx context.Context, nc *nats.Conn, replicas int) (*Feedback, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        FeedbackStream,
		Description: "twinhub feedback on cloud-to-device messages",
		Subjects:    []string{FeedbackSubject},
		Storage:     jetstream.FileStorage,
		MaxAge:      48 * time.Hour,
		Replicas:    keepReplicas(ctx, js, FeedbackStream, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", FeedbackStream, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:   "service",
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   FeedbackLock,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the feedback consumer: %w", err)
	}
	return &Feedback{js: js, cons: cons, locks: map[string]feedbackLock{}}, nil
}

func (f *Feedback) Add(ctx context.Context, r twinhub.FeedbackRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = f.js.Publish(ctx, FeedbackSubject, data)
	return err
}

func (f *Feedback) Receive(ctx context.Context) (string, []twinhub.FeedbackRecord, error) {
	batch, err := f.cons.FetchNoWait(maxFeedbackRead)
	if err != nil {
		return "", nil, err
	}
	var msgs []jetstream.Msg
	var recs []twinhub.FeedbackRecord
	for m := range batch.Messages() {
		var r twinhub.FeedbackRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			m.Term()
			continue
		}
		msgs = append(msgs, m)
		recs = append(recs, r)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return "", nil, err
	}
	if len(msgs) == 0 {
		return "", nil, twinhub.ErrNotFound
	}
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	now := time.Now()
	f.mu.Lock()
	for t, l := range f.locks {
		if now.After(l.expires) {
			delete(f.locks, t)
		}
	}
	f.locks[token] = feedbackLock{msgs: msgs, expires: now.Add(FeedbackLock)}
	f.mu.Unlock()
	return token, recs, nil
}

func (f *Feedback) take(token string) ([]jetstream.Msg, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.locks[token]
	delete(f.locks, token)
	if !ok || time.Now().After(l.expires) {
		return nil, twinhub.ErrNotFound
	}
	return l.msgs, nil
}

func (f *Feedback) Complete(ctx context.Context, token string) error {
	msgs, err := f.take(token)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := m.DoubleAck(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (f *Feedback) Abandon(ctx context.Context, token string) error {
	msgs, err := f.take(token)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		m.Nak()
	}
	return nil
}
