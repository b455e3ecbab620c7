package twinhub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Device-to-cloud telemetry and cloud-to-device messages. The hub checks
// limits and fills in system properties; a TelemetryStore keeps events
// (the jetstream package: a stream partitioned by device) and a C2DQueue
// keeps each device's pending messages (a stream, one subject a device).

// Limits of messages, as IoT Hub documents them.
const (
	MaxTelemetrySize  = 256 << 10
	MaxC2DSize        = 64 << 10
	MaxC2DPending     = 50
	DefaultC2DTTL     = time.Hour
	MaxC2DTTL         = 48 * time.Hour
	maxMessageIDBytes = 128
)

// Property is an application property of a message.
type Property struct {
	Key, Value string
}

// Event is a device-to-cloud message with its system properties.
type Event struct {
	Identity        Key
	AuthMethod      string // sas, selfSigned, certificateAuthority
	MessageID       string
	CorrelationID   string
	ContentType     string
	ContentEncoding string
	UserID          string
	To              string
	// Properties are the application properties, in the order sent.
	Properties []Property
	Body       []byte
	// Enqueued is set by the hub when it accepts the event.
	Enqueued Time
	// Sequence and Partition are set when an event is read back.
	Sequence  uint64
	Partition int
}

// EventFilter chooses which events a reader sees.
type EventFilter struct {
	// Group is the consumer group: readers of one group share a position,
	// which survives restarts.
	Group string
	// FromStart makes a new group begin with the oldest event kept;
	// otherwise it begins with events that arrive after it was created.
	FromStart bool
	// DeviceID and ModuleID restrict the events to one identity.
	DeviceID, ModuleID string
}

// TelemetryStore keeps device-to-cloud events.
type TelemetryStore interface {
	// Append stores an event; it returns once the event is durable.
	Append(ctx context.Context, e *Event) error
	// Read calls fn with each event of the filter, in order within a
	// partition, until ctx ends or fn fails; an event counts as read (the
	// group's position moves past it) once fn returns nil.
	Read(ctx context.Context, f EventFilter, fn func(*Event) error) error
}

// AsyncTelemetryStore is a TelemetryStore that can also store an event
// without making its caller wait.
type AsyncTelemetryStore interface {
	TelemetryStore
	// AppendAsync stores an event and calls done once: with nil once the
	// event is durable, else with the error (also after timeout). done
	// must not block; it may run on another goroutine, before or after
	// AppendAsync returns.
	AppendAsync(e *Event, timeout time.Duration, done func(error))
}

