package index

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
)

// A snapshot is the index written to a file with the store revision it
// holds, so that a node starts by reading it back and then watches only
// the store's changes after that revision. At a million twins the watch's
// replay of the whole store is most of a start (12 s of 13 on two cores):
// the NATS server gathering a million messages, the client delivering
// them, and the index decoding each record's JSON. The flat twins are
// already compact and binary, so the snapshot writes them as they are,
// with the path dictionary their fields number paths in, and reading one
// back is a copy per twin and a few small strings.
//
// The format is this package's own (encoding/gob or JSON would rebuild
// the twins field by field through reflection, which is the cost the
// snapshot is there to avoid); it is versioned by its first line, and a
// file of another version, of another life of the store (epoch), or that
// does not check out (a CRC-32C over the whole file) is refused, and the
// node reads the store instead. Nothing in it is trusted beyond its
// checksum: every index and length is checked before use (FuzzLoadSnapshot).
//
// Layout, integers as varints:
//
//	"twinhub index snapshot 1\n"
//	epoch, revision, how many devices, how many modules
//	path dictionary: count, then (parent, name) from id 5 on
//	blocks: byte length (0 ends), then twin count and twins (snapshotWriter.twin)
//	CRC-32C (Castagnoli) of all the bytes before it, 4 bytes big-endian

const snapshotMagic = "twinhub index snapshot 1\n"

// snapshotBlock is about how many twins a block holds: blocks are decoded
// in parallel.
const snapshotBlock = 1024

// minSnapshotTwin is less than the bytes any twin takes in a snapshot (its
// identity, key, counters and one stamp).
const minSnapshotTwin = 32

// maxSnapshotBlock bounds a block's length, so that a damaged length does
// not make the reader allocate without bound.
const maxSnapshotBlock = 256 << 20

var snapshotCRC = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshotEpoch is returned by LoadSnapshot for a snapshot of another
// life of the store (the bucket was made again since it was written).
var ErrSnapshotEpoch = errors.New("the snapshot is of another store")

// WriteSnapshot writes the index to w, for LoadSnapshot; epoch names the
// life of the store it was read from (see LoadSnapshot). It returns the
// store revision the snapshot holds and how many twins it wrote. The
// index keeps changing meanwhile: the twins are taken at one revision,
// holding the writer's lock only to collect their pointers (flat twins are
// immutable), and written after.
func (ix *Index) WriteSnapshot(w io.Writer, epoch string) (rev uint64, twins int, err error) {
	type entry struct {
		module bool
		key    string
		t      *flatTwin
	}
	ix.wmu.Lock()
	// The revision is read under the writer's lock: every change at or
	// below it is in the twins. A change applied but not yet counted
	// (apply advances after unlocking) has a higher revision, so the
	// watch that resumes after rev applies it again, to the same effect.
	rev = ix.Revision()
	// Twins go in key order, which a load then need not sort: the key
	// order, with the identities created since its last merge merged.
	var all []entry
	var counts [2]int
	for i, tb := range []*table{ix.devices, ix.modules} {
		if len(tb.pending) > 0 {
			tb.merge()
		}
		all = slices.Grow(all, len(tb.byKey))
		for _, c := range tb.view.Load().chunks {
			for _, n := range c.nodes {
				if t := n.twin.Load(); t != nil {
					all = append(all, entry{i == 1, n.key, t})
					counts[i]++
				}
			}
		}
	}
	ix.wmu.Unlock()
	paths := ix.dict.snapshot()

	crc := crc32.New(snapshotCRC)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	var sw snapshotWriter
	sw.b = append(sw.b, snapshotMagic...)
	sw.str(epoch)
	sw.uvarint(rev)
	sw.uvarint(uint64(counts[0]))
	sw.uvarint(uint64(counts[1]))
	sw.uvarint(uint64(len(paths)))
	for _, p := range paths[firstNamedPath:] {
		sw.uvarint(uint64(p.parent))
		sw.str(p.name)
	}
	if _, err := bw.Write(sw.b); err != nil {
		return 0, 0, err
	}
	var block snapshotWriter
	for start := 0; start < len(all); start += snapshotBlock {
		part := all[start:min(start+snapshotBlock, len(all))]
		block.b = block.b[:0]
		block.uvarint(uint64(len(part)))
		for _, e := range part {
			block.twin(e.module, e.key, e.t)
		}
		sw.b = sw.b[:0]
		sw.uvarint(uint64(len(block.b)))
		if _, err := bw.Write(sw.b); err != nil {
			return 0, 0, err
		}
		if _, err := bw.Write(block.b); err != nil {
			return 0, 0, err
		}
	}
	if err := bw.WriteByte(0); err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	if _, err := w.Write(crc.Sum(nil)); err != nil {
		return 0, 0, err
	}
	return rev, len(all), nil
}

