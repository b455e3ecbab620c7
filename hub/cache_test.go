package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
)

// memStore is a Store in memory that keeps records as JSON, as the
// jetstream store does, so that no record is shared with its writer. It
// counts reads and decodes, and tests write to it directly to play
// another node.
type memStore struct {
	mu      sync.Mutex
	rev     uint64
	data    map[twinhub.Key][]byte
	revs    map[twinhub.Key]uint64
	gets    atomic.Int64
	decodes atomic.Int64
	// hold, when set, runs at the start of each Update: a test holds a
	// write up with it, as a slow store would.
	hold atomic.Pointer[func(twinhub.Key)]
}

func newMemStore() *memStore {
	return &memStore{data: map[twinhub.Key][]byte{}, revs: map[twinhub.Key]uint64{}}
}

func (s *memStore) Get(ctx context.Context, k twinhub.Key) (*twinhub.Record, uint64, error) {
	return s.GetUnlessRevision(ctx, k, 0)
}

func (s *memStore) GetUnlessRevision(_ context.Context, k twinhub.Key, known uint64) (*twinhub.Record, uint64, error) {
	s.gets.Add(1)
	s.mu.Lock()
	data, ok := s.data[k]
	rev := s.revs[k]
	s.mu.Unlock()
	if !ok {
		return nil, 0, twinhub.ErrNotFound
	}
	if known != 0 && known == rev {
		return nil, rev, nil
	}
	s.decodes.Add(1)
	r, err := recordjson.Decode(data)
	return r, rev, err
}

func (s *memStore) Create(_ context.Context, k twinhub.Key, r *twinhub.Record) (uint64, error) {
	data, err := recordjson.Encode(r)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[k]; ok {
		return 0, twinhub.ErrExists
	}
	s.rev++
	s.data[k], s.revs[k] = data, s.rev
	return s.rev, nil
}

func (s *memStore) Update(_ context.Context, k twinhub.Key, r *twinhub.Record, rev uint64) (uint64, error) {
	if hold := s.hold.Load(); hold != nil {
		(*hold)(k)
	}
	data, err := recordjson.Encode(r)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.revs[k]; !ok || cur != rev {
		return 0, twinhub.ErrConflict
	}
	s.rev++
	s.data[k], s.revs[k] = data, s.rev
	return s.rev, nil
}

func (s *memStore) Delete(_ context.Context, k twinhub.Key, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.revs[k]
	if !ok {
		return twinhub.ErrNotFound
	}
	if rev != 0 && cur != rev {
		return twinhub.ErrConflict
	}
	s.rev++
	delete(s.data, k)
	delete(s.revs, k)
	return nil
}

// Watch shows the index nothing: these tests do not query.
func (s *memStore) Watch(ctx context.Context, _ func(twinhub.Key, *twinhub.Record, uint64), ready func()) error {
	ready()
	<-ctx.Done()
	return nil
}

func (s *memStore) LastRevision(context.Context) (uint64, error) { return 0, nil }

// otherWriter changes k in the store behind the hub's back, as another
// node would.
func (s *memStore) otherWriter(t *testing.T, k twinhub.Key, change func(*twinhub.Record)) {
	t.Helper()
	r, rev, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	change(r)
	if _, err := s.Update(context.Background(), k, r, rev); err != nil {
		t.Fatal(err)
	}
}

