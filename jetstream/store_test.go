package jetstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
)

func openTestStore(t testing.TB) *Store {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	s, err := OpenStore(context.Background(), e.Conn, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func deviceRecord(id string) *twinhub.Record {
	return &twinhub.Record{Device: &twinhub.Device{DeviceID: id, Status: "enabled"}, IdentityVersion: 1, Twin: twinhub.NewTwin(twinhub.Now())}
}

func TestStoreCompareAndSet(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	k := twinhub.DeviceKey("dev#1:weird.id")
	if _, _, err := s.Get(ctx, k); !errors.Is(err, twinhub.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	rev, err := s.Create(ctx, k, deviceRecord(k.DeviceID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, k, deviceRecord(k.DeviceID)); !errors.Is(err, twinhub.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	rec, got, err := s.Get(ctx, k)
	if err != nil || got != rev || rec.Device.DeviceID != k.DeviceID {
		t.Fatalf("Get = %v rev %d err %v, want rev %d", rec, got, err, rev)
	}
	rev2, err := s.Update(ctx, k, rec, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, k, rec, rev); !errors.Is(err, twinhub.ErrConflict) {
		t.Fatalf("Update with a stale revision: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, k, rev); !errors.Is(err, twinhub.ErrConflict) {
		t.Fatalf("Delete with a stale revision: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, k, rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, k); !errors.Is(err, twinhub.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	rev3, err := s.Create(ctx, k, deviceRecord(k.DeviceID))
	if err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if _, got, err := s.Get(ctx, k); err != nil || got != rev3 || rev3 <= rev2 {
		t.Fatalf("Get after Create over a deletion: rev %d %v, want %d (after %d)", got, err, rev3, rev2)
	}
	if _, err := s.Create(ctx, k, deviceRecord(k.DeviceID)); !errors.Is(err, twinhub.ErrExists) {
		t.Fatalf("Create over a record created after a deletion: %v, want ErrExists", err)
	}
}

func TestStoreWatchSeesEveryKeyAndLastRevision(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openTestStore(t)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := s.Create(ctx, twinhub.DeviceKey(id), deviceRecord(id)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[twinhub.Key]bool{}
	var maxRev uint64
	ready := make(chan struct{})
	go s.Watch(ctx, func(k twinhub.Key, r *twinhub.Record, rev uint64) {
		mu.Lock()
		defer mu.Unlock()
		seen[k] = r != nil
		maxRev = max(maxRev, rev)
	}, func() { close(ready) })
	<-ready
	if err := s.Delete(ctx, twinhub.DeviceKey("b"), 0); err != nil {
		t.Fatal(err)
	}
	last, err := s.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := maxRev >= last
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxRev != last {
		t.Fatalf("watch reached revision %d, store is at %d", maxRev, last)
	}
	want := map[twinhub.Key]bool{twinhub.DeviceKey("a"): true, twinhub.DeviceKey("b"): false, twinhub.DeviceKey("c"): true}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("watch: %s present=%v, want %v", k, seen[k], v)
		}
	}
}

func BenchmarkStoreGetUpdate(b *testing.B) {
	ctx := context.Background()
	s := openTestStore(b)
	k := twinhub.DeviceKey("bench")
	s.Create(ctx, k, deviceRecord("bench"))
	b.ReportAllocs()
	for b.Loop() {
		rec, rev, err := s.Get(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Update(ctx, k, rec, rev); err != nil {
			b.Fatal(err)
		}
	}
}
