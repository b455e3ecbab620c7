package jetstream

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinhub/twinhub"
)

// openTestTelemetry opens the telemetry streams, with the given
// partitions (0: the default), on an embedded server in a folder of the
// test's own.
func openTestTelemetry(t *testing.T, partitions int) *Telemetry {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	tel, err := OpenTelemetry(context.Background(), e.Conn, TelemetryOptions{Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

// readN reads n events of a group; the last one still counts as read.
func readN(t *testing.T, tel *Telemetry, f twinhub.EventFilter, n int) []*twinhub.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*twinhub.Event
	err := tel.Read(ctx, f, func(e *twinhub.Event) error {
		got = append(got, e)
		if len(got) == n {
			cancel()
		}
		return nil
	})
	if len(got) != n {
		t.Fatalf("read %d of %d: %v", len(got), n, err)
	}
	return got
}

func TestTelemetrySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e, err := StartEmbedded(EmbeddedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tel, err := OpenTelemetry(ctx, e.Conn, TelemetryOptions{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b+c", "a"} {
		ev := &twinhub.Event{Identity: twinhub.DeviceKey(id), MessageID: id, Body: []byte(id), Enqueued: twinhub.Now(),
			AuthMethod: "sas", AuthGenerationID: "gen-" + id,
			Properties: []twinhub.Property{{Key: "x:y%", Value: "1\r\n2"}, {Key: "iothub-connection-device-id", Value: "spoof"}}}
		if err := tel.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, tel, twinhub.EventFilter{Group: "g", FromStart: true}, 1)
	// Application properties come back as sent, a system property's
	// name among them: they are not the event's system properties.
	want := []twinhub.Property{{Key: "x:y%", Value: "1\r\n2"}, {Key: "iothub-connection-device-id", Value: "spoof"}}
	if got[0].Identity.DeviceID != "a" || !slices.Equal(got[0].Properties, want) ||
		got[0].AuthMethod != "sas" || got[0].AuthGenerationID != "gen-a" {
		t.Errorf("event %+v", got[0])
	}
	if got[0].Partition != TelemetryPartition("a", 3) {
		t.Errorf("partition %d", got[0].Partition)
	}
	e.Close()

	e, err = StartEmbedded(EmbeddedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The stream keeps its partition count whatever the flag says now.
	tel, err = OpenTelemetry(ctx, e.Conn, TelemetryOptions{Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Partitions() != 3 {
		t.Errorf("partitions %d after reopening", tel.Partitions())
	}
	got = readN(t, tel, twinhub.EventFilter{Group: "g"}, 2)
	if string(got[0].Body) != "b+c" || string(got[1].Body) != "a" {
		t.Errorf("resumed with %q, %q", got[0].Body, got[1].Body)
	}
	got = readN(t, tel, twinhub.EventFilter{Group: "only-b", FromStart: true, DeviceID: "b+c"}, 1)
	if got[0].Identity.DeviceID != "b+c" {
		t.Errorf("filtered %+v", got[0])
	}
}

func TestTelemetrySubject(t *testing.T) {
	for _, id := range []string{"a", "dev-1_x", "b+c", "", "ünï", "x.y"} {
		h := fnv.New32a()
		h.Write([]byte(id))
		if got, want := TelemetryPartition(id, 7), int(h.Sum32()%7); got != want {
			t.Errorf("partition of %q: %d, want %d", id, got, want)
		}
	}
	tel := &Telemetry{partitions: 12}
	for _, k := range []twinhub.Key{twinhub.DeviceKey("dev1"), twinhub.DeviceKey("a b"), twinhub.ModuleKey("d", "m.1"), twinhub.DeviceKey("x")} {
		want := TelemetrySubjectPrefix + strconv.Itoa(TelemetryPartition(k.DeviceID, 12)) + "." + twinhub.EncodeKey(k)
		if got := tel.Subject(k); got != want {
			t.Errorf("subject of %v: %q, want %q", k, got, want)
		}
	}
}

func TestPubAckError(t *testing.T) {
	ok := &nats.Msg{Data: []byte(`{"stream":"twinhub-telemetry","seq":12}`)}
	if err := pubAckError(ok); err != nil {
		t.Errorf("success read as %v", err)
	}
	okNamed := &nats.Msg{Data: []byte(`{"stream":"twinhub-telemetry","domain":"error","seq":12}`)}
	if err := pubAckError(okNamed); err != nil {
		t.Errorf("success in domain \"error\" read as %v", err)
	}
	failed := &nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`)}
	var apiErr *jetstream.APIError
	if err := pubAckError(failed); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 {
		t.Errorf("error read as %v", err)
	}
	noStream := &nats.Msg{Header: nats.Header{"Status": []string{"503"}}}
	if err := pubAckError(noStream); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("no responders read as %v", err)
	}
}

// TestAppendAsync: an asynchronous append is stored, in order with the
// others, and reported done only then; without a stream it fails.
func TestAppendAsync(t *testing.T) {
	ctx := context.Background()
	tel := openTestTelemetry(t, 0)
	const n = 200
	results := make(chan error, n)
	for i := range n {
		ev := &twinhub.Event{Identity: twinhub.DeviceKey("d" + strconv.Itoa(i%5)), Body: []byte(strconv.Itoa(i)), Enqueued: twinhub.Now(),
			Properties: []twinhub.Property{{Key: "i", Value: strconv.Itoa(i)}}}
		tel.AppendAsync(ev, 10*time.Second, func(err error) { results <- err })
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, tel, twinhub.EventFilter{Group: "g", FromStart: true, DeviceID: "d3"}, n/5)
	for j, ev := range got {
		if want := strconv.Itoa(j*5 + 3); string(ev.Body) != want || props(ev)["i"] != want {
			t.Fatalf("event %d of d3: %q %v, want %s", j, ev.Body, ev.Properties, want)
		}
	}
	for p := range tel.partitions {
		if err := tel.js.DeleteStream(ctx, TelemetryStreamName(p)); err != nil {
			t.Fatal(err)
		}
	}
	tel.AppendAsync(&twinhub.Event{Identity: twinhub.DeviceKey("d"), Body: []byte("x")}, time.Second, func(err error) { results <- err })
	if err := <-results; err == nil {
		t.Error("append without a stream succeeded")
	} else {
		t.Log(err)
	}
}

func props(e *twinhub.Event) map[string]string {
	m := map[string]string{}
	for _, p := range e.Properties {
		m[p.Key] = p.Value
	}
	return m
}

// BenchmarkTelemetryAppend stores events of 256 bytes with three
// application properties from 64 goroutines, waiting for each (Append:
// a JetStream request; AppendAsync: the answer on the shared
// subscription). One op is one stored event.
func BenchmarkTelemetryAppend(b *testing.B) {
	ctx := context.Background()
	e, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	tel, err := OpenTelemetry(ctx, e.Conn, TelemetryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 256)
	event := func(i int) *twinhub.Event {
		return &twinhub.Event{
			Identity: twinhub.DeviceKey("bench-" + strconv.Itoa(i%64)), AuthMethod: "sas", MessageID: "m", ContentType: "application/json",
			Properties: []twinhub.Property{{Key: "site", Value: "a"}, {Key: "temperatureAlert", Value: "true"}, {Key: "n", Value: "1"}},
			Body:       body, Enqueued: twinhub.Now(),
		}
	}
	b.Run("sync", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if err := tel.Append(ctx, event(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("async", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			done := make(chan error, 1)
			for i := 0; pb.Next(); i++ {
				tel.AppendAsync(event(i), 10*time.Second, func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		ev := event(1)
		buf := eventBufs.Get().(*[]byte)
		for b.Loop() {
			tel.message(ev, buf)
		}
	})
}

// FuzzPubAckError: no answer of the stream makes pubAckError panic.
func FuzzPubAckError(f *testing.F) {
	f.Add([]byte(`{"stream":"twinhub-telemetry","seq":1}`))
	f.Add([]byte(`{"error":{"code":503,"err_code":10077,"description":"x"}}`))
	f.Add([]byte(`{"error":`))
	f.Fuzz(func(t *testing.T, answer []byte) {
		pubAckError(&nats.Msg{Data: answer})
	})
}

// TestTelemetryResentOnce: an event sent again with the same message id,
// transmission (MQTT packet id) and body is stored once, as a device
// resends one whose acknowledgement was lost with its node; anything
// else that differs, or no message id, is stored again. The duplicate
// detection header is not an application property when read.
func TestTelemetryResentOnce(t *testing.T) {
	ctx := context.Background()
	tel := openTestTelemetry(t, 1)
	send := func(mid, retransmit, body string) {
		t.Helper()
		ev := &twinhub.Event{Identity: twinhub.DeviceKey("d"), MessageID: mid, Retransmit: retransmit, Body: []byte(body), Enqueued: twinhub.Now()}
		if err := tel.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	send("m1", "7", "a")
	send("m1", "7", "a") // resent: dropped
	send("m1", "8", "a") // another transmission
	send("m1", "7", "b") // another body
	send("m2", "7", "a") // another message id
	send("", "7", "a")   // no message id: never compared
	send("", "7", "a")
	got := readN(t, tel, twinhub.EventFilter{Group: "g", FromStart: true}, 6)
	var seen []string
	for _, ev := range got {
		seen = append(seen, ev.MessageID+"/"+string(ev.Body))
		if len(ev.Properties) != 0 {
			t.Errorf("event %s has properties %+v", ev.MessageID, ev.Properties)
		}
	}
	if want := []string{"m1/a", "m1/a", "m1/b", "m2/a", "/a", "/a"}; !slices.Equal(seen, want) {
		t.Errorf("stored %v, want %v", seen, want)
	}
	info, err := tel.streams[0].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 6 {
		t.Errorf("the stream holds %d events, want 6", info.State.Msgs)
	}
}

// TestSweepAnswersLateAppends: an append whose answer does not come by
// its deadline is told so by the sweep.
func TestSweepAnswersLateAppends(t *testing.T) {
	a := &acker{prefix: "_INBOX.t.", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
	done := make(chan error, 1)
	a.add(pendingAck{done: func(err error) { done <- err }, deadline: time.Now()})
	select {
	case err := <-done:
		if !errors.Is(err, errNoAnswer) {
			t.Errorf("a late append answered with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sweep did not answer a late append")
	}
}
