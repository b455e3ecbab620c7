package hub

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
)

// SendEventAsync is SendEvent without waiting: done is called once with
// its result (see AsyncTelemetryStore). With a store that cannot append
// asynchronously, the event is stored before SendEventAsync returns.
func (h *Hub) SendEventAsync(e *twinhub.Event, timeout time.Duration, done func(error)) {
	if h.metrics != nil {
		next := done
		done = func(err error) { h.metrics.Telemetry(resultOf(err)); next(err) }
	}
	if len(e.Body) > twinhub.MaxTelemetrySize {
		done(twinhub.ErrTooLarge("message is %d bytes; the limit is %d", len(e.Body), twinhub.MaxTelemetrySize))
		return
	}
	h.injectFault(e)
	t := h.telemetry
	if a, ok := t.(twinhub.AsyncTelemetryStore); ok {
		e.Enqueued = twinhub.Now()
		a.AppendAsync(e, timeout, done)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := h.sendEvent(ctx, e)
	cancel()
	done(err)
}

// SendEvent stores a device's telemetry, adding the enqueued time. The
// hub's telemetry store must be set (Config.Telemetry); without one the event
// is dropped, once with a warning.
func (h *Hub) SendEvent(ctx context.Context, e *twinhub.Event) error {
	err := h.sendEvent(ctx, e)
	h.metrics.Telemetry(resultOf(err))
	return err
}

func (h *Hub) sendEvent(ctx context.Context, e *twinhub.Event) error {
	if len(e.Body) > twinhub.MaxTelemetrySize {
		return twinhub.ErrTooLarge("message is %d bytes; the limit is %d", len(e.Body), twinhub.MaxTelemetrySize)
	}
	h.injectFault(e)
	t := h.telemetry
	if t == nil {
		h.noted.Do(func() {
			h.log.Warn("telemetry acknowledged but not stored: no telemetry store (said once)")
		})
		return nil
	}
	e.Enqueued = twinhub.Now()
	return t.Append(ctx, e)
}

// ReadEvents reads telemetry; see TelemetryStore.Read.
func (h *Hub) ReadEvents(ctx context.Context, f twinhub.EventFilter, fn func(*twinhub.Event) error) error {
	t := h.telemetry
	if t == nil {
		return twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub keeps no telemetry")
	}
	if f.Group == "" {
		f.Group = "$Default"
	}
	return t.Read(ctx, f, fn)
}

const c2dReadySubject = "twinhub.c2d.ready."

// SendC2D queues a message for a device: 404 for an unknown device, 403
// DeviceMaximumQueueDepthExceeded with 50 pending, 413 over 64 KB. ttl 0
// means the default hour.
func (h *Hub) SendC2D(ctx context.Context, deviceID string, m *twinhub.C2DMessage, ttl time.Duration) error {
	q := h.c2d
	if q == nil {
		return twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this hub has no cloud-to-device queues")
	}
	if len(m.Body) > twinhub.MaxC2DSize {
		return twinhub.ErrTooLarge("message is %d bytes; the limit is %d", len(m.Body), twinhub.MaxC2DSize)
	}
	if ttl == 0 {
		ttl = twinhub.DefaultC2DTTL
	}
	if ttl < 0 || ttl > twinhub.MaxC2DTTL {
		return twinhub.ErrInvalid("time to live must be more than 0 and at most %s", twinhub.MaxC2DTTL)
	}
	switch m.Ack {
	case "":
		m.Ack = twinhub.AckNone
	case twinhub.AckNone, twinhub.AckPositive, twinhub.AckNegative, twinhub.AckFull:
	default:
		return twinhub.ErrInvalid("ack must be none, positive, negative or full, not %q", m.Ack)
	}
	if len(m.MessageID) > twinhub.MaxMessageIDBytes || len(m.CorrelationID) > twinhub.MaxMessageIDBytes {
		return twinhub.ErrInvalid("message and correlation ids are at most %d bytes", twinhub.MaxMessageIDBytes)
	}
	for _, p := range m.Properties {
		if p.Key == "" || strings.HasPrefix(p.Key, "$.") || strings.HasPrefix(strings.ToLower(p.Key), "iothub-") {
			return twinhub.ErrInvalid("application property name %q is empty or reserved", p.Key)
		}
	}
	if _, err := h.get(ctx, twinhub.DeviceKey(deviceID)); err != nil {
		return err
	}
	if m.MessageID == "" {
		m.MessageID = randomHex(16)
	}
	m.To = "/devices/" + deviceID + "/messages/deviceBound"
	now := twinhub.Now()
	m.Enqueued = now
	m.Expiry = twinhub.Time{Time: now.Add(ttl)}
	err := q.Enqueue(ctx, deviceID, m)
	if errors.Is(err, twinhub.ErrQueueFull) {
		return twinhub.Errorf(http.StatusForbidden, "DeviceMaximumQueueDepthExceeded", "Device %s has %d messages pending, the most IoT Hub allows", deviceID, twinhub.MaxC2DPending)
	}
	if err != nil {
		return err
	}
	h.metrics.C2D("sent")
	if h.bus != nil {
		h.bus.Publish(c2dReadySubject+twinhub.EncodeID(deviceID), nil)
	}
	return nil
}

// c2dPoll is about how often an idle C2D reader looks at its queue by
// itself, in case a notice was lost: the bus delivers at most once. The
// loss this node can see, its NATS connection gone and back, wakes every
// reader at once (wakeC2DOnReconnect); this covers the rest (a notice
// lost between the nodes of a cluster). Rare, so rarely: 100,000 idle
// devices look about 330 times a second at this pace, where every 5 s
// cost half a core of this 2-core machine in queue reads at 100,000.
const c2dPoll = 5 * time.Minute

// An idle reader first looks again soon, c2dQuickLooks times every
// c2dQuickPoll after its last message, and only then every few minutes: a
// notice lost around a delivery, the likeliest moment, then costs seconds,
// and a device idle for long costs almost nothing.
const (
	c2dQuickPoll  = 5 * time.Second
	c2dQuickLooks = 2
)

// wakeC2DOnReconnect has every C2D reader of this node look at its queue
// after the bus reconnects: the notices sent meanwhile are lost.
func (h *Hub) wakeC2DOnReconnect(ctx context.Context, bus twinhub.ReconnectingBus) {
	seen := bus.Reconnects()
	every(ctx, time.Second, func() bool {
		if n := bus.Reconnects(); n != seen {
			seen = n
			h.log.Info("the bus reconnected: cloud-to-device readers look at their queues")
			h.c2dReady.sendAll(struct{}{})
		}
		return true
	})
}

// C2DReadTimeout bounds one look at a device's queue by a delivery (MQTT,
// AMQP), and C2DRetryAfter is how soon a reader looks again after a look
// that failed for another reason than an empty queue. When a cluster's
// node dies, the reads of the streams it led go unanswered until their
// other replicas elect a leader (seconds): a look that waits long, or
// waits for the next poll, would leave the devices without their messages
// for that long after the store is back.
const (
	C2DReadTimeout = 5 * time.Second
	C2DRetryAfter  = time.Second
)

// C2DPollAfter is how long an idle C2D reader waits before it looks at its
// queue by itself, when it has looked that many times since its last
// message: c2dQuickPoll at first, then c2dPoll give or take a random
// quarter, so that many idle devices do not look at once.
func C2DPollAfter(looks int) time.Duration {
	if looks < c2dQuickLooks {
		return c2dQuickPoll
	}
	return c2dPoll*3/4 + rand.N(c2dPoll/2)
}

// WatchC2D calls fn whenever a message is queued for deviceID, on any
// node, until cancel. fn must not block. Delivery is at most once, so
// readers also look now and then (C2DPollAfter).
func (h *Hub) WatchC2D(deviceID string, fn func()) (cancel func(), err error) {
	if h.bus == nil {
		return func() {}, nil
	}
	return h.c2dReady.add(twinhub.EncodeID(deviceID), func(struct{}) { fn() }), nil
}

// NextC2D returns the first live message of a device after seq after,
// removing expired ones on the way, or ErrNotFound.
func (h *Hub) NextC2D(ctx context.Context, deviceID string, after uint64) (*twinhub.C2DMessage, error) {
	q := h.c2d
	if q == nil {
		return nil, twinhub.ErrNotFound
	}
	for {
		m, err := q.Next(ctx, deviceID, after)
		if err != nil {
			return nil, err
		}
		if !m.Expiry.IsZero() && time.Now().After(m.Expiry.Time) {
			if err := h.removeC2D(ctx, deviceID, m, twinhub.FeedbackExpired); err != nil {
				return nil, err
			}
			after = m.Seq
			continue
		}
		return m, nil
	}
}

// NextC2DDelivery is NextC2D for a delivery to the device (MQTT, AMQP): it
// counts the delivery in m.Deliveries, and a message delivered
// MaxC2DDeliveries times already is dead-lettered instead, and the next
// one looked at.
func (h *Hub) NextC2DDelivery(ctx context.Context, deviceID string, after uint64) (*twinhub.C2DMessage, error) {
	for {
		m, err := h.NextC2D(ctx, deviceID, after)
		if err != nil {
			return nil, err
		}
		dead, err := h.countDelivery(ctx, deviceID, m)
		if err != nil {
			return nil, err
		}
		if !dead {
			return m, nil
		}
		after = m.Seq
	}
}

// countDelivery counts a delivery of m into m.Deliveries; past
// MaxC2DDeliveries it removes m instead, with DeliveryCountExceeded
// feedback (IoT Hub's dead-lettering), and reports that.
func (h *Hub) countDelivery(ctx context.Context, deviceID string, m *twinhub.C2DMessage) (deadLettered bool, err error) {
	n, err := h.c2d.CountDelivery(ctx, deviceID, m.Seq)
	if err != nil {
		return false, err
	}
	if n <= twinhub.MaxC2DDeliveries {
		m.Deliveries = n
		return false, nil
	}
	if err := h.removeC2D(ctx, deviceID, m, twinhub.FeedbackDeliveryCountExceeded); err != nil {
		return false, err
	}
	return true, nil
}

// CompleteC2D removes a delivered message from its queue, with feedback
// if the message asked for it.
func (h *Hub) CompleteC2D(ctx context.Context, deviceID string, m *twinhub.C2DMessage) error {
	err := h.removeC2D(ctx, deviceID, m, twinhub.FeedbackSuccess)
	if err == nil {
		h.metrics.C2D("completed")
	}
	return err
}

// removeC2D removes a message from its device's queue, with feedback of
// status if the message asked for it: settled by the device, expired or
// dead-lettered. A message gone already was removed before (a
// redelivery settled, another node's expiry): nothing to do.
func (h *Hub) removeC2D(ctx context.Context, deviceID string, m *twinhub.C2DMessage, status string) error {
	q := h.c2d
	if q == nil {
		return nil
	}
	err := q.Remove(ctx, deviceID, m.Seq)
	if errors.Is(err, twinhub.ErrNotFound) {
		return nil
	}
	if err == nil {
		h.feedback(ctx, deviceID, m, status)
	}
	return err
}

// RejectC2D removes a delivered message that the device rejected, with
// Rejected feedback if the message asked for it.
func (h *Hub) RejectC2D(ctx context.Context, deviceID string, m *twinhub.C2DMessage) error {
	err := h.removeC2D(ctx, deviceID, m, twinhub.FeedbackRejected)
	if err == nil {
		h.metrics.C2D("rejected")
	}
	return err
}

// PurgeC2D deletes the pending messages of a device (DELETE
// /devices/{id}/commands).
func (h *Hub) PurgeC2D(ctx context.Context, deviceID string) (int, error) {
	q := h.c2d
	if q == nil {
		return 0, nil
	}
	if _, err := h.get(ctx, twinhub.DeviceKey(deviceID)); err != nil {
		return 0, err
	}
	return q.Purge(ctx, deviceID)
}

// feedback records the outcome of m if its ack asks for it.
func (h *Hub) feedback(ctx context.Context, deviceID string, m *twinhub.C2DMessage, status string) {
	f := h.feedbacks
	if f == nil {
		return
	}
	want := m.Ack == twinhub.AckFull || (m.Ack == twinhub.AckPositive && status == twinhub.FeedbackSuccess) || (m.Ack == twinhub.AckNegative && status != twinhub.FeedbackSuccess)
	if !want {
		return
	}
	gen := ""
	if rec, err := h.get(ctx, twinhub.DeviceKey(deviceID)); err == nil && rec.Device != nil {
		gen = rec.Device.GenerationID
	}
	desc := map[string]string{twinhub.FeedbackSuccess: "Success", twinhub.FeedbackExpired: "Message Expired",
		twinhub.FeedbackRejected: "Message Rejected", twinhub.FeedbackDeliveryCountExceeded: "Message Delivery Count Exceeded"}[status]
	if err := f.Add(ctx, twinhub.FeedbackRecord{
		OriginalMessageID: m.MessageID, Description: desc, DeviceGenerationID: gen,
		DeviceID: deviceID, EnqueuedTimeUTC: twinhub.Now(), StatusCode: status,
	}); err != nil {
		h.log.Warn("storing cloud-to-device feedback", "device", deviceID, "err", err)
	}
}

// ReceiveFeedback is GET /messages/serviceBound/feedback.
func (h *Hub) ReceiveFeedback(ctx context.Context) (string, []twinhub.FeedbackRecord, error) {
	f := h.feedbacks
	if f == nil {
		return "", nil, twinhub.ErrNotFound
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
	f := h.feedbacks
	if f == nil {
		return settleLock(ctx, lockToken, nil)
	}
	if complete {
		return settleLock(ctx, lockToken, f.Complete)
	}
	return settleLock(ctx, lockToken, f.Abandon)
}

// settleLock completes or abandons what a lock token of a back end's
// receive holds (feedback, file notifications): 412 DeviceMessageLockLost
// for a token that is unknown or expired (or a store that is not there).
func settleLock(ctx context.Context, lockToken string, settle func(context.Context, string) error) error {
	err := twinhub.ErrNotFound
	if settle != nil {
		err = settle(ctx, lockToken)
	}
	if errors.Is(err, twinhub.ErrNotFound) {
		return twinhub.Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "lock token %s is unknown or expired", lockToken)
	}
	return err
}

// AddFileNotification tells the back ends' file-notification receivers
// that a device uploaded a file (file upload calls it once the device
// says the upload is done). Without a store the notification is dropped.
func (h *Hub) AddFileNotification(ctx context.Context, n twinhub.FileNotification) error {
	if h.files == nil {
		return nil
	}
	n.EnqueuedTimeUTC = twinhub.Now()
	return h.files.Add(ctx, n)
}

// ReceiveFileNotification is GET /messages/serviceBound/filenotifications:
// the next notification, locked; ErrNotFound when there is none.
func (h *Hub) ReceiveFileNotification(ctx context.Context) (string, twinhub.FileNotification, error) {
	if h.files == nil {
		return "", twinhub.FileNotification{}, twinhub.ErrNotFound
	}
	return h.files.Receive(ctx)
}

// CompleteFileNotification and AbandonFileNotification settle a received
// notification.
func (h *Hub) CompleteFileNotification(ctx context.Context, lockToken string) error {
	if h.files == nil {
		return settleLock(ctx, lockToken, nil)
	}
	return settleLock(ctx, lockToken, h.files.Complete)
}

func (h *Hub) AbandonFileNotification(ctx context.Context, lockToken string) error {
	if h.files == nil {
		return settleLock(ctx, lockToken, nil)
	}
	return settleLock(ctx, lockToken, h.files.Abandon)
}

// ReceiveC2D returns a device's first message that no earlier receive on
// this node has locked, and locks it, counting the delivery (a message
// delivered MaxC2DDeliveries times is dead-lettered instead); ErrNotFound
// when there is none.
// (Locks live in the node's memory: MQTT delivery ignores them, and
// another node may hand the same message out; IoT Hub devices use one
// protocol at a time.)
func (h *Hub) ReceiveC2D(ctx context.Context, deviceID string) (*twinhub.C2DMessage, error) {
	var after uint64
	for {
		m, err := h.NextC2D(ctx, deviceID, after)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		h.c2dMu.Lock()
		k := c2dLockKey{deviceID, m.Seq}
		if until, ok := h.c2dLocks[k]; ok && now.Before(until) {
			h.c2dMu.Unlock()
			after = m.Seq
			continue
		}
		for lk, until := range h.c2dLocks {
			if now.After(until) {
				delete(h.c2dLocks, lk)
			}
		}
		h.c2dLocks[k] = now.Add(twinhub.C2DLockTime)
		h.c2dMu.Unlock()
		dead, err := h.countDelivery(ctx, deviceID, m)
		if err != nil || dead {
			h.c2dMu.Lock()
			delete(h.c2dLocks, k)
			h.c2dMu.Unlock()
		}
		if err != nil {
			return nil, err
		}
		if dead {
			after = m.Seq
			continue
		}
		return m, nil
	}
}

type c2dLockKey struct {
	device string
	seq    uint64
}

// SettleC2D completes, rejects or abandons a message that ReceiveC2D
// handed out: lockToken is its Seq. 412 DeviceMessageLockLost if the
// message is gone.
func (h *Hub) SettleC2D(ctx context.Context, deviceID string, seq uint64, outcome string) error {
	q := h.c2d
	if q == nil {
		return twinhub.Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "this hub keeps no cloud-to-device messages, so lock token %d is unknown", seq)
	}
	if seq == 0 {
		return twinhub.Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "no message has lock token 0")
	}
	h.c2dMu.Lock()
	delete(h.c2dLocks, c2dLockKey{deviceID, seq})
	h.c2dMu.Unlock()
	m, err := q.Next(ctx, deviceID, seq-1)
	if errors.Is(err, twinhub.ErrNotFound) || (err == nil && m.Seq != seq) {
		return twinhub.Errorf(http.StatusPreconditionFailed, "DeviceMessageLockLost", "message %d of device %s is no longer in its queue", seq, deviceID)
	}
	if err != nil {
		return err
	}
	switch outcome {
	case twinhub.C2DAbandon:
		return nil
	case twinhub.C2DReject:
		return h.RejectC2D(ctx, deviceID, m)
	}
	return h.CompleteC2D(ctx, deviceID, m)
}

// c2dSweeper is implemented by queues that can find expired messages.
type c2dSweeper interface {
	Sweep(ctx context.Context, now time.Time, fn func(deviceID string, m *twinhub.C2DMessage)) error
}

// SweepC2D deletes expired cloud-to-device messages of every device,
// with feedback for those that asked for it. IoT Hub expires messages of
// devices that never connect too; delivery alone would only notice them
// when the device comes back.
func (h *Hub) SweepC2D(ctx context.Context) error {
	q := h.c2d
	s, ok := q.(c2dSweeper)
	if !ok {
		return nil
	}
	return s.Sweep(ctx, time.Now(), func(deviceID string, m *twinhub.C2DMessage) {
		h.feedback(ctx, deviceID, m, twinhub.FeedbackExpired)
	})
}

// sweepC2DEvery calls SweepC2D every interval until ctx ends. Every node
// runs one: a message is deleted, and its feedback written, once.
func (h *Hub) sweepC2DEvery(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() bool {
		if err := h.SweepC2D(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("sweeping expired cloud-to-device messages", "err", err)
		}
		return true
	})
}