// SendEventAsync is SendEvent without waiting: done is called once with
// its result (see AsyncTelemetryStore). With a store that cannot append
// asynchronously, the event is stored before SendEventAsync returns.
func (h *Hub) SendEventAsync(e *Event, timeout time.Duration, done func(error)) {
	if len(e.Body) > MaxTelemetrySize {
		done(ErrTooLarge("message is %d bytes; the limit is %d", len(e.Body), MaxTelemetrySize))
		return
	}
	t, _ := h.stores()
	if a, ok := t.(AsyncTelemetryStore); ok {
		e.Enqueued = Now()
		a.AppendAsync(e, timeout, done)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := h.SendEvent(ctx, e)
	cancel()
	done(err)
}

// SendEvent stores a device's telemetry, adding the enqueued time. The
// hub's telemetry store must be set (UseMessaging); without one the event
// is dropped, once with a warning.
func (h *Hub) SendEvent(ctx context.Context, e *Event) error {
	if len(e.Body) > MaxTelemetrySize {
		return ErrTooLarge("message is %d bytes; the limit is %d", len(e.Body), MaxTelemetrySize)
	}
	t, _ := h.stores()
	if t == nil {
		h.ext().noted.Do(func() {
			h.logger().Warn("telemetry acknowledged but not stored: no telemetry store (said once)")
		})
		return nil
	}
	e.Enqueued = Now()
	return t.Append(ctx, e)
}

// ReadEvents reads telemetry; see TelemetryStore.Read.
func (h *Hub) ReadEvents(ctx context.Context, f EventFilter, fn func(*Event) error) error {
	t, _ := h.stores()
	if t == nil {
		return Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub keeps no telemetry")
	}
	if f.Group == "" {
		f.Group = "$Default"
	}
	return t.Read(ctx, f, fn)
}

// --- cloud to device ---

// Ack values of a cloud-to-device message: which outcomes produce
// feedback.
const (
	AckNone     = "none"
	AckPositive = "positive"
	AckNegative = "negative"
	AckFull     = "full"
)

// C2DMessage is a cloud-to-device message in a device's queue.
type C2DMessage struct {
	// Seq identifies the message in its queue; set by the queue.
	Seq             uint64
	MessageID       string
	CorrelationID   string
	UserID          string
	To              string
	Ack             string
	ContentType     string
	ContentEncoding string
	Expiry          Time
	Enqueued        Time
	Properties      []Property
	Body            []byte
}

// ErrQueueFull is what a C2DQueue returns for a message over the limit.
var ErrQueueFull = errors.New("queue full")

// C2DQueue keeps the pending cloud-to-device messages of every device.
type C2DQueue interface {
	// Enqueue adds a message, or returns ErrQueueFull when the device has
	// MaxC2DPending messages already. It sets m.Seq.
	Enqueue(ctx context.Context, deviceID string, m *C2DMessage) error
	// Next returns the first message of the device after sequence after
	// (0: the first), or ErrNotFound.
	Next(ctx context.Context, deviceID string, after uint64) (*C2DMessage, error)
	// Remove deletes a message (completed, rejected or expired).
	Remove(ctx context.Context, deviceID string, seq uint64) error
	// Purge deletes every message of the device and says how many.
	Purge(ctx context.Context, deviceID string) (int, error)
}

const c2dReadySubject = "twinhub.c2d.ready."

// SendC2D queues a message for a device: 404 for an unknown device, 403
// DeviceMaximumQueueDepthExceeded with 50 pending, 413 over 64 KB. ttl 0
// means the default hour.
func (h *Hub) SendC2D(ctx context.Context, deviceID string, m *C2DMessage, ttl time.Duration) error {
	_, q := h.stores()
	if q == nil {
		return Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub has no cloud-to-device queues")
	}
	if len(m.Body) > MaxC2DSize {
		return ErrTooLarge("message is %d bytes; the limit is %d", len(m.Body), MaxC2DSize)
	}
	if ttl == 0 {
		ttl = DefaultC2DTTL
	}
	if ttl < 0 || ttl > MaxC2DTTL {
		return ErrInvalid("time to live must be more than 0 and at most %s", MaxC2DTTL)
	}
	switch m.Ack {
	case "":
		m.Ack = AckNone
	case AckNone, AckPositive, AckNegative, AckFull:
	default:
		return ErrInvalid("ack must be none, positive, negative or full, not %q", m.Ack)
	}
	if len(m.MessageID) > maxMessageIDBytes || len(m.CorrelationID) > maxMessageIDBytes {
		return ErrInvalid("message and correlation ids are at most %d bytes", maxMessageIDBytes)
	}
	for _, p := range m.Properties {
		if p.Key == "" || strings.HasPrefix(p.Key, "$.") || strings.HasPrefix(strings.ToLower(p.Key), "iothub-") {
			return ErrInvalid("application property name %q is empty or reserved", p.Key)
		}
	}
	if _, err := h.get(ctx, DeviceKey(deviceID)); err != nil {
		return err
	}
	if m.MessageID == "" {
		m.MessageID = randomHex(16)
	}
	m.To = "/devices/" + deviceID + "/messages/deviceBound"
	now := Now()
	m.Enqueued = now
	m.Expiry = Time{now.Add(ttl)}
	err := q.Enqueue(ctx, deviceID, m)
	if errors.Is(err, ErrQueueFull) {
		return Errorf(http.StatusForbidden, "DeviceMaximumQueueDepthExceeded", "Device %s has %d messages pending, the most IoT Hub allows", deviceID, MaxC2DPending)
	}
	if err != nil {
		return err
	}
	if h.bus != nil {
		h.bus.Publish(c2dReadySubject+EncodeID(deviceID), nil)
	}
	return nil
}

// WatchC2D calls fn whenever a message is queued for deviceID, on any
// node, until cancel. fn must not block. Delivery is at most once, so
// readers also look now and then.
func (h *Hub) WatchC2D(deviceID string, fn func()) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.bus.Subscribe(c2dReadySubject+EncodeID(deviceID), func(string, []byte) { fn() })
}

