package index

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
)

// checkRecord flattens the stored record data as the watch does and,
// when the twin is exact, checks that record rebuilds what the store's
// decoder reads: the same bytes once encoded. It reports whether the twin
// was exact.
func checkRecord(t *testing.T, ix *Index, data []byte) bool {
	t.Helper()
	dec, err := recordjson.Decode(data)
	if err != nil || (dec.Device == nil) == (dec.Module == nil) {
		return false // the store refuses it (jetstream.decode)
	}
	ft, err := ix.build.flattenRecord(dec.Key(), data)
	if err != nil || !ft.exact {
		return false
	}
	// The etags are derived (the hub sets them on every record it reads
	// or writes); the index's identity has them set.
	dec.SetETags()
	want, err := recordjson.Encode(dec)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := ft.record(ix.dict)
	rebuilt.SetETags()
	got, err := recordjson.Encode(rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("record of %s:\n%s\nrebuilt as\n%s", data, want, got)
	}
	return true
}

// TestFlatTwinRecord: records as the hub writes them rebuild exactly from
// their flat twins, and those the flat form cannot hold are not exact.
func TestFlatTwinRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	ix := NewIndex()
	exact := 0
	const n = 3000
	for i := range n {
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
		if i%2 == 0 {
			// Metadata for a property that has no value: the flat form
			// keeps its stamp only, so these may come out inexact.
			delete(rec.Twin.Reported.Metadata.Children, "gone")
		}
		data, err := recordjson.Encode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if checkRecord(t, ix, data) {
			exact++
		}
	}
	t.Logf("%d of %d random records exact", exact, n)
	if exact < n/3 {
		t.Errorf("only %d of %d random records are exact", exact, n)
	}
	for _, c := range []struct{ name, data string }{
		{"nil desired values", `{"device":{"deviceId":"d"},"identityVersion":1,"twin":{"version":1,"tags":{},"desired":{"values":null,"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}},"reported":{"values":{},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}}}}`},
		{"no desired metadata", `{"device":{"deviceId":"d"},"identityVersion":1,"twin":{"version":1,"tags":{},"desired":{"values":{},"version":1},"reported":{"values":{},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}}}}`},
		{"null metadata child", `{"device":{"deviceId":"d"},"identityVersion":1,"twin":{"version":1,"tags":{},"desired":{"values":{"a":1},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z","c":{"a":null}}},"reported":{"values":{},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}}}}`},
		{"no reported", `{"device":{"deviceId":"d"},"identityVersion":1,"twin":{"version":1,"tags":{},"desired":{"values":{},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}}}}`},
	} {
		ft, err := ix.build.flattenRecord(twinhub.DeviceKey("d"), []byte(c.data))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ft.exact {
			t.Errorf("%s: the flat twin says it is exact", c.name)
		}
	}
}

// TestRecordIsACopy: a writer may change what Index.Record returns without
// changing the index's twin.
func TestRecordIsACopy(t *testing.T) {
	ix := NewIndex()
	rec := recordtest.RandomRecord(rand.New(rand.NewPCG(4, 4)), twinhub.DeviceKey("d"))
	delete(rec.Twin.Reported.Metadata.Children, "gone")
	data, err := recordjson.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.applyJSON(twinhub.DeviceKey("d"), data, 7); err != nil {
		t.Fatal(err)
	}
	got, rev, ok := ix.Record(twinhub.DeviceKey("d"), 7)
	if !ok || rev != 7 {
		t.Fatalf("Record: ok %v, revision %d", ok, rev)
	}
	if _, _, ok := ix.Record(twinhub.DeviceKey("d"), 8); ok {
		t.Error("Record answered for a revision the index has not seen")
	}
	if _, _, ok := ix.Record(twinhub.DeviceKey("other"), 7); ok {
		t.Error("Record answered for an identity the index does not hold")
	}
	before, err := recordjson.Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	got.Device.Status = "changed"
	got.Device.ParentScopes = append(got.Device.ParentScopes, "x")
	got.Twin.Tags["new"] = 1.0
	got.Twin.Desired.Values["new"] = 1.0
	got.Twin.Desired.Metadata.LastUpdatedVersion = 99
	got.Twin.Reported.Metadata.Children = nil
	again, _, _ := ix.Record(twinhub.DeviceKey("d"), 7)
	after, err := recordjson.Encode(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("changing the record changed the index:\n%s\nthen\n%s", before, after)
	}
}

func FuzzFlatTwinRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 5))
	for i := range 10 {
		rec := recordtest.RandomRecord(r, twinhub.DeviceKey(fmt.Sprint(i)))
		delete(rec.Twin.Reported.Metadata.Children, "gone")
		data, _ := recordjson.Encode(rec)
		f.Add(data)
	}
	f.Add([]byte(`{"device":{"deviceId":"d"},"identityVersion":1,"twin":{"version":1,"tags":{"a":{"b":[1,"x"]}},"desired":{"values":{"a":{"b":1}},"version":2,"metadata":{"t":"2026-01-01T01:00:00+01:00","v":2,"c":{"a":{"t":"2026-01-01T00:00:00Z","c":{"b":{"t":"0001-01-01T00:00:00Z"}}}}}},"reported":{"values":{},"version":1,"metadata":{"t":"2026-01-01T00:00:00Z"}}}}`))
	ix := NewIndex()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRecord(t, ix, data)
	})
}
