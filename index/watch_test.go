package index

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
)

// sameFlat reports how two flatTwins of one record differ, if they do:
// field by field, with stamps by value.
func sameFlat(d *pathDict, a, b *flatTwin) error {
	if len(a.fields) != len(b.fields) {
		return fmt.Errorf("%d fields, want %d", len(a.fields), len(b.fields))
	}
	stampAt := func(t *flatTwin, i uint16) any {
		if i == noStamp {
			return "none"
		}
		return t.stamps[i]
	}
	for i := range a.fields {
		fa, fb := a.fields[i], b.fields[i]
		if fa.path != fb.path || fa.kind != fb.kind || stampAt(a, fa.stamp) != stampAt(b, fb.stamp) {
			return fmt.Errorf("field %d (%s): %+v, want %+v", i, d.name(fb.path), fa, fb)
		}
		if va, vb := a.json(d, i), b.json(d, i); !reflect.DeepEqual(va, vb) {
			return fmt.Errorf("field %d (%s): %v, want %v", i, d.name(fb.path), va, vb)
		}
	}
	if stampAt(a, a.desiredStamp) != stampAt(b, b.desiredStamp) || stampAt(a, a.reportedStamp) != stampAt(b, b.reportedStamp) {
		return fmt.Errorf("section stamps differ")
	}
	ca, cb := *a, *b
	ca.fields, cb.fields, ca.stamps, cb.stamps, ca.data, cb.data, ca.refs, cb.refs = nil, nil, nil, nil, "", "", nil, nil
	ca.desiredStamp, cb.desiredStamp, ca.reportedStamp, cb.reportedStamp = 0, 0, 0, 0
	ca.exact, cb.exact = false, false // said by flattenJSON only (record_test.go)
	if !reflect.DeepEqual(ca, cb) {
		return fmt.Errorf("\n%+v\nwant\n%+v", ca, cb)
	}
	if !reflect.DeepEqual(a.doc(d), b.doc(d)) {
		return fmt.Errorf("the documents differ")
	}
	return nil
}

// flatLongWay is what the index makes of data without flattenJSON.
func flatLongWay(t *testing.T, b *twinBuilder, data []byte) *flatTwin {
	t.Helper()
	r, err := recordjson.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return b.flatten(r)
}

// TestFlattenJSON checks that flattening a record's JSON gives what
// decoding it and flattening the Record gives.
func TestFlattenJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	ix := NewIndex()
	refused := 0
	for i := range 3000 {
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
		if i%7 == 0 {
			rec.Twin.Tags = map[string]any{"k<>": "a\tb\\c/é😀", "n": -1.5e-7, "arr": []any{1.0, nil, map[string]any{"x": "y"}}}
		}
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ix.build.flattenJSON(data)
		if !ok {
			refused++
			continue
		}
		want := flatLongWay(t, &ix.build, data)
		if err := sameFlat(ix.dict, got, want); err != nil {
			t.Fatalf("%s:\n%v", data, err)
		}
	}
	// Only the records with metadata of a removed property go the long way.
	if refused > 3000/10 {
		t.Errorf("flattenJSON refused %d records of 3000", refused)
	}
}

// TestFlattenJSONOddities: records that flattenJSON refuses or reads in
// its own way flatten as the long way does.
func TestFlattenJSONOddities(t *testing.T) {
	ix := NewIndex()
	for _, s := range []string{
		`{"device":{"deviceId":"d"},"identityVersion":2}`,
		`{"device":{"deviceId":"d"},"twin":null}`,
		`{"device":{"deviceId":"d"},"twin":{"reported":{"values":{"a":1}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":null,"reported":{"values":{"a":1},"metadata":null}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":null,"desired":{"values":{"b":{"c":2}},"metadata":{"t":"2024-01-01T00:00:00Z","c":{"b":{"t":"2024-01-01T00:00:01Z","v":3}}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"values":{"b":{"c":2}},"metadata":{"c":{"b":{"c":{"c":{"t":"2024-01-01T00:00:01Z"}}}}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"values":{"b":1},"metadata":{"c":{"b":null}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"values":{"b":1},"metadata":{"c":{"a":{"t":"2024-01-01T00:00:01Z"}}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"values":{"b":1},"metadata":{"c":{"b":{"c":{"x":{}}}}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"metadata":{"t":"2024-01-01T00:00:00Z"},"values":{"b":1}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"reported":{"values":{}},"desired":{"values":{"b":1}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"b":1,"a":2}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":1,"a":2}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a\u0041":{"x":[1,[2,{"y":"\u00e9"}]]},"z":"\ud83d\ude00"}}}`,
		`{"module":{"deviceId":"d","moduleId":"m"},"twin":{"modelId":"x","version":3}}`,
	} {
		data := []byte(s)
		want := flatLongWay(t, &ix.build, data)
		got, ok := ix.build.flattenJSON(data)
		if !ok {
			continue
		}
		if err := sameFlat(ix.dict, got, want); err != nil {
			t.Errorf("%s:\n%v", s, err)
		}
	}
}

// TestApplyJSON feeds the index the way a raw watch does and checks it
// against the index fed Records.
func TestApplyJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	raw := NewIndex()
	ref := map[twinhub.Key]*twinhub.Record{}
	for i := range 2500 {
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i%2000))
		if i%4 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.applyJSON(k, data, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
		dec, _ := recordjson.Decode(data)
		ref[k] = dec
	}
	if err := raw.applyJSON(twinhub.DeviceKey("x"), []byte(`{"module":{"deviceId":"x","moduleId":"m"}}`), 9999); err == nil {
		t.Error("a module's record under a device's key was taken")
	}
	if err := raw.applyJSON(twinhub.DeviceKey("x"), []byte(`{`), 10000); err == nil {
		t.Error("bad JSON was taken")
	}
	if err := raw.WaitFor(t.Context(), 10000); err != nil {
		t.Fatal(err)
	}
	want := newReference(ref)
	for _, src := range fleetQueries[:20] {
		checkQuery(t, raw, want, src, 1000)
	}
}

