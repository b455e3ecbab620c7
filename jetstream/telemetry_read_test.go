package jetstream

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// readPartition reads n events of partition p from a position.
func readPartition(t *testing.T, tel *Telemetry, p int, from twinhub.EventPosition, n int) []*twinhub.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*twinhub.Event
	err := tel.ReadPartition(ctx, p, from, func(e *twinhub.Event) error {
		got = append(got, e)
		if len(got) == n {
			cancel()
		}
		return nil
	})
	if len(got) != n {
		t.Fatalf("read %d of %d from partition %d at %+v: %v", len(got), n, p, from, err)
	}
	return got
}

// TestReadPartition: each partition numbers its own events from 1, and a
// reader starts where its position says: the oldest, after or at a
// sequence number, after an instant, or with what comes next.
func TestReadPartition(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tel, err := OpenTelemetry(ctx, e.Conn, TelemetryOptions{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Two devices in different partitions.
	var devs [2]string
	for i := 0; devs[0] == "" || devs[1] == ""; i++ {
		id := "dev" + strconv.Itoa(i)
		if p := TelemetryPartition(id, 2); devs[p] == "" {
			devs[p] = id
		}
	}
	send := func(p, i int) {
		ev := &twinhub.Event{Identity: twinhub.DeviceKey(devs[p]), Body: []byte(strconv.Itoa(i)), Enqueued: twinhub.Now()}
		if err := tel.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		send(0, i)
	}
	send(1, 100)
	info, err := tel.PartitionInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.FirstSequence != 1 || info.LastSequence != 5 || info.Empty || info.LastEnqueued.IsZero() {
		t.Errorf("partition 0: %+v", info)
	}
	if info, _ := tel.PartitionInfo(ctx, 1); info.LastSequence != 1 {
		t.Errorf("partition 1 numbers its own events: %+v", info)
	}
	if _, err := tel.PartitionInfo(ctx, 2); twinhub.AsError(err).Status != 404 {
		t.Errorf("partition 2 of 2: %v", err)
	}

	bodies := func(es []*twinhub.Event) (s string) {
		for _, e := range es {
			s += string(e.Body) + ","
		}
		return s
	}
	all := readPartition(t, tel, 0, twinhub.EventPosition{}, 5)
	if got := bodies(all); got != "0,1,2,3,4," || all[2].Sequence != 3 || all[2].Partition != 0 {
		t.Errorf("from the start: %s, third %+v", got, all[2])
	}
	if got := bodies(readPartition(t, tel, 0, twinhub.EventPosition{Sequence: 3}, 2)); got != "3,4," {
		t.Errorf("after 3: %s", got)
	}
	if got := bodies(readPartition(t, tel, 0, twinhub.EventPosition{Sequence: 3, Inclusive: true}, 3)); got != "2,3,4," {
		t.Errorf("from 3: %s", got)
	}
	if got := bodies(readPartition(t, tel, 0, twinhub.EventPosition{After: all[1].Enqueued.Time}, 3)); got != "2,3,4," {
		t.Errorf("after the second's enqueued time: %s", got)
	}
	// The readers that have gone left no consumer behind.
	if info, err := tel.streams[0].Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Errorf("consumers left on partition 0: %+v, %v", info.State, err)
	}
	// The latest: only what is sent after the reader starts.
	got := make(chan string, 1)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	started := make(chan struct{})
	go func() {
		close(started)
		tel.ReadPartition(rctx, 0, twinhub.EventPosition{Latest: true}, func(e *twinhub.Event) error {
			got <- string(e.Body)
			cancel()
			return nil
		})
	}()
	<-started
	// The reader's consumer may start after the first of these: send
	// until it sees one, which must be new.
	for i := 5; ; i++ {
		send(0, i)
		select {
		case b := <-got:
			if n, _ := strconv.Atoi(b); n < 5 {
				t.Errorf("@latest read the old event %s", b)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if rctx.Err() != nil {
			t.Fatal("the @latest reader saw nothing")
		}
	}
}

// TestTelemetryMigration: a data folder with the one stream of all
// partitions has its events moved into a stream a partition, in order
// and with their properties, and its consumer groups go on from where
// they were.
func TestTelemetryMigration(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js, err := jetstream.New(e.Conn)
	if err != nil {
		t.Fatal(err)
	}
	// The layout before: one stream, its partition count in metadata.
	legacy, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: legacyTelemetryStream, Subjects: []string{TelemetrySubjectPrefix + ">"},
		Metadata: map[string]string{partitionsMetadata: "3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		id := "d" + strconv.Itoa(i%4)
		p := TelemetryPartition(id, 3)
		m := &nats.Msg{Subject: TelemetrySubjectPrefix + strconv.Itoa(p) + "." + id, Data: []byte(strconv.Itoa(i)),
			Header: nats.Header{HeaderDeviceID: {id}, "i": {strconv.Itoa(i)}}}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// A group that has read the first 10 (legacy sequence numbers 1-10).
	cons, err := legacy.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "cg-g", Description: "twinhub consumer group g",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{TelemetrySubjectPrefix + ">"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	tel, err := OpenTelemetry(ctx, e.Conn, TelemetryOptions{Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Partitions() != 3 {
		t.Errorf("%d partitions, want the legacy stream's 3", tel.Partitions())
	}
	if _, err := js.Stream(ctx, legacyTelemetryStream); err != jetstream.ErrStreamNotFound {
		t.Errorf("legacy stream after the move: %v", err)
	}
	seen := map[string]bool{}
	for p := range 3 {
		info, err := tel.PartitionInfo(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Empty {
			continue
		}
		last := -1
		for _, ev := range readPartition(t, tel, p, twinhub.EventPosition{}, int(info.LastSequence)) {
			i, _ := strconv.Atoi(string(ev.Body))
			if i <= last || props(ev)["i"] != string(ev.Body) || TelemetryPartition(ev.Identity.DeviceID, 3) != p {
				t.Errorf("partition %d: event %s (%v) after %d", p, ev.Body, ev.Properties, last)
			}
			last = i
			seen[string(ev.Body)] = true
		}
	}
	if len(seen) != n {
		t.Errorf("%d of %d events moved", len(seen), n)
	}
	// The group reads the 20 it had not read, and nothing else.
	rest := readN(t, tel, twinhub.EventFilter{Group: "g"}, n-10)
	for _, ev := range rest {
		if i, _ := strconv.Atoi(string(ev.Body)); i < 10 {
			t.Errorf("group g read %d again", i)
		}
	}
	// A new event lands in its partition after the moved ones.
	if err := tel.Append(ctx, &twinhub.Event{Identity: twinhub.DeviceKey("d0"), Body: []byte("new"), Enqueued: twinhub.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, tel, twinhub.EventFilter{Group: "g"}, 1); string(got[0].Body) != "new" {
		t.Errorf("after the moved events: %s", got[0].Body)
	}
}
