package index

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
)

// Starting a node means reading every record of the store into the index.
// Decoding a million records into Records, with a map for every object and
// a struct for every metadata node, only to flatten them, costs more than
// a minute; so when the store can hand records over as stored (rawWatcher),
// the index flattens the JSON itself, on every processor while the watch
// replays what the store holds. It reads what encoding/json writes of a
// Record: fields in the order of the structs, map keys sorted. Any record
// it does not expect (keys out of order, metadata of a property that has
// no value, JSON it does not take) goes the long way, through recordjson.Decode
// and flatten, which give the same flatTwin.

// RawWatcher is implemented by stores that can watch their records as
// stored: stored is the record in the store's own form, nil for a
// deletion, and Unpack makes its JSON. Otherwise as Store.Watch, but from
// revision from on (0: every record the store holds), which is what lets
// a node start from a snapshot (snapshot.go). The index unpacks a record
// only when it needs it: not a change it holds already (ApplyWritten),
// and at start-up on every processor.
type RawWatcher interface {
	WatchRaw(ctx context.Context, from uint64, fn func(k twinhub.Key, stored []byte, rev uint64), ready func()) error
	Unpack(stored []byte) ([]byte, error)
}

// Watch feeds the index from the store until ctx ends. An index loaded
// from a snapshot watches from the revision after the snapshot's (from);
// that takes a store that is a RawWatcher.
func (ix *Index) Watch(ctx context.Context, s twinhub.Store, log *slog.Logger, from uint64, ready func()) error {
	if rw, ok := s.(RawWatcher); ok {
		r := ix.startReplay(log, rw.Unpack)
		defer r.finish()
		return rw.WatchRaw(ctx, from, r.feed, func() {
			r.finish()
			ready()
		})
	}
	if from > 1 {
		return errors.New("the store cannot watch from a revision: the index must be read from the start")
	}
	return s.Watch(ctx, func(k twinhub.Key, r *twinhub.Record, rev uint64) {
		if err := ix.apply(k, r, rev); err != nil {
			log.Error("skipping a record the index cannot read", "identity", k.String(), "err", err)
		}
	}, ready)
}

// replay reads the records of a raw watch into the index. Until the watch
// has replayed the records that were there when it began, it flattens
// them on every processor and applies them in order on one goroutine;
// from then on it applies each change as it comes.
type replay struct {
	ix      *Index
	log     *slog.Logger
	unpack  func(stored []byte) ([]byte, error)
	jobs    chan replayJob // nil once the replay is over
	results chan replayJob
	workers sync.WaitGroup
	applied chan struct{}
	seq     uint64
}

type replayJob struct {
	seq  uint64
	k    twinhub.Key
	data []byte
	rev  uint64
	t    *flatTwin
	err  error
}

func (ix *Index) startReplay(log *slog.Logger, unpack func(stored []byte) ([]byte, error)) *replay {
	r := &replay{ix: ix, log: log, unpack: unpack, jobs: make(chan replayJob, 256), results: make(chan replayJob, 256), applied: make(chan struct{})}
	ix.setReplaying(true)
	for range runtime.GOMAXPROCS(0) {
		r.workers.Go(func() {
			b := &twinBuilder{dict: ix.dict}
			for j := range r.jobs {
				if j.data != nil {
					var data []byte
					if data, j.err = unpack(j.data); j.err == nil {
						j.t, j.err = b.flattenRecord(j.k, data)
					}
				}
				r.results <- j
			}
		})
	}
	go func() {
		defer close(r.applied)
		applyInOrder(r.results, func(j replayJob) uint64 { return j.seq }, r.apply)
	}()
	return r
}

// applyInOrder calls apply with each of results in the order of their
// seq (0, 1, 2...), as workers that finish out of order hand them over.
func applyInOrder[T any](results <-chan T, seq func(T) uint64, apply func(T)) {
	waiting := map[uint64]T{}
	next := uint64(0)
	for x := range results {
		waiting[seq(x)] = x
		for x, ok := waiting[next]; ok; x, ok = waiting[next] {
			delete(waiting, next)
			next++
			apply(x)
		}
	}
}

func (r *replay) apply(j replayJob) {
	ix := r.ix
	ix.wmu.Lock()
	if j.err == nil {
		if j.t != nil {
			j.t.rev = j.rev
		}
		ix.setUnlessNewer(ix.table(j.k), nodeKey(j.k), j.t, j.rev)
	}
	ix.wmu.Unlock()
	ix.advance(j.rev)
	if j.err != nil {
		r.log.Error("skipping a record the index cannot read", "identity", j.k.String(), "err", j.err)
	}
}

