package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Data folders made before the telemetry had a stream a partition hold
// one stream, legacyTelemetryStream, for all partitions. OpenTelemetry
// moves its events into the partitions' streams, in order, and its
// consumer groups with their positions, then deletes it.
//
// The move survives being cut short: the legacy stream's subjects are
// first set aside (the new streams take them over), each copied event
// carries the legacy sequence number it had (migratedHeader), and a move
// that starts again goes on after the highest one copied. Copied events
// are kept for the retention from the move on, not from when they came.
const (
	legacyTelemetryStream = "twinhub-telemetry"
	legacyAsideSubjects   = "twinhub.telemetry-moving.>"
	migratedHeader        = "twinhub-migrated-seq"
	// migrateBatch is how many copies are in flight before the move
	// waits for their acknowledgements.
	migrateBatch = 1000
	// migrateLogEvery is how often the move logs its progress.
	migrateLogEvery = 100_000
)

// legacyPartitions is the partition count the legacy stream was made
// with, or def.
func legacyPartitions(s jetstream.Stream, def int) int {
	if n, err := strconv.Atoi(s.CachedInfo().Config.Metadata[partitionsMetadata]); err == nil && n > 0 {
		return n
	}
	return def
}

// setAsideLegacy moves the legacy stream off the telemetry subjects
// (its events keep theirs).
func setAsideLegacy(ctx context.Context, js jetstream.JetStream, s jetstream.Stream) error {
	c := s.CachedInfo().Config
	if len(c.Subjects) == 1 && c.Subjects[0] == legacyAsideSubjects {
		return nil
	}
	c.Subjects = []string{legacyAsideSubjects}
	if _, err := js.UpdateStream(ctx, c); err != nil {
		return fmt.Errorf("setting stream %s aside to move its events: %w", legacyTelemetryStream, err)
	}
	return nil
}

// legacyGroup is a consumer group of the legacy stream: its durable
// name, filters and the legacy sequence number it had read up to.
type legacyGroup struct {
	name, description string
	filters           []string
	floor             uint64
}

func (t *Telemetry) migrate(ctx context.Context, legacy jetstream.Stream) error {
	info, err := legacy.Info(ctx)
	if err != nil {
		return err
	}
	var groups []legacyGroup
	list := legacy.ListConsumers(ctx)
	for ci := range list.Info() {
		if !strings.HasPrefix(ci.Name, "cg-") {
			continue
		}
		f := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			f = append(f, ci.Config.FilterSubject)
		}
		groups = append(groups, legacyGroup{name: ci.Name, description: ci.Config.Description, filters: f, floor: ci.AckFloor.Stream})
	}
	if err := list.Err(); err != nil {
		return fmt.Errorf("listing the consumer groups of %s: %w", legacyTelemetryStream, err)
	}
	done, err := t.migratedUpTo(ctx)
	if err != nil {
		return err
	}
	st := info.State
	t.log.Info("moving telemetry into a stream a partition", "from", legacyTelemetryStream, "events", st.Msgs,
		"partitions", t.partitions, "groups", len(groups), "resuming after", done)
	if st.Msgs > 0 && done < st.LastSeq {
		if err := t.copyLegacy(ctx, legacy, max(done+1, st.FirstSeq), st.LastSeq); err != nil {
			return fmt.Errorf("moving the events of %s: %w", legacyTelemetryStream, err)
		}
	}
	for _, g := range groups {
		if err := t.migrateGroup(ctx, g); err != nil {
			return fmt.Errorf("moving consumer group %s: %w", g.name, err)
		}
	}
	if err := t.js.DeleteStream(ctx, legacyTelemetryStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	t.log.Info("telemetry moved into a stream a partition", "events", st.Msgs, "groups", len(groups))
	return nil
}

// migratedUpTo is the highest legacy sequence number copied so far.
func (t *Telemetry) migratedUpTo(ctx context.Context) (uint64, error) {
	var done uint64
	for _, s := range t.streams {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		if info.State.Msgs == 0 {
			continue
		}
		m, err := s.GetMsg(ctx, info.State.LastSeq)
		if err != nil {
			return 0, err
		}
		if n, err := strconv.ParseUint(m.Header.Get(migratedHeader), 10, 64); err == nil {
			done = max(done, n)
		}
	}
	return done, nil
}

// copyLegacy copies the legacy events from..to, in order, into the
// partitions' streams.
func (t *Telemetry) copyLegacy(ctx context.Context, legacy jetstream.Stream, from, to uint64) error {
	cons, err := legacy.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	var inFlight []jetstream.PubAckFuture
	wait := func() error {
		for _, f := range inFlight {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		inFlight = inFlight[:0]
		return nil
	}
	copied := 0
	for {
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		h := nats.Header{}
		for k, v := range m.Headers() {
			h[k] = v
		}
		h.Set(migratedHeader, strconv.FormatUint(md.Sequence.Stream, 10))
		f, err := t.js.PublishMsgAsync(&nats.Msg{Subject: m.Subject(), Header: h, Data: m.Data()})
		if err != nil {
			return err
		}
		inFlight = append(inFlight, f)
		copied++
		if len(inFlight) == migrateBatch || md.Sequence.Stream >= to {
			if err := wait(); err != nil {
				return err
			}
		}
		if copied%migrateLogEvery == 0 {
			t.log.Info("moving telemetry", "copied", copied, "at", md.Sequence.Stream, "of", to)
		}
		if md.Sequence.Stream >= to {
			return nil
		}
	}
}

// migrateGroup makes a legacy group's durable consumer in each partition
// it read, starting after the events it had read.
func (t *Telemetry) migrateGroup(ctx context.Context, g legacyGroup) error {
	partitions := map[int]bool{}
	for _, f := range g.filters {
		rest, ok := strings.CutPrefix(f, TelemetrySubjectPrefix)
		p, err := strconv.Atoi(strings.SplitN(rest, ".", 2)[0])
		if !ok || err != nil || p >= t.partitions {
			partitions = nil // a filter of no one partition: all of them
			break
		}
		partitions[p] = true
	}
	for p, s := range t.streams {
		if len(g.filters) > 0 && partitions != nil && !partitions[p] {
			continue
		}
		if _, err := s.Consumer(ctx, g.name); err == nil {
			continue // made by a move cut short
		}
		start, err := t.firstMigratedAfter(ctx, s, g.floor)
		if err != nil {
			return err
		}
		_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:        g.name,
			Description:    g.description,
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    start,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        10 * time.Second,
			FilterSubjects: g.filters,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// firstMigratedAfter finds, by bisection, the first event of a
// partition's stream copied from a legacy sequence number above floor
// (events that came after the move count as above any).
func (t *Telemetry) firstMigratedAfter(ctx context.Context, s jetstream.Stream, floor uint64) (uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq+1
	lo = max(lo, 1)
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := s.GetMsg(ctx, mid)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(m.Header.Get(migratedHeader), 10, 64)
		if err != nil || n > floor {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}