// BenchmarkFlattenJSON is the index's cost of one record at start-up.
func BenchmarkFlattenJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	var data [][]byte
	for i := range 1000 {
		d, _ := json.Marshal(recordtest.BenchRecord(r, i, 1_000_000))
		data = append(data, d)
	}
	ix := NewIndex()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := ix.build.flattenJSON(data[i%len(data)]); !ok {
			b.Fatal("refused")
		}
		i++
	}
}

// TestApplyWrittenWithTheWatch: writers put their writes into the index
// (ApplyWritten) in any order and at any time relative to the watch,
// which brings every change in revision order; each write is in the
// index once its ApplyWritten returns, and the index ends as the watch
// alone leaves it.
func TestApplyWrittenWithTheWatch(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	type change struct {
		k    twinhub.Key
		data []byte // nil: deleted
		rev  uint64
	}
	var history []change
	last := map[twinhub.Key]*twinhub.Record{}
	lastRev := map[twinhub.Key]uint64{}
	for i := range 4000 {
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", r.IntN(150)))
		if r.IntN(4) == 0 {
			k.ModuleID = "m"
		}
		c := change{k: k, rev: uint64(i + 1)}
		if _, ok := last[k]; ok && r.IntN(8) == 0 {
			delete(last, k)
		} else {
			rec := recordtest.RandomRecord(r, k)
			data, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			c.data = data
			last[k], _ = recordjson.Decode(data)
			lastRev[k] = c.rev
		}
		history = append(history, c)
	}
	ix := NewIndex()
	writes := make(chan change)
	var wg sync.WaitGroup
	// applied is the last revision of each identity a writer has applied.
	var mu sync.Mutex
	applied := map[twinhub.Key]uint64{}
	for range 8 {
		wg.Go(func() {
			for c := range writes {
				if err := ix.ApplyWritten(c.k, c.data, c.rev); err != nil {
					t.Error(err)
					continue
				}
				// Once applied, the index holds the write or a later
				// change of it; or the watch has passed it.
				if tw, _ := ix.twinAt(c.k, 0); (tw == nil || tw.rev < c.rev) && ix.Revision() < c.rev {
					t.Errorf("%s at revision %d: not in the index once applied", c.k, c.rev)
				}
				mu.Lock()
				applied[c.k] = max(applied[c.k], c.rev)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for _, c := range history {
			mu.Lock()
			w := applied[c.k]
			mu.Unlock()
			if err := ix.applyJSON(c.k, c.data, c.rev); err != nil {
				t.Error(err)
			}
			// The watch does not take the index back from a later
			// revision a writer has applied.
			if tw, _ := ix.twinAt(c.k, 0); w > c.rev && (tw == nil || tw.rev < w) {
				t.Errorf("%s: the watch's revision %d replaced the written %d", c.k, c.rev, w)
			}
		}
	})
	// The writers' order is shuffled within windows, as writes of
	// different identities are acknowledged in one order and applied in
	// another.
	puts := slices.DeleteFunc(slices.Clone(history), func(c change) bool { return c.data == nil })
	for i := 0; i < len(puts); i += 50 {
		w := puts[i:min(i+50, len(puts))]
		r.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
		for _, c := range w {
			writes <- c
		}
	}
	close(writes)
	wg.Wait()
	if err := ix.WaitFor(t.Context(), uint64(len(history))); err != nil {
		t.Fatal(err)
	}
	want := newReference(last)
	for _, src := range fleetQueries[:20] {
		checkQuery(t, ix, want, src, 1000)
	}
	for k := range last {
		if tw, _ := ix.twinAt(k, 0); tw == nil || tw.rev != lastRev[k] {
			t.Errorf("%s: not at revision %d", k, lastRev[k])
		}
	}
	if n := ix.devices.live.Load() + ix.modules.live.Load(); n != int64(len(last)) {
		t.Errorf("%d twins in the index, want %d", n, len(last))
	}
}

// TestWatchSkipsHeldChanges: the watch does not unpack a change the index
// holds already (a writer applied it), and unpacks the others.
func TestWatchSkipsHeldChanges(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	ix := NewIndex()
	unpacked := 0
	unpack := func(stored []byte) ([]byte, error) {
		unpacked++
		return stored, nil
	}
	a, b := twinhub.DeviceKey("a"), twinhub.DeviceKey("b")
	dataA, _ := json.Marshal(recordtest.RandomRecord(r, a))
	dataB, _ := json.Marshal(recordtest.RandomRecord(r, b))
	if err := ix.ApplyWritten(a, dataA, 1); err != nil {
		t.Fatal(err)
	}
	if err := ix.applyStored(a, dataA, 1, unpack); err != nil || unpacked != 0 {
		t.Fatalf("the written change was unpacked %d times (%v)", unpacked, err)
	}
	if err := ix.applyStored(b, dataB, 2, unpack); err != nil || unpacked != 1 {
		t.Fatalf("a change no writer applied was unpacked %d times (%v)", unpacked, err)
	}
	if tw, _ := ix.twinAt(b, 2); tw == nil || tw.rev != 2 || ix.Revision() != 2 {
		t.Fatalf("b at revision 2 not in the index (revision %d)", ix.Revision())
	}
}
