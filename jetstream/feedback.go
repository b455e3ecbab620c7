package jetstream

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinhub/twinhub"
)

// Feedback on cloud-to-device messages lives in stream FeedbackStream,
// subject twinhub.feedback, one JSON twinhub.FeedbackRecord a message,
// kept two days, and is received in batches of up to 100 under a lock
// (lockQueue).
const (
	FeedbackStream  = "twinhub-feedback"
	FeedbackSubject = "twinhub.feedback"
	FeedbackLock    = time.Minute
	maxFeedbackRead = 100
)

// Feedback is twinhub.FeedbackStore on a JetStream stream.
type Feedback struct{ q *lockQueue }

var _ twinhub.FeedbackStore = (*Feedback)(nil)

// OpenFeedback creates or updates the feedback stream and its consumer.
func OpenFeedback(ctx context.Context, nc *nats.Conn, replicas int) (*Feedback, error) {
	q, err := openLockQueue(ctx, nc, lockQueueConfig{
		stream: FeedbackStream, subject: FeedbackSubject, description: "twinhub feedback on cloud-to-device messages",
		maxAge: 48 * time.Hour, lock: FeedbackLock, max: maxFeedbackRead, replicas: replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Feedback{q: q}, nil
}

func (f *Feedback) Add(ctx context.Context, r twinhub.FeedbackRecord) error { return f.q.add(ctx, r) }

func (f *Feedback) Receive(ctx context.Context) (string, []twinhub.FeedbackRecord, error) {
	var recs []twinhub.FeedbackRecord
	token, err := f.q.receive(func(data []byte) error {
		var r twinhub.FeedbackRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return token, recs, nil
}

func (f *Feedback) Complete(ctx context.Context, token string) error { return f.q.complete(ctx, token) }
func (f *Feedback) Abandon(ctx context.Context, token string) error  { return f.q.abandon(ctx, token) }