func newCacheTestHub(t testing.TB, cacheSize int) (*Hub, *memStore) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := newMemStore()
	h, err := New(ctx, Config{Host: "hub.example", Store: s, RecordCacheBytes: cacheSize, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h, s
}

func reportedOf(t *testing.T, h *Hub, k twinhub.Key) map[string]any {
	t.Helper()
	data, err := h.TwinJSON(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc["properties"].(map[string]any)["reported"].(map[string]any)
}

func TestCacheServesWritesAndReadsWithoutDecoding(t *testing.T) {
	ctx := context.Background()
	h, s := newCacheTestHub(t, 0)
	k := twinhub.DeviceKey("d1")
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	gets := s.gets.Load()
	for i := range 10 {
		if _, err := h.UpdateReported(ctx, k, map[string]any{"i": float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.gets.Load() - gets; n != 0 {
		t.Errorf("10 reported updates after the create read the store %d times, want 0", n)
	}
	decodes := s.decodes.Load()
	for range 5 {
		if got := reportedOf(t, h, k)["i"]; got != 9.0 {
			t.Fatalf("reported i = %v, want 9", got)
		}
	}
	if n := s.decodes.Load() - decodes; n != 0 {
		t.Errorf("5 reads of an unchanged twin decoded it %d times, want 0", n)
	}
}

// TestCacheStaleEntry: another node's write makes this node's entry
// stale; the next write must build on the other write, reads must show
// it, and an etag the other write made must match.
func TestCacheStaleEntry(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{0, -1} {
		t.Run(fmt.Sprintf("cache=%d", size), func(t *testing.T) {
			h, s := newCacheTestHub(t, size)
			k := twinhub.DeviceKey("d1")
			if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.UpdateReported(ctx, k, map[string]any{"mine": 1.0}); err != nil {
				t.Fatal(err)
			}
			s.otherWriter(t, k, func(r *twinhub.Record) {
				if err := r.Twin.UpdateReported(map[string]any{"theirs": 2.0}, twinhub.Now()); err != nil {
					t.Fatal(err)
				}
				r.Twin.Version++
			})
			// A read sees the other write at once.
			if rep := reportedOf(t, h, k); rep["theirs"] != 2.0 || rep["mine"] != 1.0 {
				t.Fatalf("read after another node's write: %v", rep)
			}
			// A write builds on it, even from a stale entry.
			s.otherWriter(t, k, func(r *twinhub.Record) {
				r.Twin.UpdateReported(map[string]any{"theirs": 3.0}, twinhub.Now())
				r.Twin.Version++
			})
			v, err := h.UpdateReported(ctx, k, map[string]any{"mine": 4.0})
			if err != nil {
				t.Fatal(err)
			}
			if v != 5 {
				t.Errorf("reported $version = %d, want 5", v)
			}
			if rep := reportedOf(t, h, k); rep["theirs"] != 3.0 || rep["mine"] != 4.0 {
				t.Fatalf("after a write on a stale entry: %v", rep)
			}
			// An etag made by the other node matches, though the cached
			// record has an older one.
			s.otherWriter(t, k, func(r *twinhub.Record) { r.Twin.Version += 10 })
			current, _, _ := s.Get(ctx, k)
			if _, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"a": 1.0}}, twinhub.TwinETag(current.Twin.Version)); err != nil {
				t.Fatalf("If-Match of the current etag, stale entry: %v", err)
			}
			if _, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"a": 2.0}}, twinhub.TwinETag(current.Twin.Version)); twinhub.AsError(err).Status != 412 {
				t.Fatalf("If-Match of an old etag: %v, want 412", err)
			}
			// An identity change by the other node: the etag check of a
			// device update and the SAS check use the new keys.
			s.otherWriter(t, k, func(r *twinhub.Record) {
				r.Device.Status = twinhub.StatusDisabled
				r.IdentityVersion++
			})
			if d, err := h.GetDevice(ctx, "d1"); err != nil || d.Status != twinhub.StatusDisabled {
				t.Fatalf("GetDevice after another node disabled it: %+v, %v", d, err)
			}
			// An update that keeps the keys and status keeps the current
			// ones, not those of the stale entry it first tried.
			newKey := "bmV3IGtleSBvZiBzaXh0ZWVuIGJ5dGVzIG9yIG1vcmU="
			s.otherWriter(t, k, func(r *twinhub.Record) {
				r.Device.Authentication.SymmetricKey.PrimaryKey = newKey
				r.Device.Status = twinhub.StatusEnabled
				r.IdentityVersion++
			})
			d, err := h.UpdateDevice(ctx, twinhub.Device{DeviceID: "d1", Capabilities: twinhub.Capabilities{IoTEdge: true}}, "*")
			if err != nil {
				t.Fatal(err)
			}
			if d.Authentication.SymmetricKey.PrimaryKey != newKey || d.Status != twinhub.StatusEnabled || !d.Capabilities.IoTEdge {
				t.Errorf("update on a stale entry: keys %+v, status %s", d.Authentication.SymmetricKey, d.Status)
			}
		})
	}
}

