package index

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
	"github.com/twinhub/twinhub/query"
)

// snapshotFleet feeds an index random records as the store's watch does
// (JSON, through applyJSON), with updates, deletions and re-creations,
// and returns it with the records it holds.
func snapshotFleet(t testing.TB, r *rand.Rand, n int) (*Index, map[twinhub.Key]*twinhub.Record) {
	ix := NewIndex()
	recs := map[twinhub.Key]*twinhub.Record{}
	rev := uint64(0)
	for i := range n {
		rev++
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", r.IntN(n*3/4+1)))
		if i%4 == 0 {
			k.ModuleID = fmt.Sprintf("m%d", i%3)
		}
		if i%10 == 9 {
			delete(recs, k)
			ix.applyJSON(k, nil, rev)
			continue
		}
		rec := recordtest.RandomRecord(r, k)
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.applyJSON(k, data, rev); err != nil {
			t.Fatal(err)
		}
		dec, _ := recordjson.Decode(data)
		recs[k] = dec
	}
	return ix, recs
}

func writeSnapshot(t testing.TB, ix *Index, epoch string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, _, err := ix.WriteSnapshot(&buf, epoch); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSnapshotRoundTrip: an index read back from its snapshot holds the
// same twins (field for field), at the same revision, answers the fleet's
// queries as the records do, and has its key order and counts.
func TestSnapshotRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	ix, recs := snapshotFleet(t, r, 4000)
	data := writeSnapshot(t, ix, "e1")
	loaded := NewIndex()
	rev, err := loaded.LoadSnapshot(bytes.NewReader(data), int64(len(data)), "e1")
	if err != nil {
		t.Fatal(err)
	}
	if rev != ix.Revision() || loaded.Revision() != rev {
		t.Fatalf("loaded at revision %d (index %d), written at %d", rev, loaded.Revision(), ix.Revision())
	}
	compared := 0
	for _, pair := range [][2]*table{{ix.devices, loaded.devices}, {ix.modules, loaded.modules}} {
		if len(pair[0].byKey) != len(pair[1].byKey) {
			t.Fatalf("%d identities written, %d read", len(pair[0].byKey), len(pair[1].byKey))
		}
		for key, n := range pair[0].byKey {
			m := pair[1].byKey[key]
			if m == nil {
				t.Fatalf("%q not read back", key)
			}
			if want, got := n.twin.Load(), m.twin.Load(); !reflect.DeepEqual(want, got) {
				t.Fatalf("twin %q read back as\n%+v\nwritten\n%+v", key, got, want)
			}
			compared++
		}
	}
	if s1, s2 := fmt.Sprint(ix.Statistics()), fmt.Sprint(loaded.Statistics()); s1 != s2 {
		t.Errorf("statistics %s, written %s", s2, s1)
	}
	if !reflect.DeepEqual(ix.dict.snapshot(), loaded.dict.snapshot()) {
		t.Error("the path dictionary differs")
	}
	checkViews(t, loaded, recs)
	ref := newReference(recs)
	for _, src := range fleetQueries {
		checkQuery(t, loaded, ref, src, 1000, 7)
	}
	// The loaded index snapshots again to the same bytes, and goes on
	// taking changes.
	if again := writeSnapshot(t, loaded, "e1"); !bytes.Equal(again, data) {
		t.Errorf("snapshot of the loaded index: %d bytes that differ from the first's %d", len(again), len(data))
	}
	k := twinhub.DeviceKey("after")
	rec := recordtest.RandomRecord(r, k)
	body, _ := json.Marshal(rec)
	if err := loaded.applyJSON(k, body, rev+1); err != nil {
		t.Fatal(err)
	}
	recs[k], _ = recordjson.Decode(body)
	if err := loaded.WaitFor(t.Context(), rev+1); err != nil { // as the hub does before a query
		t.Fatal(err)
	}
	checkQuery(t, loaded, newReference(recs), `SELECT * FROM devices`, 1000)
	checkViews(t, loaded, recs)
	t.Logf("%d twins compared, snapshot %d bytes", compared, len(data))
}

// TestSnapshotRefused: a snapshot of another epoch, damaged, cut short or
// of another version is refused, and so is loading into an index that has
// twins.
func TestSnapshotRefused(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	ix, _ := snapshotFleet(t, r, 300)
	data := writeSnapshot(t, ix, "e1")
	load := func(b []byte, epoch string) error {
		_, err := NewIndex().LoadSnapshot(bytes.NewReader(b), int64(len(b)), epoch)
		return err
	}
	if err := load(data, "e2"); !errors.Is(err, ErrSnapshotEpoch) {
		t.Errorf("another epoch: %v", err)
	}
	for _, at := range []int{len(snapshotMagic) - 2, len(data) / 3, len(data) / 2, len(data) - 2} {
		bad := bytes.Clone(data)
		bad[at] ^= 0x10
		if err := load(bad, "e1"); err == nil {
			t.Errorf("a snapshot damaged at byte %d of %d was taken", at, len(data))
		}
	}
	for _, n := range []int{0, 10, len(data) / 2, len(data) - 1} {
		if err := load(data[:n], "e1"); err == nil {
			t.Errorf("a snapshot cut at %d bytes of %d was taken", n, len(data))
		}
	}
	if err := load(append(bytes.Clone(data), 0), "e1"); err == nil {
		t.Error("a snapshot with a byte after its checksum was taken")
	}
	if _, err := ix.LoadSnapshot(bytes.NewReader(data), int64(len(data)), "e1"); err == nil {
		t.Error("a snapshot was loaded into an index that has twins")
	}
	if err := load(data, "e1"); err != nil {
		t.Errorf("the snapshot itself: %v", err)
	}
}

