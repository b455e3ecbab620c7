package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	nc         *nats.Conn
	js         jetstream.JetStream
	stream     jetstream.Stream
	partitions int
	log        *slog.Logger

	ackOnce sync.Once
	ack     *acker
	ackErr  error
}

var _ twinhub.AsyncTelemetryStore = (*Telemetry)(nil)

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
	return &Telemetry{nc: nc, js: js, stream: stream, partitions: partitions, log: o.Log}, nil
}

// Partitions is the stream's partition count.
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

// authMethodJSON is iothub-connection-auth-method as IoT Hub writes it.
func authMethodJSON(k twinhub.Key, method string) string {
	module := k.ModuleID != ""
	switch method {
	case "", "sas":
		if module {
			return authModuleSAS
		}
		return authDeviceSAS
	}
	scope := "device"
	if module {
		scope = "module"
	}
	return `{"scope":"` + scope + `","type":"` + method + `","issuer":"iothub","acceptingIpFilterRule":null}`
}

const (
	authDeviceSAS = `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`
	authModuleSAS = `{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`
)

// headerKey makes an application property name a valid NATS header
// name: bytes that a header name may not hold (controls, space, ':' and
// '%' itself) are percent-encoded.
func headerKey(k string) string {
	i := 0
	for i < len(k) && !headerKeyEscaped(k[i]) {
		i++
	}
	if i == len(k) {
		return k // the usual case: nothing to encode, nothing allocated
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, i, len(k)+8)
	copy(b, k[:i])
	for ; i < len(k); i++ {
		c := k[i]
		if headerKeyEscaped(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func headerKeyEscaped(c byte) bool { return c <= ' ' || c >= 0x7f || c == ':' || c == '%' }

// headerValue replaces CR and LF, which would end the header, by spaces.
func headerValue(v string) string {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// isSystemHeader says whether k, in any case, names a system property.
// Lower-casing (an allocation when k has capitals) is skipped unless k
// is as long as one of them.
func isSystemHeader(k string) bool {
	return len(k) < len(systemHeaderLength) && systemHeaderLength[len(k)] &&
		(systemHeaders[k] || systemHeaders[strings.ToLower(k)])
}

// systemHeaderLength[n] says whether a system header is n bytes long.
var systemHeaderLength = func() (l [64]bool) {
	for k := range systemHeaders {
		l[len(k)] = true
	}
	return l
}()

// message builds the NATS message of an event.
func (t *Telemetry) message(e *twinhub.Event) *nats.Msg {
	h := make(nats.Header, 4+len(e.Properties))
	for _, p := range e.Properties {
		k := headerKey(p.Key)
		if isSystemHeader(k) {
			continue
		}
		h[k] = append(h[k], headerValue(p.Value))
	}
	// One backing array for the value slices of the system properties.
	vals := make([]string, 0, 10)
	set := func(k, v string) {
		if v != "" {
			vals = append(vals, headerValue(v))
			n := len(vals)
			h[k] = vals[n-1 : n : n]
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
	return &nats.Msg{Subject: t.Subject(e.Identity), Header: h, Data: e.Body}
}

func (t *Telemetry) Append(ctx context.Context, e *twinhub.Event) error {
	_, err := t.js.PublishMsg(ctx, t.message(e))
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
	m := t.message(e)
	id, reply := a.add(done, timeout)
	m.Reply = reply
	if err := t.nc.PublishMsg(m); err != nil {
		if fn := a.take(id, false); fn != nil {
			fn(err)
		}
	}
}

// acker starts, once, the subscription that receives the answers to
// AppendAsync.
func (t *Telemetry) acker() (*acker, error) {
	t.ackOnce.Do(func() {
		// An inbox of its own: the connection's request inbox
		// (NewRespInbox) would also take the answers of JetStream API
		// requests, and its subscription these answers.
		a := &acker{prefix: t.nc.NewInbox() + ".", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
		sub, err := t.nc.Subscribe(a.prefix+"*", a.onAnswer)
		if err != nil {
			t.ackErr = err
			return
		}
		sub.SetPendingLimits(-1, -1)
		t.ack = a
	})
	return t.ack, t.ackErr
}

// acker matches the stream's answers to asynchronous appends by the
// number at the end of their reply subject.
//
// The number of an append that got its answer is used again (an append
// gets exactly one answer, so no other can arrive for it): the reply
// subjects in use stay as few as the appends that wait at once, and the
// NATS server finds them in its subject cache instead of matching a new
// subject for every answer. The number of an append that timed out is
// never used again, lest its late answer be taken for another's.
type acker struct {
	prefix string

	mu       sync.Mutex
	seq      uint64
	free     []uint64 // numbers answered, to use again
	pending  map[uint64]pendingAck
	replies  map[uint64]string // reply subjects of the numbers pending or free
	sweeping bool
}

type pendingAck struct {
	done     func(error)
	deadline time.Time
}

// maxFreeIDs bounds the numbers kept for use again.
const maxFreeIDs = 4096

// ackSweep is how often appends are checked for a missing answer.
const ackSweep = 500 * time.Millisecond

var errAppendTimeout = errors.New("telemetry append: no answer from the stream in time")

func (a *acker) add(done func(error), timeout time.Duration) (uint64, string) {
	deadline := time.Now().Add(timeout)
	a.mu.Lock()
	var id uint64
	var reply string
	if n := len(a.free); n > 0 {
		id = a.free[n-1]
		a.free = a.free[:n-1]
		reply = a.replies[id]
	} else {
		a.seq++
		id = a.seq
		reply = a.prefix + strconv.FormatUint(id, 36)
		a.replies[id] = reply
	}
	a.pending[id] = pendingAck{done: done, deadline: deadline}
	sweep := !a.sweeping
	a.sweeping = true
	a.mu.Unlock()
	if sweep {
		go a.sweep()
	}
	return id, reply
}

// take removes and returns the callback of an append; nil when it has
// been answered or timed out already. answered says that the answer
// came, so that the number may be used again.
func (a *acker) take(id uint64, answered bool) func(error) {
	a.mu.Lock()
	p, ok := a.pending[id]
	if ok {
		delete(a.pending, id)
		if answered && len(a.free) < maxFreeIDs {
			a.free = append(a.free, id)
		} else {
			delete(a.replies, id)
		}
	}
	a.mu.Unlock()
	return p.done
}

func (a *acker) onAnswer(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(a.prefix):], 36, 64)
	if err != nil {
		return
	}
	if done := a.take(id, true); done != nil {
		done(pubAckError(m))
	}
}

// sweep fails the appends left without an answer past their deadline,
// while any are pending.
func (a *acker) sweep() {
	var late []func(error)
	for {
		time.Sleep(ackSweep)
		now := time.Now()
		a.mu.Lock()
		for id, p := range a.pending {
			if now.After(p.deadline) {
				late = append(late, p.done)
				delete(a.pending, id)
				delete(a.replies, id)
			}
		}
		idle := len(a.pending) == 0
		if idle {
			a.sweeping = false
		}
		a.mu.Unlock()
		for i, done := range late {
			done(errAppendTimeout)
			late[i] = nil
		}
		late = late[:0]
		if idle {
			return
		}
	}
}

// pubAckError reads JetStream's answer to a publish: nil when the message
// is stored. A success is {"stream":..,"seq":..}; the answer is decoded
// only when it mentions an error.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return nats.ErrNoResponders
		}
		return errors.New("telemetry append: empty answer from the stream")
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) {
		return nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("telemetry append: answer %q: %w", m.Data, err)
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
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
