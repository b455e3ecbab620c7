package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Device-to-cloud telemetry lives in one stream a partition,
// TelemetryStreamName(p), on subjects
//
//	twinhub.telemetry.<partition>.<device>            a device's events
//	twinhub.telemetry.<partition>.<device>.<module>   a module's events
//
// where <device> and <module> are twinhub.EncodeID of the ids and
// <partition> is TelemetryPartition(device id): FNV-1a (32 bit) of the
// device id modulo the partition count, so that a device and its modules
// share a partition and keep their order, as on Event Hubs. A stream a
// partition gives each partition its own sequence numbers, which the
// Event Hubs-compatible endpoint hands out as the partition's sequence
// numbers and offsets (one stream for all partitions numbered them across
// partitions, so that a reader's lag could not be read from them). A
// message's data is the event, its properties and body (eventformat.go);
// events stored before that have the body as data and the properties in
// headers (Header*), and read as they did. Consumer groups are durable consumers named
// "cg-" + EncodeID(group) (plus the encoded device and module when
// filtered), one on each partition's stream.
const (
	TelemetryStreamPrefix  = "twinhub-telemetry-"
	TelemetrySubjectPrefix = "twinhub.telemetry."

	DefaultTelemetryPartitions = 4
	DefaultTelemetryRetention  = 24 * time.Hour

	// partitionsMetadata, on the stream of partition 0, is the
	// partition count.
	partitionsMetadata = "twinhub-partitions"
	// maxTelemetryPartitions bounds --telemetry-partitions (Event Hubs
	// allows 32 on its standard tier, IoT Hub up to 128).
	maxTelemetryPartitions = 128
)

// TelemetryStreamName is the stream of partition p.
func TelemetryStreamName(p int) string { return TelemetryStreamPrefix + strconv.Itoa(p) }

// TelemetryDuplicateWindow is how long the telemetry stream remembers
// the events that carry a message id (and a Retransmit key: MQTT QoS 1):
// the same event sent again within it, as a device does whose
// acknowledgement was lost with a node, is stored once (duplicateID).
// Events without a message id are not compared. (The server keeps each
// for the window: about 100 bytes an event.)
const TelemetryDuplicateWindow = 30 * time.Second

// Header names of the system properties of an event stored in headers,
// as events were before eventFormat1.
const (
	HeaderDeviceID        = "iothub-connection-device-id"
	HeaderModuleID        = "iothub-connection-module-id"
	HeaderAuthMethod      = "iothub-connection-auth-method"
	HeaderAuthGeneration  = "iothub-connection-auth-generation-id"
	HeaderEnqueuedTime    = "iothub-enqueuedtime"
	HeaderMessageID       = "message-id"
	HeaderCorrelationID   = "correlation-id"
	HeaderContentType     = "content-type"
	HeaderContentEncoding = "content-encoding"
	HeaderUserID          = "user-id"
	HeaderTo              = "to"
)

var systemHeaders = map[string]bool{
	HeaderDeviceID: true, HeaderModuleID: true, HeaderAuthMethod: true, HeaderAuthGeneration: true, HeaderEnqueuedTime: true,
	HeaderMessageID: true, HeaderCorrelationID: true, HeaderContentType: true, HeaderContentEncoding: true,
	HeaderUserID: true, HeaderTo: true, migratedHeader: true,
	// JetStream's duplicate detection; never a device's property.
	nats.MsgIdHdr: true, strings.ToLower(nats.MsgIdHdr): true,
}

// TelemetryOptions configure the stream when it is first created.
type TelemetryOptions struct {
	// Partitions is the number of partitions (default 4). A stream that
	// exists keeps the count it was made with.
	Partitions int
	// Retention is how long events are kept (default a day).
	Retention time.Duration
	Replicas  int
	Log       *slog.Logger
}

// Telemetry is twinhub.TelemetryStore on a JetStream stream.
type Telemetry struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	streams    []jetstream.Stream // by partition
	partitions int
	log        *slog.Logger

	ackOnce sync.Once
	ack     *acker
	ackErr  error
}

var _ twinhub.AsyncTelemetryStore = (*Telemetry)(nil)