func (r *replay) feed(k twinhub.Key, stored []byte, rev uint64) {
	if r.jobs == nil {
		if err := r.ix.applyStored(k, stored, rev, r.unpack); err != nil {
			r.log.Error("skipping a record the index cannot read", "identity", k.String(), "err", err)
		}
		return
	}
	r.jobs <- replayJob{seq: r.seq, k: k, data: stored, rev: rev}
	r.seq++
}

// finish applies what the workers have in hand and stops them.
func (r *replay) finish() {
	if r.jobs == nil {
		return
	}
	close(r.jobs)
	r.workers.Wait()
	close(r.results)
	<-r.applied
	r.jobs = nil
	r.ix.setReplaying(false)
}

// applyJSON records one change seen by a raw watch, given as its JSON.
func (ix *Index) applyJSON(k twinhub.Key, data []byte, rev uint64) error {
	return ix.applyStored(k, data, rev, nil)
}

// applyStored records one change seen by a raw watch, as stored: unpack
// makes its JSON (nil: it is JSON). A record it cannot read is left out,
// but its revision counts as seen.
func (ix *Index) applyStored(k twinhub.Key, stored []byte, rev uint64, unpack func([]byte) ([]byte, error)) error {
	var t *flatTwin
	var err error
	tb, key := ix.table(k), nodeKey(k)
	ix.wmu.Lock()
	// A change its writer has applied already (ApplyWritten) is neither
	// unpacked nor flattened again.
	if !ix.holdsNewer(tb, key, rev) {
		data := stored
		if data != nil && unpack != nil {
			data, err = unpack(stored)
		}
		if data != nil && err == nil {
			t, err = ix.build.flattenRecord(k, data)
		}
		if err == nil {
			if t != nil {
				t.rev = rev
			}
			ix.set(tb, key, t)
		}
	}
	ix.wmu.Unlock()
	ix.advance(rev)
	return err
}

// ApplyWritten puts a write into the index as soon as the store has
// acknowledged it, from the JSON the writer stored, rather than when the
// watch brings it back: a node that is its store's only writer then
// answers reads and queries from an index that holds every write it has
// acknowledged, without waiting for its watch (which lags the writes by
// their trip through JetStream and the watch's queue: the wait was most
// of a by-id query's time under a steady write load).
//
// The watch still brings every change, in order, and still moves the
// index's revision; a change the index holds at the same or a newer
// revision it skips (holdsNewer). A write the watch has passed already is
// left alone here: the watch applied it, or a later change of the same
// identity. Several writers may call it at once; each flattens on a
// builder of its own, outside the writer's lock.
func (ix *Index) ApplyWritten(k twinhub.Key, data []byte, rev uint64) error {
	if ix.Revision() >= rev {
		return nil
	}
	b := ix.builders.Get().(*twinBuilder)
	t, err := b.flattenRecord(k, data)
	ix.builders.Put(b)
	if err != nil {
		return err
	}
	t.rev = rev
	tb, key := ix.table(k), nodeKey(k)
	ix.wmu.Lock()
	// Under wmu, the watch is not between a set and its advance of a
	// revision above rev: it advances after each change, in order, so
	// once it has applied anything after rev the revision is at least rev.
	if ix.Revision() < rev {
		ix.setUnlessNewer(tb, key, t, rev)
	}
	ix.wmu.Unlock()
	return nil
}

// holdsNewer says whether the index holds key's twin at revision rev or a
// later one, applied by ApplyWritten before the watch brought rev. The
// caller holds wmu.
func (ix *Index) holdsNewer(tb *table, key string, rev uint64) bool {
	if n := tb.byKey[key]; n != nil {
		if t := n.twin.Load(); t != nil && t.rev >= rev {
			return true
		}
	}
	return false
}

// setUnlessNewer is set, unless the index holds key at rev or later. The
// caller holds wmu.
func (ix *Index) setUnlessNewer(tb *table, key string, t *flatTwin, rev uint64) {
	if !ix.holdsNewer(tb, key, rev) {
		ix.set(tb, key, t)
	}
}

// flattenRecord makes the flatTwin of the record of k from its JSON.
func (b *twinBuilder) flattenRecord(k twinhub.Key, data []byte) (*flatTwin, error) {
	t, ok := b.flattenJSON(data)
	if !ok {
		r, err := recordjson.Decode(data)
		if err != nil {
			return nil, err
		}
		if (r.Device == nil) == (r.Module == nil) {
			return nil, indexError("the record holds neither or both of a device and a module")
		}
		t = b.flatten(r)
	}
	if (k.ModuleID != "") != t.id.isModule {
		return nil, indexError("the record is not of the identity its key names")
	}
	return t, nil
}

type indexError string

func (e indexError) Error() string { return string(e) }

