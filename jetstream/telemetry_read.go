package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// Reading telemetry two ways: by consumer group, whose position the
// stream keeps (Read: monitor-events, the REST reader), and by partition
// from a position the reader keeps itself (ReadPartition: the Event
// Hubs-compatible endpoint).

var _ twinhub.PartitionedTelemetryStore = (*Telemetry)(nil)

// groupConsumer names the durable consumer of a group, the partitions it
// reads and its filter in each of them.
func (t *Telemetry) groupConsumer(f twinhub.EventFilter) (name string, partitions []int, filters []string) {
	name = "cg-" + twinhub.EncodeID(f.Group)
	if f.DeviceID == "" {
		for p := range t.partitions {
			partitions = append(partitions, p)
		}
		return name, partitions, nil
	}
	p := TelemetryPartition(f.DeviceID, t.partitions)
	prefix := TelemetrySubjectPrefix + strconv.Itoa(p) + "."
	name += "-" + twinhub.EncodeID(f.DeviceID)
	if f.ModuleID != "" {
		name += "-" + twinhub.EncodeID(f.ModuleID)
		return name, []int{p}, []string{prefix + twinhub.EncodeKey(twinhub.ModuleKey(f.DeviceID, f.ModuleID))}
	}
	dev := prefix + twinhub.EncodeID(f.DeviceID)
	return name, []int{p}, []string{dev, dev + ".>"}
}

func (t *Telemetry) Read(ctx context.Context, f twinhub.EventFilter, fn func(*twinhub.Event) error) error {
	name, partitions, filters := t.groupConsumer(f)
	var consumers []jetstream.Consumer
	for _, p := range partitions {
		cons, err := t.streams[p].Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			deliver := jetstream.DeliverNewPolicy
			if f.FromStart {
				deliver = jetstream.DeliverAllPolicy
			}
			cons, err = t.streams[p].CreateConsumer(ctx, jetstream.ConsumerConfig{
				Durable:        name,
				Description:    "twinhub consumer group " + f.Group,
				DeliverPolicy:  deliver,
				AckPolicy:      jetstream.AckExplicitPolicy,
				AckWait:        10 * time.Second,
				FilterSubjects: filters,
			})
		}
		if err != nil {
			return fmt.Errorf("consumer group %s, partition %d: %w", f.Group, p, err)
		}
		consumers = append(consumers, cons)
	}
	// The partitions take turns, an event each, so that a busy one
	// does not hold the others back.
	for {
		read := 0
		for _, cons := range consumers {
			n, err := t.readOne(ctx, cons, fn)
			if err != nil {
				return err
			}
			read += n
		}
		if read == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(readPoll):
			}
		}
	}
}

// readOne hands the group's next event, if there is one, to fn, and
// moves the group past it once fn returns nil.
//
// Fetching what is there, without leaving a pull request waiting at the
// server, means that a reader that stops leaves no event in limbo
// (delivered to nobody until AckWait): the next reader of the group
// starts exactly where this one stopped. One at a time: an event fetched
// but not handed to fn (the reader stopped) would wait for AckWait after
// a restart, even when nacked.
func (t *Telemetry) readOne(ctx context.Context, cons jetstream.Consumer, fn func(*twinhub.Event) error) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		return 0, err
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
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = m.DoubleAck(actx)
		cancel()
		if err != nil {
			stopped = err
		} else if ctx.Err() != nil {
			stopped = ctx.Err()
		}
	}
	if stopped != nil {
		return n, stopped
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return n, err
	}
	return n, nil
}

// readerIdleTimeout is how long the server keeps the consumer of a
// partition reader that no longer asks for events.
const readerIdleTimeout = 30 * time.Second

// readPoll is how long a reader waits before looking for new events when
// it has read them all.
const readPoll = 100 * time.Millisecond

// partition is the stream of partition p, or a 404 naming the range.
func (t *Telemetry) partition(p int) (jetstream.Stream, error) {
	if p < 0 || p >= len(t.streams) {
		return nil, twinhub.Errorf(http.StatusNotFound, "PartitionNotFound", "partition %d does not exist; the partitions are 0 to %d", p, len(t.streams)-1)
	}
	return t.streams[p], nil
}

func (t *Telemetry) PartitionInfo(ctx context.Context, p int) (twinhub.PartitionInfo, error) {
	s, err := t.partition(p)
	if err != nil {
		return twinhub.PartitionInfo{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return twinhub.PartitionInfo{}, err
	}
	st := info.State
	return twinhub.PartitionInfo{Partition: p, FirstSequence: st.FirstSeq, LastSequence: st.LastSeq,
		LastEnqueued: st.LastTime, Empty: st.Msgs == 0, Created: info.Created}, nil
}

// ReadPartition reads one partition with an ordered consumer: nothing
// is kept at the server for the reader, which keeps its own position.
func (t *Telemetry) ReadPartition(ctx context.Context, p int, from twinhub.EventPosition, fn func(*twinhub.Event) error) error {
	s, err := t.partition(p)
	if err != nil {
		return err
	}
	var c jetstream.OrderedConsumerConfig
	switch start := from.Sequence; {
	case from.Latest:
		c.DeliverPolicy = jetstream.DeliverNewPolicy
	case !from.After.IsZero():
		c.DeliverPolicy, c.OptStartTime = jetstream.DeliverByStartTimePolicy, &from.After
	default:
		if !from.Inclusive {
			start++
		}
		c.DeliverPolicy = jetstream.DeliverAllPolicy
		if start > 1 {
			c.DeliverPolicy, c.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
		}
	}
	// A reader that goes leaves no consumer at the server: it is deleted
	// here, and one left by a hub that died goes after a short idle time
	// (ordered consumers otherwise stay for 5 minutes: a client that
	// reconnects in a loop would pile them up to the server's limit).
	c.InactiveThreshold = readerIdleTimeout
	cons, err := s.OrderedConsumer(ctx, c)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.DeleteConsumer(dctx, info.Name)
			cancel()
		}
	}()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		e, err := decodeEvent(m)
		if err != nil {
			t.log.Warn("undecodable telemetry event; skipped", "subject", m.Subject(), "err", err)
			continue
		}
		// The stream's own time is a little after the hub's enqueued
		// time: the start time finds the first candidate, this the
		// first event enqueued after the instant.
		if !from.After.IsZero() && !e.Enqueued.After(from.After) {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

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
	if len(h[HeaderDeviceID]) == 0 {
		if err := parseEvent(m.Data(), e); err != nil {
			return nil, err
		}
		return e, nil
	}
	// Stored before eventFormat1: the properties are headers.
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
	e.AuthGenerationID = get(HeaderAuthGeneration)
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