// fillFields sets every field of the struct v points to, recursively, to
// a value that is not its zero value, and fails on a field of a type it
// does not know: a field added to Device or Module must be added to the
// snapshot's codec too.
func fillFields(t *testing.T, v reflect.Value, seed *int) {
	t.Helper()
	timeType := reflect.TypeFor[twinhub.Time]()
	for i := range v.NumField() {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		*seed++
		s := fmt.Sprintf("%s-%d", name, *seed)
		switch {
		case f.Type() == timeType:
			f.Set(reflect.ValueOf(twinhub.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, *seed*100, time.UTC)}))
		case f.Kind() == reflect.String:
			f.SetString(s)
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf(&s))
		case f.Kind() == reflect.Int:
			f.SetInt(int64(*seed))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			sl := reflect.MakeSlice(f.Type(), 2, 2)
			sl.Index(0).SetString(s)
			sl.Index(1).SetString(s + "b")
			f.Set(sl)
		case f.Kind() == reflect.Struct:
			fillFields(t, f, seed)
		default:
			t.Fatalf("field %s of %s has a type (%s) the snapshot test does not fill: write it in snapshotWriter and read it in snapshotReader, then add it here", name, v.Type(), f.Type())
		}
	}
}

// TestSnapshotIdentities: every field of a device and of a module goes
// through a snapshot, with nil and empty told apart, and instants in
// other zones kept as the decoder reads them.
func TestSnapshotIdentities(t *testing.T) {
	seed := 0
	dev, mod := &twinhub.Device{}, &twinhub.Module{}
	fillFields(t, reflect.ValueOf(dev).Elem(), &seed)
	fillFields(t, reflect.ValueOf(mod).Elem(), &seed)
	devices := []*twinhub.Device{dev, {DeviceID: "bare"}, {DeviceID: "empty", ParentScopes: twinhub.Scopes{},
		LastActivityTime: twinhub.Time{Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("", 3600))}}}
	for _, d := range devices {
		var w snapshotWriter
		w.device(d)
		r := snapshotReader{b: w.b}
		got := &twinhub.Device{}
		r.device(got)
		if r.err != nil || r.i != len(w.b) {
			t.Fatalf("device %s: %v, %d of %d bytes read", d.DeviceID, r.err, r.i, len(w.b))
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("device read back as\n%+v\nwritten\n%+v", got, d)
		}
	}
	for _, m := range []*twinhub.Module{mod, {DeviceID: "d", ModuleID: "bare"}} {
		var w snapshotWriter
		w.module(m)
		r := snapshotReader{b: w.b}
		got := &twinhub.Module{}
		r.module(got)
		if r.err != nil || r.i != len(w.b) {
			t.Fatalf("module %s: %v, %d of %d bytes read", m.ModuleID, r.err, r.i, len(w.b))
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("module read back as\n%+v\nwritten\n%+v", got, m)
		}
	}
}

// withChecksum replaces the last four bytes of b with the checksum of the
// bytes before them, so that a fuzzed snapshot reaches the decoder.
func withChecksum(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	b = bytes.Clone(b)
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], snapshotCRC))
	return b
}

// FuzzLoadSnapshot: no snapshot, however damaged, crashes the loader, and
// one that loads can be queried and written again. The checksum is made
// to match, so that the damage reaches the decoder.
func FuzzLoadSnapshot(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 13))
	for _, n := range []int{0, 2, 6} { // small: a fuzzer minimizes what it finds by running it again and again
		ix, _ := snapshotFleet(f, r, n)
		f.Add(writeSnapshot(f, ix, "e"))
	}
	queries := fleetQueries[:12]
	f.Fuzz(func(t *testing.T, data []byte) {
		ix := NewIndex()
		data = withChecksum(data)
		if _, err := ix.LoadSnapshot(bytes.NewReader(data), int64(len(data)), "e"); err != nil {
			return
		}
		for _, src := range queries {
			queryAll(t, ix, src)
		}
		for _, tb := range []*table{ix.devices, ix.modules} {
			for _, n := range tb.byKey {
				if tw := n.twin.Load(); tw != nil && tw.exact {
					tw.record(ix.dict)
				}
			}
		}
		writeSnapshot(t, ix, "e")
	})
}

// queryAll runs src over every page, as maps and as JSON, and reads back
// the record of every twin: none of it may crash on a twin that loaded.
func queryAll(t *testing.T, ix *Index, src string) {
	q, err := query.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	runPaged(t, ix, q, 50)
	ix.QueryJSON(q, 100, Cursor{})
}

// BenchmarkSnapshot writes and loads the snapshot of the benchmark fleet
// (TWINHUB_BENCH_TWINS, 100,000 twins by default), in memory: the cost a
// node pays at a stop and at a start, without the disk.
func BenchmarkSnapshot(b *testing.B) {
	f := sharedFleet(b)
	var data []byte
	b.Run("write", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if _, _, err := f.ix.WriteSnapshot(&buf, "e"); err != nil {
				b.Fatal(err)
			}
		}
		data = buf.Bytes()
		b.ReportMetric(float64(len(data))/float64(f.n), "bytes/twin")
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := NewIndex().LoadSnapshot(bytes.NewReader(data), int64(len(data)), "e"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