// flattenJSON makes a flatTwin from a record's JSON, or returns false.
func (b *twinBuilder) flattenJSON(data []byte) (*flatTwin, bool) {
	b.fields, b.data, b.stamps, b.refs = b.fields[:0], b.data[:0], b.stamps[:0], b.refs[:0]
	b.lastLeaf = b.lastLeaf[:0] // its stamp is an index in this twin's stamps
	b.lossy = false
	clear(b.seen)
	var (
		dev             *twinhub.Device
		mod             *twinhub.Module
		identityVersion int64
		t               flatTwin
		seen            [3]bool // tags, desired, reported
	)
	// section starts section s (0 tags, 1 desired, 2 reported), which
	// must come after those before it.
	section := func(s int) bool {
		for _, later := range seen[s:] {
			if later {
				return false
			}
		}
		if s == 1 || s == 2 && !seen[1] {
			t.desiredAt = uint32(len(b.fields))
		}
		if s == 2 {
			t.reportedAt = uint32(len(b.fields))
		}
		seen[s] = true
		return true
	}
	d := recordjson.NewDecoder(data)
	ok := d.Fields(recordjson.RecordFields, func(k int) bool {
		switch k {
		case 0:
			if d.Null() {
				return true
			}
			dev, b.dev = &b.dev, twinhub.Device{} // appendIdentity copies what it keeps
			return d.Device(dev)
		case 1:
			if d.Null() {
				return true
			}
			mod, b.mod = &b.mod, twinhub.Module{}
			return d.Module(mod)
		case 2:
			return d.Null() || d.Int64(&identityVersion)
		}
		if d.Null() {
			return true
		}
		return d.Fields(recordjson.TwinFields, func(k int) bool {
			switch k {
			case 0:
				return d.Null() || d.Int64(&t.version)
			case 1:
				if !section(0) {
					return false
				}
				if d.Null() {
					t.nilTags = true
					return true
				}
				return b.treeJSON(&d, tagsPath)
			case 2:
				if !section(1) {
					return false
				}
				t.desiredStamp = noStamp
				return d.Null() || b.propertiesJSON(&d, desiredPath, &t.desiredVersion, &t.desiredStamp)
			case 3:
				if !section(2) {
					return false
				}
				t.reportedStamp = noStamp
				return d.Null() || b.propertiesJSON(&d, reportedPath, &t.reportedVersion, &t.reportedStamp)
			case 4:
				return d.Str(&t.modelID)
			}
			return d.StringMap(&t.configs)
		})
	})
	if !ok || !d.End() {
		return nil, false
	}
	if !seen[0] {
		t.nilTags = true // no tags: a nil map
	}
	if !seen[1] && !seen[2] {
		t.desiredAt = uint32(len(b.fields))
	}
	if !seen[2] {
		t.reportedAt = uint32(len(b.fields))
	}
	// The flat form keeps no nil values, metadata or sections: a record
	// with one is not exact (the decoder would read a nil where record
	// makes an empty one).
	exact := seen[1] && seen[2] && t.desiredStamp != noStamp && t.reportedStamp != noStamp
	// Sections without metadata show an empty one, as Metadata.wire does.
	if !seen[1] || t.desiredStamp == noStamp {
		t.desiredStamp = b.stamp(nil)
	}
	if !seen[2] || t.reportedStamp == noStamp {
		t.reportedStamp = b.stamp(nil)
	}
	if (dev == nil) == (mod == nil) {
		return nil, false // flattenRecord's decoder says what is wrong
	}
	ft, idExact := b.finish(&t, dev, mod, identityVersion)
	ft.exact = exact && idExact && !b.lossy
	return ft, true
}

// propertiesJSON reads desired or reported properties: values, then
// version, then metadata, whose stamps go to the values' fields.
func (b *twinBuilder) propertiesJSON(d *recordjson.Decoder, root pathID, version *int64, own *uint16) bool {
	lo := len(b.fields)
	step := -1
	values := false
	ok := d.Fields(recordjson.PropertiesFields, func(k int) bool {
		if k <= step {
			return false
		}
		step = k
		switch k {
		case 0:
			if d.Null() {
				return true
			}
			values = true
			return b.treeJSON(d, root)
		case 1:
			return d.Null() || d.Int64(version)
		}
		if d.Null() {
			return true
		}
		var st stamp
		ok := b.metadataJSON(d, &st, lo, len(b.fields))
		*own = b.stampValue(st)
		return ok
	})
	if !values {
		b.lossy = true // a nil map, which the flat form does not tell from an empty one
	}
	return ok
}