// firstNamedPath is the first path id that is not one of the dictionary's
// own (newPathDict), which every dictionary numbers alike.
const firstNamedPath = reportedPath + 1

// snapshot returns the dictionary's entries in id order.
func (d *pathDict) snapshot() []pathEntry {
	n := d.size()
	cs := *d.chunks.Load()
	out := make([]pathEntry, n)
	for id := range out {
		out[id] = cs[id/dictChunk][id%dictChunk]
	}
	return out
}

// LoadSnapshot fills an empty index from a snapshot that WriteSnapshot
// wrote of a store whose life is epoch, size bytes long (the file's size,
// which bounds what its counts may ask the reader to allocate before the
// checksum at its end is read), and returns the store revision it holds:
// the watch goes on from the revision after it. A store's epoch changes
// when its records are made anew (a bucket deleted and made again),
// since revisions then start again. On an error the index is left
// part-filled: the caller starts from a new one.
func (ix *Index) LoadSnapshot(r io.Reader, size int64, epoch string) (uint64, error) {
	ix.wmu.Lock()
	empty := len(ix.devices.byKey) == 0 && len(ix.modules.byKey) == 0 && ix.Revision() == 0
	ix.wmu.Unlock()
	if !empty || ix.dict.size() != uint32(firstNamedPath) {
		return 0, errors.New("loading a snapshot into an index that is not empty")
	}
	sr := snapshotReader{r: bufio.NewReaderSize(r, 256<<10)}
	if magic := sr.read(len(snapshotMagic)); sr.err != nil || string(magic) != snapshotMagic {
		return 0, errors.New("not an index snapshot of this version")
	}
	if sr.str() != epoch && sr.err == nil {
		return 0, ErrSnapshotEpoch
	}
	rev := sr.uvarint()
	// The maps of keys are made at their size once, not grown a million
	// times; a twin takes more than minSnapshotTwin bytes.
	for _, tb := range []*table{ix.devices, ix.modules} {
		tb.byKey = make(map[string]*node, min(sr.uvarint(), uint64(max(size, 0))/minSnapshotTwin))
	}
	if err := ix.loadPaths(&sr); err != nil {
		return 0, err
	}
	if err := ix.loadTwins(&sr); err != nil {
		return 0, err
	}
	// The checksum covers every byte before it.
	want := sr.sum
	var sum [4]byte
	if _, err := io.ReadFull(sr.r, sum[:]); err != nil {
		return 0, fmt.Errorf("the snapshot ends before its checksum: %w", err)
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return 0, errors.New("the snapshot's checksum does not match: it is damaged")
	}
	if n, _ := sr.r.Read(sum[:1]); n != 0 {
		return 0, errors.New("the snapshot has bytes after its checksum")
	}
	ix.advance(rev)
	return rev, nil
}

func (d *pathDict) size() uint32 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.n
}