func TestCacheDeleteDropsEntry(t *testing.T) {
	ctx := context.Background()
	h, s := newCacheTestHub(t, 0)
	k := twinhub.DeviceKey("d1")
	first, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpdateReported(ctx, k, map[string]any{"old": 1.0}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: "d1", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	if h.cache.get(k) == nil || h.cache.get(twinhub.ModuleKey("d1", "m")) == nil {
		t.Fatal("written records are not cached")
	}
	// (memStore keeps no index, so DeleteDevice would not find the module.)
	if err := h.DeleteModule(ctx, "d1", "m", "*"); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteDevice(ctx, "d1", "*"); err != nil {
		t.Fatal(err)
	}
	if h.cache.get(k) != nil || h.cache.get(twinhub.ModuleKey("d1", "m")) != nil {
		t.Error("the deleted device's or module's entry is still cached")
	}
	if _, err := h.UpdateReported(ctx, k, map[string]any{"x": 1.0}); twinhub.AsError(err).Status != 404 {
		t.Errorf("update of a deleted device: %v, want 404", err)
	}
	second, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if second.GenerationID == first.GenerationID {
		t.Fatal("same generation id")
	}
	if rep := reportedOf(t, h, k); rep["old"] != nil {
		t.Errorf("the new device shows the deleted one's reported properties: %v", rep)
	}

	// Deleted by another node: reads say 404 and forget it; writes too.
	if _, err := h.UpdateReported(ctx, k, map[string]any{"x": 1.0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, k, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpdateReported(ctx, k, map[string]any{"x": 2.0}); twinhub.AsError(err).Status != 404 {
		t.Errorf("update of a device another node deleted: %v, want 404", err)
	}
	if h.cache.get(k) != nil {
		t.Error("a device another node deleted is still cached after a write failed")
	}
	h.cache.put(k, &twinhub.Record{Device: second, Twin: twinhub.NewTwin(twinhub.Now())}, 1)
	if _, err := h.TwinJSON(ctx, k); twinhub.AsError(err).Status != 404 {
		t.Errorf("read of a device another node deleted: %v, want 404", err)
	}
	if h.cache.get(k) != nil {
		t.Error("a device another node deleted is still cached after a read")
	}
}

func TestCacheBound(t *testing.T) {
	const budget = 1 << 20
	c := newRecordCache(budget)
	r := rand.New(rand.NewPCG(4, 4))
	for i := range 5000 {
		k := twinhub.DeviceKey(fmt.Sprint(i))
		rec := recordtest.RandomRecord(r, k)
		if i%100 == 0 { // a big twin
			rec.Twin.Tags = map[string]any{"big": string(make([]byte, 8000))}
		}
		e := c.put(k, rec, uint64(i+1))
		if e.size < approxRecordSize(rec) || e.size < 2048 {
			t.Fatalf("entry %d: size %d", i, e.size)
		}
		if c.get(k) == nil {
			t.Fatalf("entry %d is not there right after put", i)
		}
		if i%7 == 0 {
			c.drop(twinhub.DeviceKey(fmt.Sprint(i/2)), 0)
		}
		if i%11 == 0 { // a newer revision of a key
			c.put(twinhub.DeviceKey(fmt.Sprint(i/3)), rec, uint64(10_000+i))
		}
	}
	entries, bytes := c.stats()
	sum := 0
	for i := range c.shards {
		for _, e := range c.shards[i].m {
			sum += e.size
		}
	}
	if bytes != sum || bytes > budget || bytes < budget/2 {
		t.Errorf("%d entries of %d bytes (summed: %d) in a cache of %d bytes", entries, bytes, sum, budget)
	}
	huge := &twinhub.Record{Device: &twinhub.Device{DeviceID: "x"}, Twin: twinhub.Twin{Tags: map[string]any{"x": string(make([]byte, budget))}}}
	c.put(twinhub.DeviceKey("huge"), huge, 1)
	if c.get(twinhub.DeviceKey("huge")) != nil {
		t.Error("a record larger than a shard was cached")
	}
	off := newRecordCache(-1)
	off.put(twinhub.DeviceKey("a"), huge, 1)
	if n, _ := off.stats(); off.get(twinhub.DeviceKey("a")) != nil || n != 0 {
		t.Error("a disabled cache keeps entries")
	}
}

func TestCachePutKeepsNewest(t *testing.T) {
	c := newRecordCache(1 << 20)
	k := twinhub.DeviceKey("a")
	newer, older := &twinhub.Record{IdentityVersion: 2}, &twinhub.Record{IdentityVersion: 1}
	c.put(k, newer, 7)
	if e := c.put(k, older, 5); e.rec != older || e.rev != 5 {
		t.Error("put does not return the entry it was given")
	}
	if e := c.get(k); e.rec != newer {
		t.Error("an older read replaced a newer entry")
	}
	c.drop(k, 5)
	if c.get(k) == nil {
		t.Error("drop of an older revision dropped a newer entry")
	}
	c.drop(k, 7)
	if c.get(k) != nil {
		t.Error("drop did not drop")
	}
}

// TestCachedEntriesNeverChange: every kind of write, refused or not,
// leaves the entries cached before it as they were.
func TestCachedEntriesNeverChange(t *testing.T) {
	ctx := context.Background()
	h, _ := newCacheTestHub(t, 0)
	k := twinhub.DeviceKey("d1")
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"t": map[string]any{"u": 1.0}}, Desired: map[string]any{"d": map[string]any{"e": 1.0}}}, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpdateReported(ctx, k, map[string]any{"r": map[string]any{"s": 1.0}}); err != nil {
		t.Fatal(err)
	}
	type snap struct {
		e    *cachedRecord
		json string
	}
	var snaps []snap
	take := func() {
		e, err := h.read(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(e.rec)
		snaps = append(snaps, snap{e, string(data)})
	}
	big := map[string]any{"big": string(make([]byte, 4000))}
	for _, write := range []func() error{
		func() error {
			_, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"t": map[string]any{"u": 2.0, "v": nil}}, Desired: map[string]any{"d": map[string]any{"e": nil}}}, "*")
			return err
		},
		func() error {
			_, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{}, Desired: map[string]any{"x": 1.0}, Replace: true}, "*")
			return err
		},
		func() error {
			_, err := h.UpdateReported(ctx, k, map[string]any{"r": map[string]any{"s": nil, "t": 2.0}})
			return err
		},
		func() error { return h.SetConnectionState(ctx, k, true) },
		func() error {
			_, err := h.UpdateDevice(ctx, twinhub.Device{DeviceID: "d1", Status: twinhub.StatusDisabled}, "*")
			return err
		},
		func() error {
			_, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: map[string]any{"a": 1.0}}, "nope")
			return err
		},
		func() error {
			for i := range 20 {
				if _, err := h.UpdateReported(ctx, k, map[string]any{fmt.Sprint("k", i): big}); err != nil {
					return err
				}
			}
			return nil
		},
	} {
		take()
		write()
	}
	take()
	for i, s := range snaps {
		data, _ := json.Marshal(s.e.rec)
		if string(data) != s.json {
			t.Errorf("entry %d changed after it was cached:\nwas %s\nnow %s", i, s.json, data)
		}
	}
}

