package twinhub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// stored is a record as the store holds it: its JSON and revision.
type stored struct {
	data []byte
	rev  uint64
}

// storedJSON encodes rec as the hub stores it (stamped), checking that
// EncodeRecord and json.Marshal agree.
func storedJSON(t testing.TB, rec *Record) []byte {
	t.Helper()
	rec.stamp()
	data, err := EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := json.Marshal(rec); err != nil || !bytes.Equal(m, data) {
		t.Fatalf("EncodeRecord and json.Marshal differ:\n%s\n%s", data, m)
	}
	return data
}

// checkRecord checks ix.record(k) against the stored record: the record
// DecodeRecord gives of the same bytes, and its revision. With must, the
// index must have it.
func checkRecord(t testing.TB, ix *index, k Key, s stored, must bool) {
	t.Helper()
	got, rev, ok := ix.record(k)
	if s.data == nil {
		if ok {
			t.Fatalf("%s: deleted, but record returned rev %d", k, rev)
		}
		return
	}
	if !ok {
		if must {
			t.Fatalf("%s: no record, want rev %d:\n%s", k, s.rev, s.data)
		}
		return
	}
	sameRecord(t, k, got, rev, s)
}

// sameRecord checks a record and revision that record returned against
// the stored record.
func sameRecord(t testing.TB, k Key, got *Record, rev uint64, s stored) {
	t.Helper()
	want, err := DecodeRecord(s.data)
	if err != nil {
		t.Fatal(err)
	}
	if rev != s.rev {
		t.Fatalf("%s: rev %d, want %d", k, rev, s.rev)
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		t.Fatalf("%s: record differs from DecodeRecord\n got %#v\nwant %#v\n got %s\nwant %s", k, got.Twin, want.Twin, gj, s.data)
	}
}

// TestIndexRecord applies random records (created, updated, deleted,
// created again; devices and modules; through applyJSON and apply), and
// checks that the index gives back each one exactly as DecodeRecord
// decodes its stored JSON, with its revision.
func TestIndexRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	ix := newIndex()
	const n = 900
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = DeviceKey(fmt.Sprintf("d%04d", i/3))
		if i%3 != 0 {
			keys[i].ModuleID = fmt.Sprintf("m%d", i%3)
		}
	}
	state := map[Key]stored{}
	rev := uint64(0)
	put := func(k Key) {
		var rec *Record
		if k.ModuleID == "" && r.IntN(3) == 0 {
			rec = benchRecord(r, r.IntN(n), n)
			rec.Device.DeviceID = k.DeviceID
		} else {
			rec = randomRecord(r, k)
		}
		data := storedJSON(t, rec)
		rev += uint64(1 + r.IntN(3))
		if r.IntN(2) == 0 {
			dec, err := DecodeRecord(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.apply(k, dec, rev); err != nil {
				t.Fatal(err)
			}
		} else if err := ix.applyJSON(k, data, rev); err != nil {
			t.Fatal(err)
		}
		state[k] = stored{data, rev}
	}
	del := func(k Key) {
		rev++
		if r.IntN(2) == 0 {
			_ = ix.apply(k, nil, rev)
		} else {
			_ = ix.applyJSON(k, nil, rev)
		}
		state[k] = stored{}
	}
	check := func(round int) {
		if err := ix.waitFor(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			checkRecord(t, ix, k, state[k], true)
		}
		// The record is the caller's: changing it changes nothing in the
		// index.
		for _, k := range keys[:50] {
			got, _, ok := ix.record(k)
			if !ok {
				continue
			}
			if got.Device != nil {
				got.Device.DeviceID, got.Device.ETag = "changed", "changed"
				got.Device.Authentication.SymmetricKey.PrimaryKey = "changed"
			} else {
				got.Module.ModuleID = "changed"
			}
			got.Twin.Version++
			if got.Twin.Tags != nil {
				got.Twin.Tags["changed"] = true
			}
			if got.Twin.Reported.Values != nil {
				clear(got.Twin.Reported.Values)
			}
			if m := got.Twin.Desired.Metadata; m != nil {
				m.LastUpdatedVersion = -1
				for _, c := range m.Children {
					c.LastUpdatedVersion = -1
				}
			}
			checkRecord(t, ix, k, state[k], true)
		}
		t.Logf("round %d: %d records checked", round, len(keys))
	}
	for _, i := range r.Perm(n) {
		put(keys[i])
	}
	check(0)
	for round := 1; round <= 3; round++ {
		for _, i := range r.Perm(n) {
			k := keys[i]
			switch x := r.IntN(10); {
			case state[k].data == nil && x < 7:
				put(k) // created again
			case x < 4:
				put(k)
			case x == 4:
				del(k)
			}
		}
		check(round)
	}
}