// loadPaths reads the path dictionary into the index's, which gives each
// path the id it had: a new dictionary numbers paths in the order they
// are added.
func (ix *Index) loadPaths(sr *snapshotReader) error {
	n := sr.uvarint()
	if n < uint64(firstNamedPath) || n > math.MaxUint32 {
		return errors.New("the snapshot's path dictionary is damaged")
	}
	var key []byte
	for id := uint64(firstNamedPath); id < n && sr.err == nil; id++ {
		parent := sr.uvarint()
		name := sr.bytes()
		if parent >= id {
			return errors.New("the snapshot's path dictionary is damaged")
		}
		key = pathKey(key, pathID(parent), name)
		if got := ix.dict.child(key); uint64(got) != id {
			return errors.New("the snapshot's path dictionary names a path twice")
		}
	}
	return sr.err
}

// loadedBlock is a block's twins, decoded.
type loadedBlock struct {
	seq     uint64 // the block's place in the file
	twins   []*flatTwin
	modules []bool
	keys    []string
	err     error
}

// loadTwins reads the blocks, decodes them on every processor and puts
// their twins in the index in the file's order (key order, which the merge
// at the end then finds sorted).
func (ix *Index) loadTwins(sr *snapshotReader) error {
	ix.setReplaying(true)
	defer ix.setReplaying(false)
	type block struct {
		seq  uint64
		data []byte
	}
	blocks := make(chan block, 4)
	decoded := make(chan loadedBlock, 4)
	// Decoded twins keep nothing of their block's bytes (strings and
	// values are copies), so the blocks' buffers go round again.
	free := make(chan []byte, 8)
	var workers sync.WaitGroup
	paths := ix.dict.size()
	for range runtime.GOMAXPROCS(0) {
		workers.Go(func() {
			for b := range blocks {
				lb := decodeBlock(b.data, paths)
				lb.seq = b.seq
				decoded <- lb
				select {
				case free <- b.data:
				default:
				}
			}
		})
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(blocks)
		for seq := uint64(0); ; seq++ {
			size := sr.uvarint()
			if sr.err != nil || size == 0 {
				readErr <- sr.err
				return
			}
			if size > maxSnapshotBlock {
				readErr <- errors.New("the snapshot's block is too long: it is damaged")
				return
			}
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			b := sr.readInto(buf, int(size))
			if sr.err != nil {
				readErr <- sr.err
				return
			}
			blocks <- block{seq, b}
		}
	}()
	go func() {
		workers.Wait()
		close(decoded)
	}()
	var err error
	applyInOrder(decoded, func(lb loadedBlock) uint64 { return lb.seq }, func(lb loadedBlock) {
		if err == nil {
			err = lb.err
		}
		if err != nil {
			return // drain: the workers stop when the reader does
		}
		ix.wmu.Lock()
		for i, t := range lb.twins {
			tb := ix.devices
			if lb.modules[i] {
				tb = ix.modules
			}
			ix.set(tb, lb.keys[i], t)
		}
		ix.wmu.Unlock()
	})
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

// decodeBlock decodes a block's twins; paths is the size of the
// dictionary their fields may name.
func decodeBlock(b []byte, paths uint32) loadedBlock {
	sr := snapshotReader{b: b}
	n := sr.uvarint()
	if n > uint64(len(b)) {
		return loadedBlock{err: errors.New("the snapshot's block is damaged")}
	}
	lb := loadedBlock{twins: make([]*flatTwin, 0, n), modules: make([]bool, 0, n), keys: make([]string, 0, n)}
	var scratch twinScratch
	for range n {
		module, key, t := sr.twin(&scratch, paths)
		if sr.err != nil {
			return loadedBlock{err: sr.err}
		}
		lb.twins, lb.modules, lb.keys = append(lb.twins, t), append(lb.modules, module), append(lb.keys, key)
	}
	if sr.i != len(b) {
		return loadedBlock{err: errors.New("the snapshot's block has bytes after its twins")}
	}
	return lb
}

// snapshotWriter appends a snapshot's values to b.
type snapshotWriter struct{ b []byte }

func (w *snapshotWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *snapshotWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *snapshotWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *snapshotWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// optStr writes a *string: 0 for nil, else 1 and the string.
func (w *snapshotWriter) optStr(s *string) {
	w.bool(s != nil)
	if s != nil {
		w.str(*s)
	}
}

// time writes an instant to the second and nanosecond, and its zone's
// offset: twinhub.Time is written in UTC whatever its zone, but a
// snapshot gives back what the store's decoder read.
func (w *snapshotWriter) time(t twinhub.Time) {
	if t.IsZero() {
		w.b = append(w.b, 0)
		return
	}
	_, offset := t.Zone()
	if t.Location() == time.UTC {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 2)
		w.varint(int64(offset))
	}
	w.varint(t.Unix())
	w.uvarint(uint64(t.Nanosecond()))
}

// twin writes one twin of the devices (module false) or modules table.
func (w *snapshotWriter) twin(module bool, key string, t *flatTwin) {
	w.bool(module)
	w.str(key)
	w.uvarint(t.rev)
	w.varint(t.id.version)
	w.varint(t.version)
	w.varint(t.desiredVersion)
	w.varint(t.reportedVersion)
	w.str(t.modelID)
	if t.configs == nil {
		w.uvarint(0)
	} else {
		// In id order: a snapshot of the same index is the same bytes.
		w.uvarint(uint64(len(t.configs)) + 1)
		for _, id := range slices.Sorted(maps.Keys(t.configs)) {
			w.str(id)
			w.str(t.configs[id])
		}
	}
	w.uvarint(uint64(t.desiredAt))
	w.uvarint(uint64(t.reportedAt))
	w.uvarint(uint64(t.desiredStamp))
	w.uvarint(uint64(t.reportedStamp))
	w.bool(t.nilTags)
	w.bool(t.exact)
	w.uvarint(uint64(len(t.stamps)))
	for _, s := range t.stamps {
		w.varint(s.sec)
		w.uvarint(uint64(s.nsec))
		w.bool(s.zero)
		w.varint(s.ver)
	}
	w.str(t.values())
	w.uvarint(uint64(len(t.fields)))
	for _, f := range t.fields {
		w.uvarint(uint64(f.path))
		w.b = append(w.b, byte(f.kind))
		w.uvarint(uint64(f.stamp))
		w.uvarint(f.v)
	}
	if t.refs == nil {
		w.uvarint(0)
	} else {
		// The refs came from JSON (the watch reads nothing else) and go
		// back to it; the store's decoder reads them back as they were.
		w.uvarint(uint64(len(*t.refs)) + 1)
		for _, v := range *t.refs {
			data, err := recordjson.AppendJSON(nil, v)
			if err != nil {
				data, _ = json.Marshal(nil)
			}
			w.str(string(data))
		}
	}
	if !t.id.isModule {
		w.b = append(w.b, 0)
		d := t.id.deviceValue()
		w.device(&d)
	} else {
		w.b = append(w.b, 1)
		m := t.id.moduleValue()
		w.module(&m)
	}
}

func (w *snapshotWriter) auth(a *twinhub.Authentication) {
	w.str(a.Type)
	w.str(a.SymmetricKey.PrimaryKey)
	w.str(a.SymmetricKey.SecondaryKey)
	w.optStr(a.X509Thumbprint.PrimaryThumbprint)
	w.optStr(a.X509Thumbprint.SecondaryThumbprint)
}

// device writes every field of a Device; TestSnapshotIdentities fails
// when a field is added to Device and not here.
func (w *snapshotWriter) device(d *twinhub.Device) {
	w.str(d.DeviceID)
	w.str(d.GenerationID)
	w.str(d.ETag)
	w.str(d.ConnectionState)
	w.str(d.Status)
	w.optStr(d.StatusReason)
	w.time(d.ConnectionStateUpdatedTime)
	w.time(d.StatusUpdatedTime)
	w.time(d.LastActivityTime)
	w.varint(int64(d.CloudToDeviceMessageCount))
	w.auth(&d.Authentication)
	w.bool(d.Capabilities.IoTEdge)
	w.optStr(d.DeviceScope)
	if d.ParentScopes == nil {
		w.uvarint(0)
	} else {
		w.uvarint(uint64(len(d.ParentScopes)) + 1)
		for _, s := range d.ParentScopes {
			w.str(s)
		}
	}
}

// module writes every field of a Module (see device).
func (w *snapshotWriter) module(m *twinhub.Module) {
	w.str(m.ModuleID)
	w.str(m.DeviceID)
	w.str(m.ManagedBy)
	w.str(m.GenerationID)
	w.str(m.ETag)
	w.str(m.ConnectionState)
	w.time(m.ConnectionStateUpdatedTime)
	w.time(m.LastActivityTime)
	w.varint(int64(m.CloudToDeviceMessageCount))
	w.auth(&m.Authentication)
}

// snapshotReader reads what snapshotWriter wrote, from b or, when r is
// set, from r, keeping the checksum of what it read from r in sum. The
// first failure sticks in err and every later read returns zero values.
type snapshotReader struct {
	b   []byte
	i   int
	r   *bufio.Reader
	sum uint32
	err error
}

// read returns the next n bytes of the stream (r), a copy.
func (r *snapshotReader) read(n int) []byte { return r.readInto(nil, n) }

// readInto is read into buf when it has room. Beyond 4 MiB (a block is
// about a megabyte) it allocates as the bytes arrive, so that a damaged
// length makes it fail at the end of the stream instead of allocating
// what the length says.
func (r *snapshotReader) readInto(buf []byte, n int) []byte {
	if r.err != nil {
		return nil
	}
	b := buf[:0]
	if cap(b) < n {
		b = make([]byte, 0, min(n, 4<<20))
	}
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), len(b)))
		}
		m, err := io.ReadFull(r.r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			r.err = fmt.Errorf("the snapshot ends early: %w", err)
			return nil
		}
	}
	r.sum = crc32.Update(r.sum, snapshotCRC, b)
	return b
}

