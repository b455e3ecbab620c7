package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Cloud-to-device queues live in one stream, C2DStream, one subject a
// device: twinhub.c2dq.<EncodeID(device id)>. The stream allows 50
// messages a subject and refuses the 51st (DiscardNew per subject), so the
// limit holds across nodes without a lock. A message is JSON (see
// c2dRecord); the queue is read by sequence with direct gets (no consumer
// per device), and a message leaves it when it is deleted: completed,
// rejected, expired or purged. MaxAge drops what nobody removed after the
// longest TTL.
//
// How often each message was delivered is kept beside, in the bucket
// C2DDeliveryBucket, by the message's sequence (unique in the stream), for
// as long as a message may live: a delivery count survives a restart and
// is the same on every node, as the message is.
const (
	C2DStream         = "twinhub-c2d"
	C2DSubjectPrefix  = "twinhub.c2dq."
	C2DDeliveryBucket = "twinhub-c2d-deliveries"
)

// C2D is twinhub.C2DQueue on a JetStream stream.
type C2D struct {
	js         jetstream.JetStream
	stream     jetstream.Stream
	deliveries jetstream.KeyValue
}

var _ twinhub.C2DQueue = (*C2D)(nil)

// OpenC2D creates or updates the cloud-to-device stream.
func OpenC2D(ctx context.Context, nc *nats.Conn, replicas int) (*C2D, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	conf := jetstream.StreamConfig{
		Name:                 C2DStream,
		Description:          "twinhub cloud-to-device queues, one subject a device",
		Subjects:             []string{C2DSubjectPrefix + ">"},
		Storage:              jetstream.FileStorage,
		Retention:            jetstream.LimitsPolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    twinhub.MaxC2DPending,
		MaxAge:               twinhub.MaxC2DTTL + time.Hour,
		MaxMsgSize:           2*twinhub.MaxC2DSize + 16<<10, // base64 body plus properties
		Replicas:             keepReplicas(ctx, js, C2DStream, replicas),
	}
	stream, err := openRetry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, conf) })
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", C2DStream, err)
	}
	kvConf := jetstream.KeyValueConfig{
		Bucket:      C2DDeliveryBucket,
		Description: "twinhub delivery counts of cloud-to-device messages, by sequence in " + C2DStream,
		Storage:     jetstream.FileStorage,
		TTL:         twinhub.MaxC2DTTL + time.Hour,
		Replicas:    keepReplicas(ctx, js, "KV_"+C2DDeliveryBucket, replicas),
	}
	deliveries, err := openRetry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateOrUpdateKeyValue(ctx, kvConf) })
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", C2DDeliveryBucket, err)
	}
	return &C2D{js: js, stream: stream, deliveries: deliveries}, nil
}

// CountDelivery adds one to message seq's deliveries (a compare-and-set:
// two nodes delivering at once count two).
func (q *C2D) CountDelivery(ctx context.Context, deviceID string, seq uint64) (int, error) {
	key := strconv.FormatUint(seq, 10)
	for {
		e, err := q.deliveries.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := q.deliveries.Create(ctx, key, []byte("1")); errors.Is(err, jetstream.ErrKeyExists) {
				continue
			} else if err != nil {
				return 0, err
			}
			return 1, nil
		} else if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(string(e.Value()))
		if err != nil {
			n = 0 // unreadable: count afresh rather than never deliver
		}
		n++
		if _, err := q.deliveries.Update(ctx, key, []byte(strconv.Itoa(n)), e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			return 0, err
		}
		return n, nil
	}
}

func c2dSubject(deviceID string) string { return C2DSubjectPrefix + twinhub.EncodeID(deviceID) }

// c2dRecord is a queued message as stored.
type c2dRecord struct {
	MessageID       string             `json:"messageId"`
	CorrelationID   string             `json:"correlationId,omitempty"`
	UserID          string             `json:"userId,omitempty"`
	To              string             `json:"to"`
	Ack             string             `json:"ack,omitempty"`
	ContentType     string             `json:"contentType,omitempty"`
	ContentEncoding string             `json:"contentEncoding,omitempty"`
	Expiry          twinhub.Time       `json:"expiryTimeUtc"`
	Enqueued        twinhub.Time       `json:"enqueuedTimeUtc"`
	Properties      []twinhub.Property `json:"properties,omitempty"`
	Body            []byte             `json:"body"`
}

