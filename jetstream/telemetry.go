package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Device-to-cloud telemetry lives in one stream, TelemetryStream, on
// subjects
//
//	twinhub.telemetry.<partition>.<device>            a device's events
//	twinhub.telemetry.<partition>.<device>.<module>   a module's events
//
// where <device> and <module> are twinhub.EncodeID of the ids and
// <partition> is TelemetryPartition(device id): FNV-1a (32 bit) of the
// device id modulo the partition count, so that a device and its modules
// share a partition and keep their order, as on Event Hubs. The body is
// the message payload; system properties are NATS headers with IoT Hub's
// names (iothub-connection-device-id, iothub-connection-module-id,
// iothub-connection-auth-method, iothub-enqueuedtime, message-id,
// correlation-id, content-type, content-encoding, user-id, to) and every
// application property is a header of its own name. Consumer groups are
// durable consumers named "cg-" + EncodeID(group) (plus the encoded
// device and module when filtered).
const (
	TelemetryStream        = "twinhub-telemetry"
	TelemetrySubjectPrefix = "twinhub.telemetry."

	DefaultTelemetryPartitions = 4
	DefaultTelemetryRetention  = 24 * time.Hour

	partitionsMetadata = "twinhub-partitions"
)

// Header names of the system properties of an event.
const (
	HeaderDeviceID        = "iothub-connection-device-id"
	HeaderModuleID        = "iothub-connection-module-id"
	HeaderAuthMethod      = "iothub-connection-auth-method"
	HeaderEnqueuedTime    = "iothub-enqueuedtime"
	HeaderMessageID       = "message-id"
	HeaderCorrelationID   = "correlation-id"
	HeaderContentType     = "content-type"
	HeaderContentEncoding = "content-encoding"
	HeaderUserID          = "user-id"
	HeaderTo              = "to"
)

var systemHeaders = map[string]bool{
	HeaderDeviceID: true, HeaderModuleID: true, HeaderAuthMethod: true, HeaderEnqueuedTime: true,
	HeaderMessageID: true, HeaderCorrelationID: true, HeaderContentType: true, HeaderContentEncoding: true,
	HeaderUserID: true, HeaderTo: true,
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
	js         jetstream.JetStream
	stream     jetstream.Stream
	partitions int
	log        *slog.Logger
}

var _ twinhub.TelemetryStore = (*Telemetry)(nil)

// OpenTelemetry creates or updates the telemetry stream.
func OpenTelemetry(ctx context.Context, nc *nats.Conn, o TelemetryOptions) (*Telemetry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultTelemetryPartitions
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
	if s, err := js.Stream(ctx, TelemetryStream); err == nil {
		if n, err := strconv.Atoi(s.CachedInfo().Config.Metadata[partitionsMetadata]); err == nil && n > 0 {
			if n != partitions {
				o.Log.Warn("the telemetry stream keeps the partition count it was made with", "partitions", n, "asked", partitions)
			}
			partitions = n
		}
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        TelemetryStream,
		Description: "twinhub device-to-cloud telemetry, partitioned by device",
		Subjects:    []string{TelemetrySubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.Retention,
		MaxMsgSize:  twinhub.MaxTelemetrySize + 64<<10, // room for headers
		Replicas:    keepReplicas(ctx, js, TelemetryStream, o.Replicas),
		Metadata:    map[string]string{partitionsMetadata: strconv.Itoa(partitions)},
	})
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", TelemetryStream, err)
	}
	return &Telemetry{js: js, stream: stream, partitions: partitions, log: o.Log}, nil
}

// Partitions is the stream's partition count.
func (t *Telemetry) Partitions() int { return t.partitions }

// TelemetryPartition is the partition of a device's events.
func TelemetryPartition(deviceID string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(deviceID))
	return int(h.Sum32() % uint32(partitions))
}

// Subject is where the events of identity k go.
func (t *Telemetry) Subject(k twinhub.Key) string {
	return TelemetrySubjectPrefix + strconv.Itoa(TelemetryPartition(k.DeviceID, t.partitions)) + "." + twinhub.EncodeKey(k)
}

// authMethodJSON is iothub-connection-auth-method as IoT Hub writes it.
func authMethodJSON(k twinhub.Key, method string) string {
	scope := "device"
	if k.ModuleID != "" {
		scope = "module"
	}
	if method == "" {
		method = "sas"
	}
	return `{"scope":"` + scope + `","type":"` + method + `","issuer":"iothub","acceptingIpFilterRule":null}`
}

// headerKey makes an application property name a valid NATS header
// name: bytes that a header name may not hold (controls, space, ':' and
// '%' itself) are percent-encoded.
func headerKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func headerValue(v string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
}