// TestConnectionStates: noted states are written in order, the last one
// winning; reads on the node wait for them; Flush waits for all.
func TestConnectionStates(t *testing.T) {
	ctx := context.Background()
	h, _ := newCacheTestHub(t, 0)
	var keys []twinhub.Key
	for i := range 3 * connStateWriters { // more than there are writers
		id := fmt.Sprint("d", i)
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, twinhub.DeviceKey(id))
	}
	state := func(k twinhub.Key) string {
		d, err := h.GetDevice(ctx, k.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		return d.ConnectionState
	}
	for _, k := range keys {
		h.NoteConnectionState(k, true)
		if s := state(k); s != twinhub.StateConnected {
			t.Fatalf("%s read %s right after its connection was noted", k, s)
		}
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			for i := range 30 {
				h.NoteConnectionState(k, i%2 == 0)
			}
			if err := h.SetConnectionState(ctx, k, false); err != nil {
				t.Error(err)
			}
			h.NoteConnectionState(k, true)
		})
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.FlushConnectionStates(fctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		r, _, err := h.store.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if r.Device.ConnectionState != twinhub.StateConnected {
			t.Errorf("%s stored %s, the last state noted was Connected", k, r.Device.ConnectionState)
		}
	}
	if err := h.SetConnectionState(ctx, twinhub.DeviceKey("nobody"), true); twinhub.AsError(err).Status != 404 {
		t.Errorf("state of an unknown device: %v, want 404", err)
	}
	// The writers wind down once their last write is done, and no window
	// stays open.
	idle := func() bool {
		h.states.mu.Lock()
		defer h.states.mu.Unlock()
		return len(h.states.pending)+len(h.states.active)+len(h.states.queue)+len(h.states.batch)+h.states.writers == 0 && h.states.n.Load() == 0
	}
	for deadline := time.Now().Add(10 * time.Second); !idle(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connection-state writers left work behind: %+v", &h.states)
		}
	}
}