var errSnapshotDamaged = errors.New("the snapshot is damaged")

// fail records damage, unless an earlier failure is there.
func (r *snapshotReader) fail() {
	if r.err == nil {
		r.err = errSnapshotDamaged
	}
}

func (r *snapshotReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.r != nil {
		c, err := r.r.ReadByte()
		if err != nil {
			r.err = fmt.Errorf("the snapshot ends early: %w", err)
			return 0
		}
		r.sum = crc32.Update(r.sum, snapshotCRC, []byte{c})
		return c
	}
	if r.i >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *snapshotReader) uvarint() uint64 {
	var v uint64
	for shift := 0; shift < 70 && r.err == nil; shift += 7 {
		c := r.byte()
		if shift == 63 && c > 1 {
			break // overflows
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	r.fail()
	return 0
}

func (r *snapshotReader) varint() int64 {
	u := r.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// uint32 reads a uvarint that must be at most limit.
func (r *snapshotReader) bounded(limit uint64) uint64 {
	v := r.uvarint()
	if v > limit {
		r.fail()
		return 0
	}
	return v
}

func (r *snapshotReader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail()
	return false
}

// bytes reads a string's bytes: a slice of the block, or a copy when
// reading from the stream.
func (r *snapshotReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if r.r != nil {
		if n > maxSnapshotBlock {
			r.fail()
			return nil
		}
		return r.read(int(n))
	}
	if n > uint64(len(r.b)-r.i) {
		r.fail()
		return nil
	}
	b := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return b
}

func (r *snapshotReader) str() string { return string(r.bytes()) }

// known returns s if it is one of the program's constants, so that a
// twin's identity reads without an allocation, else a copy.
func (r *snapshotReader) known(candidates ...string) string {
	b := r.bytes()
	for _, c := range candidates {
		if string(b) == c {
			return c
		}
	}
	return string(b)
}

func (r *snapshotReader) optStr() *string {
	if !r.bool() {
		return nil
	}
	s := r.str()
	return &s
}

func (r *snapshotReader) time() twinhub.Time {
	var loc *time.Location
	switch r.byte() {
	case 0:
		return twinhub.Time{}
	case 1:
		loc = time.UTC
	case 2:
		offset := r.varint()
		if offset < -24*3600 || offset > 24*3600 {
			r.fail()
			return twinhub.Time{}
		}
		loc = time.FixedZone("", int(offset))
	default:
		r.fail()
		return twinhub.Time{}
	}
	sec := r.varint()
	nsec := r.bounded(999_999_999)
	return twinhub.Time{Time: time.Unix(sec, int64(nsec)).In(loc)}
}

// twinScratch is what snapshotReader.twin reads a twin into before it is
// copied into the twin's own allocation, reused from twin to twin.
type twinScratch struct {
	fields []field
	stamps []stamp
	data   []byte
	dev    twinhub.Device
	mod    twinhub.Module
}

// twin reads one twin written by snapshotWriter.twin, checking that what
// the index's code indexes with is in bounds.
func (r *snapshotReader) twin(scratch *twinScratch, paths uint32) (module bool, key string, ft *flatTwin) {
	var t flatTwin
	module = r.bool()
	key = r.str()
	t.rev = r.uvarint()
	identityVersion := r.varint()
	t.version = r.varint()
	t.desiredVersion = r.varint()
	t.reportedVersion = r.varint()
	t.modelID = r.str()
	if n := r.bounded(uint64(len(r.b))); n > 0 {
		t.configs = make(map[string]string, n-1)
		for range n - 1 {
			id := r.str()
			t.configs[id] = r.str()
		}
	}
	t.desiredAt = uint32(r.bounded(math.MaxUint32))
	t.reportedAt = uint32(r.bounded(math.MaxUint32))
	t.desiredStamp = uint16(r.bounded(noStamp))
	t.reportedStamp = uint16(r.bounded(noStamp))
	t.nilTags = r.bool()
	t.exact = r.bool()
	if n := r.bounded(min(noStamp, uint64(len(r.b)))); n > 0 {
		t.stamps = slices.Grow(scratch.stamps[:0], int(n))[:n] // placeTwin copies them into the twin
		scratch.stamps = t.stamps
		for i := range t.stamps {
			s := &t.stamps[i]
			s.sec = r.varint()
			nsec := r.bounded(999_999_999)
			s.nsec = int32(nsec)
			s.zero = r.bool()
			s.ver = r.varint()
		}
	}
	data := r.bytes()
	n := r.bounded(uint64(len(r.b)))
	fields := scratch.fields[:0]
	for range n {
		var f field
		f.path = pathID(r.bounded(uint64(paths) - 1))
		f.kind = fieldKind(r.byte())
		f.stamp = uint16(r.bounded(noStamp))
		f.v = r.uvarint()
		fields = append(fields, f)
	}
	scratch.fields = fields
	if n := r.bounded(uint64(len(r.b))); n > 0 {
		refs := make([]any, n-1)
		for i := range refs {
			d := recordjson.NewDecoder(r.bytes())
			v, ok := d.Value()
			if !ok || !d.End() {
				r.fail()
			}
			refs[i] = v
		}
		t.refs = &refs
	}
	var dev *twinhub.Device
	var mod *twinhub.Module
	switch r.byte() {
	case 0:
		dev = &scratch.dev
		r.device(dev)
	case 1:
		mod = &scratch.mod
		r.module(mod)
	default:
		r.fail()
	}
	if r.err != nil {
		return false, "", nil
	}
	if err := t.checkShape(module, key, dev, mod, fields, len(data)); err != nil {
		r.err = err
		return false, "", nil
	}
	// data is the block's: the identity's text goes after a copy.
	var exact bool
	ft, scratch.data, exact = placeTwin(&t, fields, append(scratch.data[:0], data...), dev, mod, identityVersion)
	ft.exact = ft.exact && exact
	return module, key, ft
}

// checkShape checks what the index's code takes for granted of a twin
// (flatTwin, field): that the key is the identity's, and that sections,
// objects, stamps, strings and refs are where the fields say.
func (t *flatTwin) checkShape(module bool, key string, dev *twinhub.Device, mod *twinhub.Module, fields []field, data int) error {
	damaged := func(what string) error { return fmt.Errorf("the snapshot's twin %q is damaged: %s", key, what) }
	switch {
	case module && (mod == nil || key != mod.DeviceID+"\x00"+mod.ModuleID):
		return damaged("not the module of its key")
	case !module && (dev == nil || key != dev.DeviceID):
		return damaged("not the device of its key")
	case t.desiredAt > t.reportedAt || int(t.reportedAt) > len(fields):
		return damaged("sections out of bounds")
	case int(t.desiredStamp) >= len(t.stamps) || int(t.reportedStamp) >= len(t.stamps):
		return damaged("section stamps out of bounds")
	}
	refs := 0
	if t.refs != nil {
		refs = len(*t.refs)
	}
	for i, f := range fields {
		end := len(fields)
		if i < int(t.desiredAt) {
			end = int(t.desiredAt)
		} else if i < int(t.reportedAt) {
			end = int(t.reportedAt)
		}
		switch {
		case f.stamp != noStamp && int(f.stamp) >= len(t.stamps):
			return damaged("a field's stamp out of bounds")
		case f.kind > fMeta:
			return damaged("a field of no known kind")
		case f.kind == fString && (f.v>>32)+(f.v&math.MaxUint32) > uint64(data):
			return damaged("a string out of bounds")
		case f.kind == fObject && f.v > uint64(end-i-1):
			return damaged("an object past its section")
		case f.kind == fRef && f.v >= uint64(refs):
			return damaged("a ref out of bounds")
		}
	}
	return nil
}

func (r *snapshotReader) auth(a *twinhub.Authentication) {
	a.Type = r.known(twinhub.AuthSAS, twinhub.AuthSelfSigned, twinhub.AuthCertificateAuthority, twinhub.AuthNone)
	a.SymmetricKey.PrimaryKey = r.str()
	a.SymmetricKey.SecondaryKey = r.str()
	a.X509Thumbprint.PrimaryThumbprint = r.optStr()
	a.X509Thumbprint.SecondaryThumbprint = r.optStr()
}

// device reads a Device into d, which it overwrites whole.
func (r *snapshotReader) device(d *twinhub.Device) {
	*d = twinhub.Device{}
	d.DeviceID = r.str()
	d.GenerationID = r.str()
	d.ETag = r.str()
	d.ConnectionState = r.known(twinhub.StateConnected, twinhub.StateDisconnected)
	d.Status = r.known(twinhub.StatusEnabled, twinhub.StatusDisabled)
	d.StatusReason = r.optStr()
	d.ConnectionStateUpdatedTime = r.time()
	d.StatusUpdatedTime = r.time()
	d.LastActivityTime = r.time()
	d.CloudToDeviceMessageCount = int(r.varint())
	r.auth(&d.Authentication)
	d.Capabilities.IoTEdge = r.bool()
	d.DeviceScope = r.optStr()
	if n := r.bounded(uint64(len(r.b))); n > 0 {
		d.ParentScopes = make(twinhub.Scopes, n-1)
		for i := range d.ParentScopes {
			d.ParentScopes[i] = r.str()
		}
	}
}

// module reads a Module into m, which it overwrites whole.
func (r *snapshotReader) module(m *twinhub.Module) {
	*m = twinhub.Module{}
	m.ModuleID = r.str()
	m.DeviceID = r.str()
	m.ManagedBy = r.str()
	m.GenerationID = r.str()
	m.ETag = r.str()
	m.ConnectionState = r.known(twinhub.StateConnected, twinhub.StateDisconnected)
	m.ConnectionStateUpdatedTime = r.time()
	m.LastActivityTime = r.time()
	m.CloudToDeviceMessageCount = int(r.varint())
	r.auth(&m.Authentication)
}
