package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/servetest"
	"github.com/twinhub/twinhub/jetstream"
)

// snapshotNode starts a hub on nc's store that keeps its index snapshot
// at path ("" : none), and returns it with its log and a stop.
func snapshotNode(t *testing.T, nc *jetstream.Embedded, path string) (*hub.Hub, *servetest.Output, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store, err := jetstream.OpenStore(ctx, nc.Conn, jetstream.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &servetest.Output{}
	h, err := hub.New(ctx, hub.Config{Host: testHost, Store: store, SoleWriter: true, IndexSnapshot: path,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h, logs, cancel
}

// everything is what the hub's index answers for every device and module
// twin, as the REST API writes it.
func everything(t *testing.T, h *hub.Hub) string {
	t.Helper()
	var out []string
	for _, src := range []string{"SELECT * FROM devices", "SELECT * FROM devices.modules", "SELECT COUNT() AS n FROM devices WHERE tags.round = 2"} {
		token := ""
		for {
			page, items, err := h.QueryJSON(context.Background(), src, 100, token)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(items))
			if token = page.Continuation; token == "" {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestIndexSnapshot: a hub starts from its index snapshot and the store's
// changes since (updates, deletions, creations made by another hub while
// it was down), and answers as a hub that read the whole store; a damaged
// snapshot, or one of another store, is left aside and the store read.
func TestIndexSnapshot(t *testing.T) {
	ctx := context.Background()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	path := filepath.Join(t.TempDir(), "index.snapshot")

	first, logs, stop := snapshotNode(t, e, path)
	for i := range 40 {
		id := fmt.Sprintf("d%02d", i)
		u := &twinhub.TwinUpdate{Tags: map[string]any{"round": 1.0, "n": float64(i)}}
		if _, err := first.CreateDeviceWithTwin(ctx, twinhub.Device{DeviceID: id}, u); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if _, err := first.CreateModule(ctx, twinhub.Module{DeviceID: id, ModuleID: "m"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.SaveIndex(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "index snapshot written") {
		t.Fatalf("no snapshot written:\n%s", logs)
	}
	stop()

	// While the first hub is down, another (without a snapshot) changes
	// the store.
	other, _, stopOther := snapshotNode(t, e, "")
	for i := range 10 {
		k := twinhub.DeviceKey(fmt.Sprintf("d%02d", i))
		if _, err := other.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"round": 2.0}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.DeleteDevice(ctx, "d12", "*"); err != nil { // and its module
		t.Fatal(err)
	}
	if _, err := other.CreateDevice(ctx, twinhub.Device{DeviceID: "new"}); err != nil {
		t.Fatal(err)
	}
	want := everything(t, other)
	stopOther()

	again, logs, _ := snapshotNode(t, e, path)
	if !strings.Contains(logs.String(), "index snapshot loaded") || strings.Contains(logs.String(), `"changes since"=0 `) {
		t.Fatalf("the snapshot was not loaded, or the store's changes since were not there to read:\n%s", logs)
	}
	if got := everything(t, again); got != want {
		t.Errorf("from the snapshot the index answers\n%.3000s\nfrom the store\n%.3000s", got, want)
	}
	if !strings.Contains(want, `"n":10`) || !strings.Contains(want, `"deviceId":"new"`) || strings.Contains(want, `"deviceId":"d12"`) {
		t.Fatalf("the reference answers are not the changed fleet:\n%.2000s", want)
	}

	// A damaged snapshot is left aside.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged, logs, _ := snapshotNode(t, e, path)
	if !strings.Contains(logs.String(), "index snapshot not used") {
		t.Errorf("a damaged snapshot was not refused:\n%s", logs)
	}
	if got := everything(t, damaged); got != want {
		t.Errorf("after a damaged snapshot the index answers\n%.3000s\nwant\n%.3000s", got, want)
	}

	// A snapshot of another store (another life of the bucket) too.
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e2, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e2.Close)
	elsewhere, logs, _ := snapshotNode(t, e2, path)
	if !strings.Contains(logs.String(), "of another store") {
		t.Errorf("a snapshot of another store was not refused:\n%s", logs)
	}
	if got := everything(t, elsewhere); strings.Contains(got, `"deviceId"`) {
		t.Errorf("a new store's index has twins: %.500s", got)
	}
}