// TestConnectionStateBehindASlowWrite: a connection-state write that the
// store holds up does not hold up the writes of other identities that
// come in later windows.
func TestConnectionStateBehindASlowWrite(t *testing.T) {
	ctx := context.Background()
	h, s := newCacheTestHub(t, 0)
	for _, id := range []string{"slow", "other"} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	slow := twinhub.DeviceKey("slow")
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(k twinhub.Key) {
		if k == slow {
			once.Do(func() { close(held) })
			<-release
		}
	}
	s.hold.Store(&hold)
	defer close(release)
	h.NoteConnectionState(slow, true)
	<-held // its writer is in the store
	h.NoteConnectionState(twinhub.DeviceKey("other"), true)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := h.GetDevice(rctx, "other") // waits for its own write
	if err != nil {
		t.Fatalf("reading a device whose state was noted behind a held write: %v", err)
	}
	if d.ConnectionState != twinhub.StateConnected {
		t.Errorf("state %s, want Connected", d.ConnectionState)
	}
}

// TestConnectionStatesGiveBackRoom: after more identities than
// connStatesKeptRoom changed state at once, the tables are made anew once
// every write is done (a map keeps the room of its largest size), and
// later changes are written as before.
func TestConnectionStatesGiveBackRoom(t *testing.T) {
	ctx := context.Background()
	h, _ := newCacheTestHub(t, 0)
	var keys []twinhub.Key
	for i := range connStatesKeptRoom + 1 {
		id := fmt.Sprintf("d%d", i)
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, twinhub.DeviceKey(id))
	}
	s := &h.states
	s.mu.Lock()
	stormPending, stormActive := reflect.ValueOf(s.pending).Pointer(), reflect.ValueOf(s.active).Pointer()
	s.mu.Unlock()
	for _, k := range keys {
		h.NoteConnectionState(k, true)
	}
	for _, k := range keys {
		if err := s.settle(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// The last writer counts after its last write is settled: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		writers, peak := s.writers, s.peak
		samePending, sameActive := reflect.ValueOf(s.pending).Pointer() == stormPending, reflect.ValueOf(s.active).Pointer() == stormActive
		queueRoom, batchRoom := cap(s.queue), cap(s.batch)
		s.mu.Unlock()
		if writers == 0 {
			if peak != 0 || samePending || sameActive || queueRoom != 0 || batchRoom != 0 {
				t.Fatalf("after %d identities' writes, the tables kept their room (peak %d, same pending map %v, same active map %v, room of queue %d, of batch %d)",
					len(keys), peak, samePending, sameActive, queueRoom, batchRoom)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection-state writers still running", writers)
		}
		time.Sleep(time.Millisecond)
	}
	h.NoteConnectionState(keys[0], false)
	d, err := h.GetDevice(ctx, "d0")
	if err != nil {
		t.Fatal(err)
	}
	if d.ConnectionState != twinhub.StateDisconnected {
		t.Errorf("state %s after the tables were made anew, want Disconnected", d.ConnectionState)
	}
}

// BenchmarkModify is the hub's own CPU per reported update on a store in
// memory, which costs no round trip: with the cache a clone of the cached
// record replaces the decoding of the stored one. The round trip the cache
// saves shows in BenchmarkUpdateReported (hub_test.go).
func BenchmarkModify(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{0, -1} {
		b.Run(fmt.Sprintf("cache=%d", size), func(b *testing.B) {
			h, _ := newCacheTestHub(b, size)
			k := twinhub.DeviceKey("d1")
			if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d1"}); err != nil {
				b.Fatal(err)
			}
			for i := range 20 {
				h.UpdateReported(ctx, k, map[string]any{fmt.Sprint("p", i): map[string]any{"v": float64(i), "s": "some text"}})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := h.UpdateReported(ctx, k, map[string]any{"p1": float64(i)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenderTwin renders a new entry's twin for GET and PATCH
// answers, and its device twin for MQTT GETs, as every write's entry is
// rendered once.
func BenchmarkRenderTwin(b *testing.B) {
	recs := make([]*twinhub.Record, 64)
	r := rand.New(rand.NewPCG(5, 5))
	for i := range recs {
		recs[i] = recordtest.RandomRecord(r, twinhub.DeviceKey(fmt.Sprint("d", i)))
		recs[i].SetETags()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := &cachedRecord{rec: recs[i%len(recs)]}
		i++
		if _, err := e.twin(); err != nil {
			b.Fatal(err)
		}
		if _, err := e.deviceTwin(); err != nil {
			b.Fatal(err)
		}
	}
}
