package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
)

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
			Properties: []twinhub.Property{{Key: "x:y%", Value: "1\r\n2"}, {Key: "iothub-connection-device-id", Value: "spoof"}}}
		if err := tel.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, tel, twinhub.EventFilter{Group: "g", FromStart: true}, 1)
	if p := got[0].Properties; got[0].Identity.DeviceID != "a" || len(p) != 1 || p[0] != (twinhub.Property{Key: "x:y%", Value: "1  2"}) {
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