// NextC2D returns the first live message of a device after seq after,
// removing expired ones on the way, or ErrNotFound.
func (h *Hub) NextC2D(ctx context.Context, deviceID string, after uint64) (*C2DMessage, error) {
	_, q := h.stores()
	if q == nil {
		return nil, ErrNotFound
	}
	for {
		m, err := q.Next(ctx, deviceID, after)
		if err != nil {
			return nil, err
		}
		if !m.Expiry.IsZero() && time.Now().After(m.Expiry.Time) {
			err := q.Remove(ctx, deviceID, m.Seq)
			if err == nil {
				h.feedback(ctx, deviceID, m, FeedbackExpired)
			} else if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			after = m.Seq
			continue
		}
		return m, nil
	}
}

// CompleteC2D removes a delivered message from its queue, with feedback
// if the message asked for it.
func (h *Hub) CompleteC2D(ctx context.Context, deviceID string, m *C2DMessage) error {
	_, q := h.stores()
	if q == nil {
		return nil
	}
	err := q.Remove(ctx, deviceID, m.Seq)
	if errors.Is(err, ErrNotFound) {
		return nil // completed before (a redelivery)
	}
	if err == nil {
		h.feedback(ctx, deviceID, m, FeedbackSuccess)
	}
	return err
}

// PurgeC2D deletes the pending messages of a device (DELETE
// /devices/{id}/commands).
func (h *Hub) PurgeC2D(ctx context.Context, deviceID string) (int, error) {
	_, q := h.stores()
	if q == nil {
		return 0, nil
	}
	if _, err := h.get(ctx, DeviceKey(deviceID)); err != nil {
		return 0, err
	}
	return q.Purge(ctx, deviceID)
}

// --- feedback ---

// Feedback status codes, as IoT Hub writes them.
const (
	FeedbackSuccess  = "Success"
	FeedbackExpired  = "Expired"
	FeedbackRejected = "Rejected"
)

// FeedbackRecord tells a back end what became of a cloud-to-device
// message that asked for feedback (ack positive, negative or full).
type FeedbackRecord struct {
	OriginalMessageID  string `json:"originalMessageId"`
	Description        string `json:"description"`
	DeviceGenerationID string `json:"deviceGenerationId"`
	DeviceID           string `json:"deviceId"`
	EnqueuedTimeUTC    Time   `json:"enqueuedTimeUtc"`
	StatusCode         string `json:"statusCode"`
}

// FeedbackStore keeps feedback records until a back end completes them.
type FeedbackStore interface {
	Add(ctx context.Context, r FeedbackRecord) error
	// Receive locks the records available now and returns them with the
	// lock token that completes or abandons them, or ErrNotFound.
	Receive(ctx context.Context) (lockToken string, records []FeedbackRecord, err error)
	Complete(ctx context.Context, lockToken string) error
	Abandon(ctx context.Context, lockToken string) error
}

// UseFeedback gives the hub its feedback store; without one, no feedback
// is kept.
func (h *Hub) UseFeedback(f FeedbackStore) {
	x := h.ext()
	x.mu.Lock()
	x.feedback = f
	x.mu.Unlock()
}

func (h *Hub) feedbackStore() FeedbackStore {
	x := h.ext()
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.feedback
}

// feedback records the outcome of m if its ack asks for it.
func (h *Hub) feedback(ctx context.Context, deviceID string, m *C2DMessage, status string) {
	f := h.feedbackStore()
	if f == nil {
		return
	}
	want := m.Ack == AckFull || (m.Ack == AckPositive && status == FeedbackSuccess) || (m.Ack == AckNegative && status != FeedbackSuccess)
	if !want {
		return
	}
	gen := ""
	if rec, err := h.get(ctx, DeviceKey(deviceID)); err == nil && rec.Device != nil {
		gen = rec.Device.GenerationID
	}
	desc := map[string]string{FeedbackSuccess: "Success", FeedbackExpired: "Message Expired", FeedbackRejected: "Message Rejected"}[status]
	if err := f.Add(ctx, FeedbackRecord{
		OriginalMessageID: m.MessageID, Description: desc, DeviceGenerationID: gen,
		DeviceID: deviceID, EnqueuedTimeUTC: Now(), StatusCode: status,
	}); err != nil {
		h.logger().Warn("storing cloud-to-device feedback", "device", deviceID, "err", err)
	}
}

// ReceiveFeedback is GET /messages/serviceBound/feedback.
func (h *Hub) ReceiveFeedback(ctx context.Context) (string, []FeedbackRecord, error) {
	f := h.feedbackStore()
	if f == nil {
		return "", nil, ErrNotFound
	}
	return f.Receive(ctx)
}

// CompleteFeedback and AbandonFeedback settle a received batch.
func (h *Hub) CompleteFeedback(ctx context.Context, lockToken string) error {
	return h.settleFeedback(ctx, lockToken, true)
}