// OpenTelemetry creates or updates the telemetry streams, moving the
// events of a data folder made before streams were per partition into
// them (migrateTelemetry).
func OpenTelemetry(ctx context.Context, nc *nats.Conn, o TelemetryOptions) (*Telemetry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultTelemetryPartitions
	}
	if o.Partitions > maxTelemetryPartitions {
		return nil, fmt.Errorf("telemetry partitions: %d is over the most, %d", o.Partitions, maxTelemetryPartitions)
	}
	if o.Retention <= 0 {
		o.Retention = DefaultTelemetryRetention
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	partitions := o.Partitions
	legacy, err := js.Stream(ctx, legacyTelemetryStream)
	switch {
	case err == nil:
		partitions = legacyPartitions(legacy, partitions)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		legacy = nil
	default:
		return nil, fmt.Errorf("looking for stream %s: %w", legacyTelemetryStream, err)
	}
	if s, err := js.Stream(ctx, TelemetryStreamName(0)); err == nil {
		if n, err := strconv.Atoi(s.CachedInfo().Config.Metadata[partitionsMetadata]); err == nil && n > 0 {
			partitions = n
		}
	}
	if partitions != o.Partitions {
		o.Log.Warn("the telemetry streams keep the partition count they were made with", "partitions", partitions, "asked", o.Partitions)
	}
	if legacy != nil {
		// Its subjects are those of the partitions' streams: they move
		// aside before the new streams take them.
		if err := setAsideLegacy(ctx, js, legacy); err != nil {
			return nil, err
		}
	}
	t := &Telemetry{nc: nc, js: js, partitions: partitions, log: o.Log}
	for p := range partitions {
		c := jetstream.StreamConfig{
			Name:        TelemetryStreamName(p),
			Description: fmt.Sprintf("twinhub device-to-cloud telemetry, partition %d of %d", p, partitions),
			Subjects:    []string{TelemetrySubjectPrefix + strconv.Itoa(p) + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      o.Retention,
			MaxMsgSize:  twinhub.MaxTelemetrySize + 64<<10, // room for headers
			Duplicates:  min(TelemetryDuplicateWindow, o.Retention),
			Replicas:    keepReplicas(ctx, js, TelemetryStreamName(p), o.Replicas),
		}
		if p == 0 {
			c.Metadata = map[string]string{partitionsMetadata: strconv.Itoa(partitions)}
		}
		s, err := openRetry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, c) })
		if err != nil {
			return nil, fmt.Errorf("opening stream %s: %w", c.Name, err)
		}
		t.streams = append(t.streams, s)
	}
	if legacy != nil {
		if err := t.migrate(ctx, legacy); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Partitions is the partition count.
func (t *Telemetry) Partitions() int { return t.partitions }

// TelemetryPartition is the partition of a device's events.
func TelemetryPartition(deviceID string, partitions int) int {
	return int(fnv32a(deviceID) % uint32(partitions))
}

// fnv32a is FNV-1a, 32 bit (hash/fnv's New32a), without its allocations.
func fnv32a(s string) uint32 {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= prime
	}
	return h
}

// Subject is where the events of identity k go.
func (t *Telemetry) Subject(k twinhub.Key) string {
	p := TelemetryPartition(k.DeviceID, t.partitions)
	if k.ModuleID == "" && p < 10 && plainID(k.DeviceID) {
		// The usual case, built with one allocation.
		return TelemetrySubjectPrefix + string(rune('0'+p)) + "." + k.DeviceID
	}
	return TelemetrySubjectPrefix + strconv.Itoa(p) + "." + twinhub.EncodeKey(k)
}

// plainID says whether twinhub.EncodeID leaves id as it is.
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// message builds the NATS message of an event, its data in buf (from
// eventBufs, returned there once the message is published).
func (t *Telemetry) message(e *twinhub.Event, buf *[]byte) *nats.Msg {
	*buf = appendEvent((*buf)[:0], e)
	m := &nats.Msg{Subject: t.Subject(e.Identity), Data: *buf}
	if e.MessageID != "" && e.Retransmit != "" {
		// A device whose acknowledgement was lost (its node died) sends the
		// message again, maybe through another node: the stream keeps one.
		m.Header = nats.Header{nats.MsgIdHdr: {duplicateID(e)}}
	}
	return m
}

// releaseEventBuf returns a buffer of message to eventBufs, unless a
// large event grew it.
func releaseEventBuf(buf *[]byte) {
	if cap(*buf) <= 64<<10 {
		eventBufs.Put(buf)
	}
}

// duplicateID is what JetStream compares to tell a resent event from a
// new one: the identity, its message id, the transmission (MQTT packet
// id) and a hash of the body. All must match for an event to be dropped,
// so a device that reuses message ids loses nothing unless it also sends
// the same body under the same packet id within the window.
func duplicateID(e *twinhub.Event) string {
	h := fnv.New64a()
	h.Write(e.Body)
	return twinhub.EncodeKey(e.Identity) + ":" + e.Retransmit + ":" + strconv.FormatUint(h.Sum64(), 36) + ":" + e.MessageID
}

func (t *Telemetry) Append(ctx context.Context, e *twinhub.Event) error {
	buf := eventBufs.Get().(*[]byte)
	_, err := t.js.PublishMsg(ctx, t.message(e, buf))
	releaseEventBuf(buf)
	return err
}

// AppendAsync stores an event without waiting for the stream: done is
// called once, with nil when the stream has stored the event (when Append
// would return) or with the error, also when no answer came within
// timeout. done runs on the goroutine that receives the stream's answers
// (or on the caller's, for an error at once) and must not block. Answers
// come in the order of the appends, but a caller that needs order must
// keep it itself: a timeout may overtake an answer.
//
// Waiting for an answer asynchronously lets a connection read its next
// message meanwhile, and costs less than a JetStream request: one
// subscription for all answers, no context, timer or channel a message,
// and the answer of a success is not decoded.
func (t *Telemetry) AppendAsync(e *twinhub.Event, timeout time.Duration, done func(error)) {
	a, err := t.acker()
	if err != nil {
		done(err)
		return
	}
	buf := eventBufs.Get().(*[]byte)
	m := t.message(e, buf)
	ticket, reply := a.add(pendingAck{done: done, deadline: time.Now().Add(timeout)})
	m.Reply = reply
	err = t.nc.PublishMsg(m)
	releaseEventBuf(buf)
	if err != nil {
		if p, ok := a.withdraw(ticket); ok {
			p.done(err)
		}
	}
}

// acker starts, once, the subscription that receives the answers to
// AppendAsync.
func (t *Telemetry) acker() (*acker, error) {
	t.ackOnce.Do(func() { t.ack, t.ackErr = newAcker(t.nc) })
	return t.ack, t.ackErr
}