func (q *C2D) Enqueue(ctx context.Context, deviceID string, m *twinhub.C2DMessage) error {
	data, err := json.Marshal(c2dRecord{
		MessageID: m.MessageID, CorrelationID: m.CorrelationID, UserID: m.UserID, To: m.To, Ack: m.Ack,
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Expiry: m.Expiry, Enqueued: m.Enqueued,
		Properties: m.Properties, Body: m.Body,
	})
	if err != nil {
		return err
	}
	ack, err := q.js.Publish(ctx, c2dSubject(deviceID), data)
	if err != nil {
		if strings.Contains(err.Error(), "maximum messages per subject") {
			return twinhub.ErrQueueFull
		}
		return err
	}
	m.Seq = ack.Sequence
	return nil
}

func (q *C2D) Next(ctx context.Context, deviceID string, after uint64) (*twinhub.C2DMessage, error) {
	raw, err := q.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(c2dSubject(deviceID)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, twinhub.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	var r c2dRecord
	if err := json.Unmarshal(raw.Data, &r); err != nil {
		return nil, fmt.Errorf("cloud-to-device message %d: %w", raw.Sequence, err)
	}
	return &twinhub.C2DMessage{
		Seq: raw.Sequence, MessageID: r.MessageID, CorrelationID: r.CorrelationID, UserID: r.UserID, To: r.To,
		Ack: r.Ack, ContentType: r.ContentType, ContentEncoding: r.ContentEncoding, Expiry: r.Expiry,
		Enqueued: r.Enqueued, Properties: r.Properties, Body: r.Body,
	}, nil
}

func (q *C2D) Remove(ctx context.Context, deviceID string, seq uint64) error {
	err := q.stream.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err != nil && strings.Contains(err.Error(), "no message found")) {
		return twinhub.ErrNotFound
	}
	return err // its delivery count stays until the bucket's TTL: no write more a message
}

func (q *C2D) Purge(ctx context.Context, deviceID string) (int, error) {
	subj := c2dSubject(deviceID)
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, err
	}
	n := int(info.State.Subjects[subj])
	if n == 0 {
		return 0, nil
	}
	return n, q.stream.Purge(ctx, jetstream.WithPurgeSubject(subj))
}

// Pending counts the messages queued for deviceID, or for every device
// when it is "", from the stream's count of messages a subject (one
// request to the server).
func (q *C2D) Pending(ctx context.Context, deviceID string) (map[string]int, error) {
	filter := C2DSubjectPrefix + ">"
	if deviceID != "" {
		filter = c2dSubject(deviceID)
	}
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		dev, err := twinhub.DecodeID(strings.TrimPrefix(subj, C2DSubjectPrefix))
		if err != nil || n == 0 {
			continue // not a queue's subject
		}
		out[dev] = int(n)
	}
	return out, nil
}

// Sweep deletes the messages that expired before now, across all devices,
// and calls fn with each one it deleted (for feedback). It reads the
// stream once, up to its last message when the sweep began.
func (q *C2D) Sweep(ctx context.Context, now time.Time, fn func(deviceID string, m *twinhub.C2DMessage)) error {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := q.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{InactiveThreshold: 10 * time.Second})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			var r c2dRecord
			if json.Unmarshal(msg.Data(), &r) == nil && !r.Expiry.IsZero() && now.After(r.Expiry.Time) {
				dev, err := twinhub.DecodeID(strings.TrimPrefix(msg.Subject(), C2DSubjectPrefix))
				if err == nil && q.stream.DeleteMsg(ctx, seq) == nil {
					fn(dev, &twinhub.C2DMessage{
						Seq: seq, MessageID: r.MessageID, CorrelationID: r.CorrelationID, UserID: r.UserID, To: r.To, Ack: r.Ack,
						Expiry: r.Expiry, Enqueued: r.Enqueued,
					})
				}
			}
			if seq >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			return nil // nothing more now
		}
	}
}