func (h *Hub) AbandonFeedback(ctx context.Context, lockToken string) error {
	return h.settleFeedback(ctx, lockToken, false)
}

func (h *Hub) settleFeedback(ctx context.Context, lockToken string, complete bool) error {
	f := h.feedbackStore()
	var err error
	switch {
	case f == nil:
		err = ErrNotFound
	case complete:
		err = f.Complete(ctx, lockToken)
	default:
		err = f.Abandon(ctx, lockToken)
	}
	if errors.Is(err, ErrNotFound) {
		return Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "lock token %s is unknown or expired", lockToken)
	}
	return err
}

// --- receiving over HTTPS ---

// C2DLockTime is how long a message received over HTTPS stays hidden
// from later receives while the device settles it.
const C2DLockTime = time.Minute

// ReceiveC2D returns a device's first message that no earlier receive on
// this node has locked, and locks it; ErrNotFound when there is none.
// (Locks live in the node's memory: MQTT delivery ignores them, and
// another node may hand the same message out; IoT Hub devices use one
// protocol at a time.)
func (h *Hub) ReceiveC2D(ctx context.Context, deviceID string) (*C2DMessage, error) {
	x := h.ext()
	var after uint64
	for {
		m, err := h.NextC2D(ctx, deviceID, after)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		x.mu.Lock()
		if x.c2dLocks == nil {
			x.c2dLocks = map[c2dLockKey]time.Time{}
		}
		k := c2dLockKey{deviceID, m.Seq}
		if until, ok := x.c2dLocks[k]; ok && now.Before(until) {
			x.mu.Unlock()
			after = m.Seq
			continue
		}
		for lk, until := range x.c2dLocks {
			if now.After(until) {
				delete(x.c2dLocks, lk)
			}
		}
		x.c2dLocks[k] = now.Add(C2DLockTime)
		x.mu.Unlock()
		return m, nil
	}
}

type c2dLockKey struct {
	device string
	seq    uint64
}

// Outcomes of a message received over HTTPS.
const (
	C2DComplete = "complete"
	C2DReject   = "reject"
	C2DAbandon  = "abandon"
)

// SettleC2D completes, rejects or abandons a message that ReceiveC2D
// handed out: lockToken is its Seq. 412 DeviceMessageLockLost if the
// message is gone.
func (h *Hub) SettleC2D(ctx context.Context, deviceID string, seq uint64, outcome string) error {
	_, q := h.stores()
	if q == nil {
		return ErrNotFound
	}
	if seq == 0 {
		return Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "no message has lock token 0")
	}
	x := h.ext()
	x.mu.Lock()
	delete(x.c2dLocks, c2dLockKey{deviceID, seq})
	x.mu.Unlock()
	m, err := q.Next(ctx, deviceID, seq-1)
	if errors.Is(err, ErrNotFound) || (err == nil && m.Seq != seq) {
		return Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "message %d of device %s is no longer in its queue", seq, deviceID)
	}
	if err != nil {
		return err
	}
	switch outcome {
	case C2DAbandon:
		return nil
	case C2DReject:
		if err := q.Remove(ctx, deviceID, seq); err != nil {
			return err
		}
		h.feedback(ctx, deviceID, m, FeedbackRejected)
		return nil
	}
	return h.CompleteC2D(ctx, deviceID, m)
}

// c2dSweeper is implemented by queues that can find expired messages.
type c2dSweeper interface {
	Sweep(ctx context.Context, now time.Time, fn func(deviceID string, m *C2DMessage)) error
}

// SweepC2D deletes expired cloud-to-device messages of every device,
// with feedback for those that asked for it. IoT Hub expires messages of
// devices that never connect too; delivery alone would only notice them
// when the device comes back.
func (h *Hub) SweepC2D(ctx context.Context) error {
	_, q := h.stores()
	s, ok := q.(c2dSweeper)
	if !ok {
		return nil
	}
	return s.Sweep(ctx, time.Now(), func(deviceID string, m *C2DMessage) {
		h.feedback(ctx, deviceID, m, FeedbackExpired)
	})
}

// RunC2DSweeper calls SweepC2D every interval until ctx ends. Every node
// may run one: a message is deleted, and its feedback written, once.
func (h *Hub) RunC2DSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := h.SweepC2D(ctx); err != nil && ctx.Err() == nil {
				h.logger().Warn("sweeping expired cloud-to-device messages", "err", err)
			}
		}
	}
}