// TestIndexRecordOdd feeds stored records with what the index keeps and
// what it does not: the first must come back exactly, the others not at
// all (ok false: the hub then reads the store).
func TestIndexRecordOdd(t *testing.T) {
	tag := identityETag(1)
	dev := `{"device":{"deviceId":"d","etag":"` + tag + `","connectionState":"Disconnected","status":"enabled"},"identityVersion":1,`
	exact := []string{
		dev + `"twin":{"version":2,"tags":{"big":12345678901234567890,"z":-0,"e":1e300,"f":-1.5e-7,"i":9007199254740993,"s":"\u00e9\ud83d\ude00<>","a":[1,{"b":[]},null,"x"],"o":{}},"desired":{"values":null,"version":1,"metadata":null},"reported":{"values":{},"version":1}}}`,
		dev + `"twin":{"version":2,"tags":null,"desired":{"values":{"a":{"b":1}},"version":3,"metadata":{"t":"0001-01-01T00:00:00Z","c":{"a":{"t":"2024-01-01T00:00:00.1234567Z","v":3,"c":{"b":{"t":"2024-01-01T00:00:00Z","v":2}}}}}},"reported":{"values":{"x":1,"y":2},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{"gone":{"t":"2024-01-01T00:00:00Z"},"x":{"t":"2024-01-01T00:00:00Z"}}}}}}`,
		dev + `"twin":{"version":2}}`,
		dev + `"twin":null}`,
		`{"module":{"moduleId":"m","deviceId":"d","etag":"` + tag + `"},"identityVersion":1,"twin":{"version":1,"tags":{},"desired":{"values":{},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z"}},"reported":{"values":{"x":[1,2]},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","v":7,"c":{"x":{"t":"2024-01-01T00:00:00Z","v":7}}}},"modelId":"dtmi:a;1"}}`,
	}
	inexact := []string{
		`{"device":{"deviceId":"d","etag":"other"},"identityVersion":1,"twin":{"version":1}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{}}}}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{"x":null}}}}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T01:00:00+01:00"}}}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{"x":{"t":"2024-01-01T00:00:00Z","c":{"y":{"t":"2024-01-01T00:00:00Z"}}}}}}}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{"gone":{"t":"2024-01-01T00:00:00Z","c":{"y":{"t":"2024-01-01T00:00:00Z"}}}}}}}}`,
		dev + `"twin":{"version":1,"reported":{"values":{"x":{}},"version":1,"metadata":{"t":"2024-01-01T00:00:00Z","c":{"x":{"t":"2024-01-01T00:00:00Z","c":{}}}}}}}`,
	}
	for i, s := range append(exact, inexact...) {
		data := []byte(s)
		rec, err := DecodeRecord(data)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		k := rec.Key()
		for _, viaRecord := range []bool{false, true} {
			ix := newIndex()
			if viaRecord {
				rec, _ := DecodeRecord(data)
				err = ix.apply(k, rec, 5)
			} else {
				err = ix.applyJSON(k, data, 5)
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = ix.waitFor(context.Background(), 5)
			if i < len(exact) {
				checkRecord(t, ix, k, stored{data, 5}, true)
			} else if _, _, ok := ix.record(k); ok {
				t.Errorf("%d (via record %v): record rebuilt, want ok false: %s", i, viaRecord, s)
			}
		}
	}
}

// TestIndexRecordSameOddTime checks that an instant not in UTC makes
// every twin that has it inexact, not only the first (flattenJSON reuses
// the last instant it parsed).
func TestIndexRecordSameOddTime(t *testing.T) {
	ix := newIndex()
	for i := range 3 {
		k := DeviceKey(fmt.Sprint("d", i))
		data := `{"device":{"deviceId":"` + k.DeviceID + `","etag":"` + identityETag(1) + `"},"identityVersion":1,"twin":{"version":1,"reported":{"values":{"x":1},"version":1,"metadata":{"t":"2024-01-01T01:00:00+01:00"}}}}`
		if err := ix.applyJSON(k, []byte(data), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
		_ = ix.waitFor(context.Background(), uint64(i+1))
		checkRecord(t, ix, k, stored{[]byte(data), uint64(i + 1)}, false)
		if _, _, ok := ix.record(k); ok {
			t.Errorf("twin %d: record rebuilt, want ok false", i)
		}
	}
}

// TestIndexRecordInexactRecord checks that records handed to apply with
// what their stored JSON would not give back are refused.
func TestIndexRecordInexactRecord(t *testing.T) {
	for i, change := range []func(*Record){
		func(r *Record) { r.Twin.Tags["int"] = 7 },
		func(r *Record) { r.Twin.Tags["nil"] = map[string]any(nil) },
		func(r *Record) { r.Twin.Tags["arr"] = []any{1} },
		func(r *Record) { r.Twin.Tags["bad"] = "\xff" },
		func(r *Record) { r.Twin.Desired.Metadata.Children = map[string]*Metadata{} },
		func(r *Record) { r.Twin.Desired.Metadata.Children = map[string]*Metadata{"gone": nil} },
		func(r *Record) { r.Twin.Desired.Metadata.LastUpdated = Time{time.Now()} },
		func(r *Record) { r.Twin.Desired.Metadata.LastUpdated = Time{testEpoch.In(time.FixedZone("x", 3600))} },
		func(r *Record) { r.Device.ETag = "x" },
	} {
		rec := randomRecord(rand.New(rand.NewPCG(1, uint64(i))), DeviceKey("d"))
		rec.Twin.Tags = map[string]any{}
		rec.stamp()
		change(rec)
		ix := newIndex()
		if err := ix.apply(DeviceKey("d"), rec, 1); err != nil {
			t.Fatal(err)
		}
		_ = ix.waitFor(context.Background(), 1)
		if _, _, ok := ix.record(DeviceKey("d")); ok {
			t.Errorf("change %d: record rebuilt, want ok false", i)
		}
	}
}

// TestIndexRecordConcurrent reads records while the writer applies
// updates: whatever record returns is a record stored at its revision.
func TestIndexRecordConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ix := newIndex()
	const n = 200
	var byRev sync.Map // revision: stored JSON
	rev := uint64(0)
	put := func(i int) {
		k := DeviceKey(fmt.Sprintf("d%03d", i))
		data := storedJSON(t, randomRecord(r, k))
		rev++
		byRev.Store(rev, data)
		if err := ix.applyJSON(k, data, rev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		put(i)
	}
	_ = ix.waitFor(context.Background(), rev)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := range 2 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(uint64(g), 9))
			for !stop.Load() {
				k := DeviceKey(fmt.Sprintf("d%03d", rr.IntN(n)))
				if got, rev, ok := ix.record(k); ok {
					data, _ := byRev.Load(rev)
					sameRecord(t, k, got, rev, stored{data.([]byte), rev})
					hits.Add(1)
				}
			}
		})
	}
	for range 3000 {
		put(r.IntN(n))
	}
	stop.Store(true)
	wg.Wait()
	if hits.Load() == 0 {
		t.Fatal("no record read")
	}
}