// treeJSON reads an object of tags or properties into fields, under
// parent. Keys must come sorted, as encoding/json writes them.
func (b *twinBuilder) treeJSON(d *recordjson.Decoder, parent pathID) bool {
	var last []byte
	first := true
	return d.Object(func(key []byte) bool {
		if !first && bytes.Compare(key, last) <= 0 {
			return false
		}
		first, last = false, key
		f := field{path: b.child(parent, key), stamp: noStamp}
		switch c := d.Peek(); {
		case c == '{':
			at := len(b.fields)
			f.kind = fObject
			b.fields = append(b.fields, f)
			if !b.treeJSON(d, f.path) {
				return false
			}
			b.fields[at].v = uint64(len(b.fields) - at - 1)
			return true
		case c == '"':
			at := d.Pos()
			if s, ok := d.RawString(); ok {
				f.kind, f.v = fString, uint64(len(b.data))<<32|uint64(len(s))
				b.data = append(b.data, s...)
				break
			}
			d.SetPos(at)
			s, ok := d.String()
			if !ok {
				return false
			}
			f.kind, f.v = fString, uint64(len(b.data))<<32|uint64(len(s))
			b.data = append(b.data, s...)
		case c == 't' || c == 'f':
			var v bool
			if !d.Bool(&v) {
				return false
			}
			f.kind = fBool
			if v {
				f.v = 1
			}
		case c == 'n':
			if !d.Null() {
				return false
			}
			f.kind = fNull
		case c == '[':
			v, ok := d.Value()
			if !ok {
				return false
			}
			f.kind, f.v = fRef, uint64(len(b.refs))
			b.refs = append(b.refs, v)
		default:
			s, ok := d.Number()
			if !ok {
				return false
			}
			x, err := strconv.ParseFloat(string(s), 64)
			if err != nil {
				return false
			}
			f.kind, f.v = fNumber, math.Float64bits(x)
		}
		b.fields = append(b.fields, f)
		return true
	})
}

// metadataJSON reads a metadata node into st, and the stamps of its
// children into the fields in [lo, hi), the members of the object it
// describes. A child that describes no member makes it give up.
func (b *twinBuilder) metadataJSON(d *recordjson.Decoder, st *stamp, lo, hi int) bool {
	*st = stamp{zero: true}
	return d.Fields(recordjson.MetadataFields, func(k int) bool {
		switch k {
		case 0:
			start := d.Peek()
			at := d.Pos()
			if raw, ok := d.RawString(); ok && start == '"' && bytes.Equal(raw, b.lastTime) {
				st.sec, st.nsec, st.zero = b.lastStamp.sec, b.lastStamp.nsec, b.lastStamp.zero
				return true
			}
			d.SetPos(at)
			var t twinhub.Time
			if !d.Time(&t) {
				return false
			}
			s := stampOf(&twinhub.Metadata{LastUpdated: t})
			st.sec, st.nsec, st.zero = s.sec, s.nsec, s.zero
			// An instant not in UTC is not kept as b.lastTime: its raw
			// text would stand for another twin's instant in UTC.
			if raw := d.Since(at); len(raw) > 2 && raw[0] == '"' && t.Location() == time.UTC {
				b.lastTime, b.lastStamp = append(b.lastTime[:0], raw[1:len(raw)-1]...), s
			}
			return true
		case 1:
			return d.Null() || d.Int64(&st.ver)
		}
		if d.Null() {
			return true
		}
		pos := lo
		return d.Object(func(key []byte) bool {
			for pos < hi && b.dict.name(b.fields[pos].path) < string(key) {
				pos = b.fields[pos].after(pos)
			}
			if pos >= hi || b.dict.name(b.fields[pos].path) != string(key) {
				return false // metadata of a property that has no value
			}
			if d.Null() {
				b.lossy = true
				return true // a nil node: no metadata
			}
			f := &b.fields[pos]
			end := f.after(pos)
			// The leaves a patch touched have the same metadata: when the
			// JSON is that of the last leaf's, so is the stamp.
			d.SkipSpace()
			leaf := f.kind != fObject
			if leaf && len(b.lastLeaf) > 0 && bytes.HasPrefix(d.Rest(), b.lastLeaf) {
				d.SetPos(d.Pos() + len(b.lastLeaf))
				b.fields[pos].stamp = b.lastLeafStamp
				return true
			}
			at := d.Pos()
			var cst stamp
			if !b.metadataJSON(d, &cst, pos+1, end) {
				return false
			}
			b.fields[pos].stamp = b.stampValue(cst)
			if leaf {
				b.lastLeaf, b.lastLeafStamp = append(b.lastLeaf[:0], d.Since(at)...), b.fields[pos].stamp
			}
			return true
		})
	})
}

// stampValue is stamp for a stamp already read.
func (b *twinBuilder) stampValue(s stamp) uint16 {
	if s.zero {
		s.sec, s.nsec = 0, 0
	}
	return b.stampIndex(s)
}