func (t *Telemetry) Append(ctx context.Context, e *twinhub.Event) error {
	m := nats.NewMsg(t.Subject(e.Identity))
	m.Data = e.Body
	h := m.Header
	for _, p := range e.Properties {
		k := headerKey(p.Key)
		if systemHeaders[strings.ToLower(k)] {
			continue
		}
		h[k] = append(h[k], headerValue(p.Value))
	}
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{headerValue(v)}
		}
	}
	set(HeaderDeviceID, e.Identity.DeviceID)
	set(HeaderModuleID, e.Identity.ModuleID)
	set(HeaderAuthMethod, authMethodJSON(e.Identity, e.AuthMethod))
	set(HeaderEnqueuedTime, e.Enqueued.String())
	set(HeaderMessageID, e.MessageID)
	set(HeaderCorrelationID, e.CorrelationID)
	set(HeaderContentType, e.ContentType)
	set(HeaderContentEncoding, e.ContentEncoding)
	set(HeaderUserID, e.UserID)
	set(HeaderTo, e.To)
	_, err := t.js.PublishMsg(ctx, m)
	return err
}

// groupConsumer names the durable consumer of a group and its filter.
func (t *Telemetry) groupConsumer(f twinhub.EventFilter) (string, []string) {
	name := "cg-" + twinhub.EncodeID(f.Group)
	if f.DeviceID == "" {
		return name, []string{TelemetrySubjectPrefix + ">"}
	}
	p := TelemetrySubjectPrefix + strconv.Itoa(TelemetryPartition(f.DeviceID, t.partitions)) + "."
	name += "-" + twinhub.EncodeID(f.DeviceID)
	if f.ModuleID != "" {
		name += "-" + twinhub.EncodeID(f.ModuleID)
		return name, []string{p + twinhub.EncodeKey(twinhub.ModuleKey(f.DeviceID, f.ModuleID))}
	}
	dev := p + twinhub.EncodeID(f.DeviceID)
	return name, []string{dev, dev + ".>"}
}

func (t *Telemetry) Read(ctx context.Context, f twinhub.EventFilter, fn func(*twinhub.Event) error) error {
	name, filters := t.groupConsumer(f)
	cons, err := t.stream.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		deliver := jetstream.DeliverNewPolicy
		if f.FromStart {
			deliver = jetstream.DeliverAllPolicy
		}
		cons, err = t.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:        name,
			Description:    "twinhub consumer group " + f.Group,
			DeliverPolicy:  deliver,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        10 * time.Second,
			FilterSubjects: filters,
		})
	}
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", f.Group, err)
	}
	// Fetching what is there, without leaving a pull request waiting at
	// the server, means that a reader that stops leaves no event in limbo
	// (delivered to nobody until AckWait): the next reader of the group
	// starts exactly where this one stopped.
	ackCtx := context.WithoutCancel(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// One at a time: an event fetched but not handed to fn (the
		// reader stopped) would wait for AckWait after a restart, even
		// when nacked.
		batch, err := cons.FetchNoWait(1)
		if err != nil {
			return err
		}
		var stopped error
		n := 0
		for m := range batch.Messages() {
			n++
			if stopped != nil {
				m.Nak()
				continue
			}
			e, err := decodeEvent(m)
			if err != nil {
				t.log.Warn("undecodable telemetry event; skipped", "subject", m.Subject(), "err", err)
				m.Ack()
				continue
			}
			if err := fn(e); err != nil {
				stopped = err
				m.Nak()
				continue
			}
			actx, cancel := context.WithTimeout(ackCtx, 10*time.Second)
			err = m.DoubleAck(actx)
			cancel()
			if err != nil {
				stopped = err
			} else if ctx.Err() != nil {
				stopped = ctx.Err()
			}
		}
		if stopped != nil {
			return stopped
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(readPoll):
			}
		}
	}
}

// readPoll is how long a reader waits before looking for new events when
// it has read them all.
const readPoll = 100 * time.Millisecond

func decodeEvent(m jetstream.Msg) (*twinhub.Event, error) {
	rest := strings.TrimPrefix(m.Subject(), TelemetrySubjectPrefix)
	part, key, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, fmt.Errorf("subject %s", m.Subject())
	}
	k, err := twinhub.DecodeKey(key)
	if err != nil {
		return nil, err
	}
	e := &twinhub.Event{Identity: k, Body: m.Data()}
	e.Partition, _ = strconv.Atoi(part)
	if md, err := m.Metadata(); err == nil {
		e.Sequence = md.Sequence.Stream
	}
	h := m.Headers()
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if a := get(HeaderAuthMethod); strings.Contains(a, `"type":"`) {
		a = a[strings.Index(a, `"type":"`)+8:]
		e.AuthMethod, _, _ = strings.Cut(a, `"`)
	}
	if ts, err := time.Parse(time.RFC3339Nano, get(HeaderEnqueuedTime)); err == nil {
		e.Enqueued = twinhub.Time{Time: ts}
	}
	e.MessageID, e.CorrelationID = get(HeaderMessageID), get(HeaderCorrelationID)
	e.ContentType, e.ContentEncoding = get(HeaderContentType), get(HeaderContentEncoding)
	e.UserID, e.To = get(HeaderUserID), get(HeaderTo)
	keys := make([]string, 0, len(h))
	for k := range h {
		if !systemHeaders[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if strings.Contains(k, "%") {
			if u, err := url.PathUnescape(k); err == nil {
				name = u
			}
		}
		for _, v := range h[k] {
			e.Properties = append(e.Properties, twinhub.Property{Key: name, Value: v})
		}
	}
	return e, nil
}