// FuzzIndexRecord feeds stored JSON through applyJSON and apply: what
// record gives back, if anything, must be what DecodeRecord gives, at the
// revision applied.
func FuzzIndexRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(8, 8))
	for i := range 20 {
		k := DeviceKey(fmt.Sprint(i))
		if i%4 == 0 {
			k.ModuleID = "m"
		}
		rec := randomRecord(r, k)
		rec.stamp()
		data, _ := json.Marshal(rec)
		f.Add(data)
	}
	f.Add([]byte(`{"device":{"deviceId":"d\ud83d\ude00"},"twin":{"tags":{"a":[1,{"b":-0.5e3}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data)
		if err != nil || (rec.Device == nil) == (rec.Module == nil) {
			return
		}
		k := rec.Key()
		ix := newIndex()
		// Twice through applyJSON, as what the builder keeps from one
		// twin to the next must not change the next.
		for rev := uint64(3); rev <= 4; rev++ {
			if ix.applyJSON(k, data, rev) == nil {
				_ = ix.waitFor(context.Background(), rev)
				checkRecord(t, ix, k, stored{data, rev}, false)
			}
		}
		if ix.apply(k, rec, 5) == nil {
			_ = ix.waitFor(context.Background(), 5)
			checkRecord(t, ix, k, stored{data, 5}, false)
		}
	})
}

// BenchmarkIndexRecord compares rebuilding a record from the index with
// decoding its stored JSON, for the records of the benchmark fleet.
func BenchmarkIndexRecord(b *testing.B) {
	const n = 1000
	r := rand.New(rand.NewPCG(1, 2))
	ix := newIndex()
	datas := make([][]byte, n)
	keys := make([]Key, n)
	for i := range n {
		rec := benchRecord(r, i, n)
		datas[i] = storedJSON(b, rec)
		keys[i] = rec.Key()
		if err := ix.applyJSON(keys[i], datas[i], uint64(i+1)); err != nil {
			b.Fatal(err)
		}
	}
	_ = ix.waitFor(context.Background(), n)
	for i := range n {
		checkRecord(b, ix, keys[i], stored{datas[i], uint64(i + 1)}, true)
	}
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, _, ok := ix.record(keys[i%n]); !ok {
				b.Fatal("no record")
			}
		}
	})
	b.Run("DecodeRecord", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := DecodeRecord(datas[i%n]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestFlatTwinSizeClasses checks that the header of a flatTwin, with its
// revision, still leaves each of newFlatTwin's types in the allocation
// size class it was made for. Past 512 bytes, the runtime puts an 8-byte
// header before an object that has pointers, in the same size class.
func TestFlatTwinSizeClasses(t *testing.T) {
	for _, c := range []struct {
		size, class uintptr
	}{
		{unsafe.Sizeof(flatTwin5{}), 256}, {unsafe.Sizeof(flatTwin8{}), 320},
		{unsafe.Sizeof(flatTwin13{}), 384}, {unsafe.Sizeof(flatTwin16{}), 448},
		{unsafe.Sizeof(flatTwin21{}), 512}, {unsafe.Sizeof(flatTwin25{}), 576},
		{unsafe.Sizeof(flatTwin29{}), 640}, {unsafe.Sizeof(flatTwin33{}), 704},
		{unsafe.Sizeof(flatTwin37{}), 768}, {unsafe.Sizeof(flatTwin45{}), 896},
		{unsafe.Sizeof(flatTwin53{}), 1024}, {unsafe.Sizeof(flatTwin61{}), 1152},
		{unsafe.Sizeof(flatTwin69{}), 1280}, {unsafe.Sizeof(flatTwin77{}), 1408},
		{unsafe.Sizeof(flatTwin85{}), 1536}, {unsafe.Sizeof(flatTwin101{}), 1792},
		{unsafe.Sizeof(flatTwin117{}), 2048},
	} {
		size := c.size
		if size > 512 {
			size += 8
		}
		if size > c.class {
			t.Errorf("a flatTwin of %d bytes does not fit its size class of %d", c.size, c.class)
		}
	}
}
