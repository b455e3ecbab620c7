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

// lockQueue is a stream of JSON records that back ends receive under a
// lock, as IoT Hub hands out C2D feedback and file-upload notifications:
// a receive locks up to max records (for lock, the durable consumer
// "service"'s AckWait) under a lock token that completes (acks) or
// abandons (naks) them. Lock tokens live in the memory of the node that
// handed them out; after a restart, locked records come back when their
// lock expires.
type lockQueue struct {
	js      jetstream.JetStream
	cons    jetstream.Consumer
	subject string
	max     int
	lock    time.Duration

	mu    sync.Mutex
	locks map[string]heldLock
}

type heldLock struct {
	msgs    []jetstream.Msg
	expires time.Time
}

// lockQueueConfig names a lock queue's stream and says how it keeps and
// hands out its records.
type lockQueueConfig struct {
	stream, subject, description string
	maxAge, lock                 time.Duration
	max, replicas                int
}

// lockQueueConsumer is the durable consumer the back ends of every node
// receive a lock queue's records through.
const lockQueueConsumer = "service"

// openLockQueue creates or updates the stream and its consumer.
func openLockQueue(ctx context.Context, nc *nats.Conn, c lockQueueConfig) (*lockQueue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	conf := jetstream.StreamConfig{
		Name:        c.stream,
		Description: c.description,
		Subjects:    []string{c.subject},
		Storage:     jetstream.FileStorage,
		MaxAge:      c.maxAge,
		Replicas:    keepReplicas(ctx, js, c.stream, c.replicas),
	}
	stream, err := openRetry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, conf) })
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", c.stream, err)
	}
	consConf := jetstream.ConsumerConfig{
		Durable:   lockQueueConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   c.lock,
	}
	cons, err := openRetry(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return stream.CreateOrUpdateConsumer(ctx, consConf)
	})
	if err != nil {
		return nil, fmt.Errorf("opening the consumer of %s: %w", c.stream, err)
	}
	return &lockQueue{js: js, cons: cons, subject: c.subject, max: c.max, lock: c.lock, locks: map[string]heldLock{}}, nil
}

// add stores a record.
func (q *lockQueue) add(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = q.js.Publish(ctx, q.subject, data)
	return err
}

// receive locks the records available now, up to max, and decodes each
// with decode; a record that does not decode is dropped (terminated).
// It returns the lock token, or ErrNotFound when there is none.
func (q *lockQueue) receive(decode func(data []byte) error) (string, error) {
	msgs, err := q.fetch(decode)
	for try := 0; err == nil && len(msgs) == 0 && try < 20 && q.undelivered(); try++ {
		time.Sleep(time.Millisecond << min(try, 4))
		msgs, err = q.fetch(decode)
	}
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "", twinhub.ErrNotFound
	}
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	now := time.Now()
	q.mu.Lock()
	for t, l := range q.locks {
		if now.After(l.expires) {
			delete(q.locks, t)
		}
	}
	q.locks[token] = heldLock{msgs: msgs, expires: now.Add(q.lock)}
	q.mu.Unlock()
	return token, nil
}

// undelivered says whether the stream's last record was never handed to
// the consumer. JetStream tells a consumer of a new record after the
// publisher's acknowledgement (nats-server signals consumers from its own
// goroutine), so a no-wait fetch just after an add can find nothing: a
// record stored before a receive must still be in it.
func (q *lockQueue) undelivered() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return false
	}
	stream, err := q.js.Stream(ctx, ci.Stream) // a stream info request: its answer is CachedInfo
	if err != nil {
		return false
	}
	si := stream.CachedInfo()
	return si.State.Msgs > 0 && si.State.LastSeq > ci.Delivered.Stream
}

// fetch takes the records available now, up to max, and decodes each
// with decode; a record that does not decode is dropped (terminated).
func (q *lockQueue) fetch(decode func(data []byte) error) ([]jetstream.Msg, error) {
	batch, err := q.cons.FetchNoWait(q.max)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		if err := decode(m.Data()); err != nil {
			m.Term()
			continue
		}
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return msgs, nil
}

// take removes a lock that has not expired: ErrNotFound otherwise.
func (q *lockQueue) take(token string) ([]jetstream.Msg, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l, ok := q.locks[token]
	delete(q.locks, token)
	if !ok || time.Now().After(l.expires) {
		return nil, twinhub.ErrNotFound
	}
	return l.msgs, nil
}

// complete removes the locked records for good.
func (q *lockQueue) complete(ctx context.Context, token string) error {
	msgs, err := q.take(token)
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

// abandon gives the locked records back, to be received again.
func (q *lockQueue) abandon(_ context.Context, token string) error {
	msgs, err := q.take(token)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		m.Nak()
	}
	return nil
}
