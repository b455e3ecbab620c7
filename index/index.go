package index

import (
	"context"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twinhub/twinhub"
)

// index is the node's in-memory view of every record, fed by a watch on
// the store, and on a node that is its store's only writer by that node's
// own writes as they are acknowledged (ApplyWritten). Queries, listings
// and statistics read it. Before it answers, a reader waits until the
// index holds every write acknowledged before it arrived: it waits for
// the watch to reach the store's last revision, or on a sole writer the
// last revision it did not apply itself (hub/writemark.go).
//
// Each collection (device twins, module twins) is a table of nodes in key
// order: a node is one identity, and holds the current compact form of its
// twin (flatTwin, immutable, twin.go) behind an atomic pointer. An
// update builds a new flatTwin and swaps the pointer (and the copy of it
// in the node's chunk, which scans read); readers never lock to scan. The
// key order lives in an immutable list of chunks that the writer replaces,
// copying only the chunks that change, when identities are created or
// deleted; updates leave it alone. Equality conditions are answered from
// hash indexes (hash.go), built on first use and then kept current.
// Queries are planned and run in query.go; the watch's records come in
// through watch.go.
//
// There is one writer at a time: the store's watch, which applies changes
// in revision order, or a hub applying its own acknowledged write ahead of
// the watch (ApplyWritten); wmu serialises them with the occasional reader
// that merges new identities into the key order or builds a hash index.
type Index struct {
	wmu     sync.Mutex
	dict    *pathDict
	devices *table
	modules *table
	build   twinBuilder
	// builders flatten the writes of ApplyWritten, outside wmu.
	builders sync.Pool
	// replaying is set while the watch replays the store at start-up:
	// new identities are put in key order once, at the end.
	replaying bool

	// rev is the store revision the index has seen: read at any time
	// (Revision), changed holding mu, with advanced.
	mu  sync.Mutex
	rev atomic.Uint64
	// advanced is closed and replaced whenever rev moves, waking waiters.
	advanced chan struct{}

	// Counts for GET /statistics, kept by apply.
	devicesTotal, devicesEnabled, devicesConnected atomic.Int64
}

// node is one identity of a table. Its key never changes; twin is nil
// once the identity is deleted (a later identity with the same key gets a
// new node).
type node struct {
	key  string // the device id, or the device id, "\x00" and the module id
	twin atomic.Pointer[flatTwin]
	// Where the node is in the key order, for the writer to update the
	// chunk's copy of twin; chunk is nil while the node is pending.
	chunk *chunk
	at    int
}

// nodeKey orders identities by device id, then module id: ids have no
// control characters, so "\x00" sorts the device before its modules and a
// device's modules before the next device id.
func nodeKey(k twinhub.Key) string {
	if k.ModuleID == "" {
		return k.DeviceID
	}
	return k.DeviceID + "\x00" + k.ModuleID
}

// table is one collection: device twins or module twins.
type table struct {
	// byKey holds the live nodes, pending ones included. The writer
	// changes it holding keysMu; readers look keys up (lookup) holding it
	// for reading.
	byKey   map[string]*node
	keysMu  sync.RWMutex
	pending []*node // created since the last merge, in no order; writer only
	dead    int     // deleted nodes still in view; writer only
	// npending is len(pending), for readers, who merge before they read.
	npending atomic.Int64
	live     atomic.Int64
	view     atomic.Pointer[tableView]
	hashes   hashSet
}

// tableView is the key order of a table at one moment: chunks of nodes,
// sorted, each chunk's nodes sorted. It is immutable.
type tableView struct {
	chunks []*chunk
}

// chunk is a run of nodes in key order. twins holds the nodes' twins
// too, kept current by the writer, so that a scan reads them in a row
// instead of going to every node.
type chunk struct {
	first string // key of nodes[0]
	nodes []*node
	twins []atomic.Pointer[flatTwin]
}

// chunkSize bounds a chunk: inserting into it copies this many pointers.
const chunkSize = 512

func newTable() *table {
	t := &table{byKey: map[string]*node{}}
	t.view.Store(&tableView{})
	t.hashes.byAttr = map[attr]*hashIndex{}
	return t
}

// NewIndex makes an empty index; Watch fills it from a store.
func NewIndex() *Index {
	d := newPathDict()
	ix := &Index{
		dict:     d,
		devices:  newTable(),
		modules:  newTable(),
		build:    twinBuilder{dict: d},
		advanced: make(chan struct{}),
	}
	ix.builders.New = func() any { return &twinBuilder{dict: d} }
	return ix
}

func (ix *Index) table(k twinhub.Key) *table {
	if k.ModuleID != "" {
		return ix.modules
	}
	return ix.devices
}

// apply records one change seen by the watch (r is nil for a deletion).
// A record that is not of the identity k is left out, but its revision
// counts as seen.
func (ix *Index) apply(k twinhub.Key, r *twinhub.Record, rev uint64) error {
	var err error
	ix.wmu.Lock()
	switch {
	case r == nil:
		ix.setUnlessNewer(ix.table(k), nodeKey(k), nil, rev)
	case (r.Device == nil) == (r.Module == nil):
		err = indexError("the record holds neither or both of a device and a module")
	case (k.ModuleID != "") != (r.Module != nil):
		err = indexError("the record is not of the identity its key names")
	default:
		t := ix.build.flatten(r)
		t.rev = rev
		ix.setUnlessNewer(ix.table(k), nodeKey(k), t, rev)
	}
	ix.wmu.Unlock()
	ix.advance(rev)
	return err
}

// setReplaying starts or ends a replay of the store (see index.replaying);
// at its end, new identities go in key order.
func (ix *Index) setReplaying(on bool) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.replaying = on
	if !on {
		for _, tb := range []*table{ix.devices, ix.modules} {
			if len(tb.pending) > 0 || tb.dead > 0 {
				tb.merge()
			}
		}
	}
}

// set makes t the twin of key (nil: deletes it). The caller holds wmu.
func (ix *Index) set(tb *table, key string, t *flatTwin) {
	n := tb.byKey[key]
	var old *flatTwin
	if n != nil {
		old = n.twin.Load()
	}
	switch {
	case t == nil && n == nil:
		return
	case t == nil:
		tb.keysMu.Lock()
		delete(tb.byKey, key)
		tb.keysMu.Unlock()
		n.twin.Store(nil)
		if n.chunk != nil {
			n.chunk.twins[n.at].Store(nil)
		}
		tb.dead++
		tb.live.Add(-1)
	case n == nil:
		n = newNode(key)
		key = n.key
		if t.id.key == key {
			t.id.key = key // one copy for the table, the node and the twin
		}
		n.twin.Store(t)
		tb.keysMu.Lock()
		tb.byKey[key] = n
		tb.keysMu.Unlock()
		tb.pending = append(tb.pending, n)
		tb.npending.Store(int64(len(tb.pending)))
		tb.live.Add(1)
	default:
		if t != nil && t.id.key == n.key {
			t.id.key = n.key // one string for both
		}
		n.twin.Store(t)
		if n.chunk != nil {
			n.chunk.twins[n.at].Store(t)
		}
	}
	tb.hashes.update(ix.dict, n, old, t)
	if tb == ix.devices {
		ix.count(old, -1)
		ix.count(t, 1)
	}
	// Merging costs about one pointer copy per node of the table, so new
	// identities wait until they are a sixteenth of it (a reader merges
	// them sooner if it comes first).
	live := len(tb.byKey)
	if !ix.replaying && (len(tb.pending) >= max(256, live/16) || tb.dead >= max(1024, live/8)) {
		tb.merge()
	}
}

func (ix *Index) count(t *flatTwin, delta int64) {
	if t == nil || t.id.isModule {
		return
	}
	ix.devicesTotal.Add(delta)
	if t.id.status() == twinhub.StatusEnabled {
		ix.devicesEnabled.Add(delta)
	}
	if t.id.connectionState() == twinhub.StateConnected {
		ix.devicesConnected.Add(delta)
	}
}

func (ix *Index) advance(rev uint64) {
	ix.mu.Lock()
	if rev > ix.rev.Load() {
		ix.rev.Store(rev)
		close(ix.advanced)
		ix.advanced = make(chan struct{})
	}
	ix.mu.Unlock()
}

// Revision is the store revision the index has seen.
func (ix *Index) Revision() uint64 { return ix.rev.Load() }

// RevisionOf says at which store revision the index holds k's twin, when
// the index has seen revision seen: found is false when k has no twin
// then. known is false when the index has not seen revision seen yet (the
// caller asks the store rather than wait).
func (ix *Index) RevisionOf(k twinhub.Key, seen uint64) (rev uint64, found, known bool) {
	t, known := ix.twinAt(k, seen)
	if t == nil {
		return 0, false, known
	}
	return t.rev, true, true
}

// twinAt returns k's twin (nil if none) once the index has seen revision
// seen; known is false when it has not, yet.
func (ix *Index) twinAt(k twinhub.Key, seen uint64) (t *flatTwin, known bool) {
	if ix.Revision() < seen {
		return nil, false
	}
	if n := ix.table(k).lookup(nodeKey(k)); n != nil {
		t = n.twin.Load()
	}
	return t, true
}

// lookup returns the live node of key (nil if none), created since the
// last merge or not: a map lookup, where a search of the key order
// (tableView.get) costs a cache miss at each of its steps.
func (tb *table) lookup(key string) *node {
	tb.keysMu.RLock()
	n := tb.byKey[key]
	tb.keysMu.RUnlock()
	return n
}

// WaitFor blocks until the index has seen revision rev, then makes sure
// that identities created before it are in the key order.
func (ix *Index) WaitFor(ctx context.Context, rev uint64) error {
	if err := ix.WaitRevision(ctx, rev); err != nil {
		return err
	}
	ix.mergePending(ix.devices)
	ix.mergePending(ix.modules)
	return nil
}

// WaitRevision blocks until the index has seen revision rev (for lookups
// by key, which need no merge: RevisionOf, Record).
func (ix *Index) WaitRevision(ctx context.Context, rev uint64) error {
	for ix.Revision() < rev {
		ix.mu.Lock()
		done, ch := ix.rev.Load() >= rev, ix.advanced
		ix.mu.Unlock()
		if done {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// mergePending puts the identities created since tb's last merge into its
// key order, where readers look them up.
func (ix *Index) mergePending(tb *table) {
	if tb.npending.Load() > 0 {
		ix.wmu.Lock()
		if len(tb.pending) > 0 {
			tb.merge()
		}
		ix.wmu.Unlock()
	}
}

// merge puts the pending nodes into the key order and drops deleted ones,
// publishing a new view that shares the chunks it did not have to change.
// The caller holds wmu.
func (tb *table) merge() {
	pend := tb.pending
	tb.pending = nil
	sortNodesParallel(pend)
	old := tb.view.Load().chunks
	live := len(tb.byKey)
	// Rebuild every chunk when deleted nodes, or chunks left small by
	// deletions, have piled up.
	all := tb.dead >= max(1024, live/8) || len(old) > 2*(live/chunkSize)+8
	var out []*chunk
	var buf []*node // nodes of rebuilt chunks, not yet cut into chunks
	flush := func() {
		for len(buf) > 0 {
			n := len(buf)
			if n > chunkSize {
				// Cut evenly, so that no chunk is left tiny.
				parts := (n + chunkSize - 1) / chunkSize
				n = (n + parts - 1) / parts
			}
			c := &chunk{first: buf[0].key, nodes: slices.Clone(buf[:n]), twins: make([]atomic.Pointer[flatTwin], n)}
			for i, nd := range c.nodes {
				nd.chunk, nd.at = c, i
				c.twins[i].Store(nd.twin.Load())
			}
			out = append(out, c)
			buf = buf[n:]
		}
		buf = nil
	}
	keep := func(n *node) {
		if n.twin.Load() == nil {
			tb.dead--
			return
		}
		buf = append(buf, n)
	}
	j := 0
	for ci, c := range old {
		hi := len(pend)
		if ci+1 < len(old) {
			next := old[ci+1].first
			hi = j + sort.Search(len(pend)-j, func(x int) bool { return pend[j+x].key >= next })
		}
		ins := pend[j:hi]
		j = hi
		if len(ins) == 0 && !all {
			flush()
			out = append(out, c)
			continue
		}
		a := c.nodes
		for len(a) > 0 || len(ins) > 0 {
			if len(ins) == 0 || len(a) > 0 && a[0].key < ins[0].key {
				keep(a[0])
				a = a[1:]
			} else {
				keep(ins[0])
				ins = ins[1:]
			}
		}
	}
	for _, n := range pend[j:] {
		keep(n)
	}
	flush()
	if all {
		tb.dead = 0
	}
	tb.view.Store(&tableView{chunks: out})
	// Only now: a reader that sees no pending nodes reads the view without
	// taking wmu, so the view must hold them first (WaitFor).
	tb.npending.Store(0)
}

// seek returns the position of the first node whose key is greater than
// after (or, with inclusive, not less).
func (v *tableView) seek(after string, inclusive bool) (ci, ni int) {
	ci = sort.Search(len(v.chunks), func(i int) bool { return v.chunks[i].first > after }) - 1
	if ci < 0 {
		return 0, 0
	}
	nodes := v.chunks[ci].nodes
	ni = sort.Search(len(nodes), func(i int) bool {
		if inclusive {
			return nodes[i].key >= after
		}
		return nodes[i].key > after
	})
	if ni == len(nodes) {
		ci, ni = ci+1, 0
	}
	return ci, ni
}

// size is the number of nodes in the view, deleted ones included.
func (v *tableView) size() int {
	n := 0
	for _, c := range v.chunks {
		n += len(c.nodes)
	}
	return n
}

// each calls fn for every live twin from position (ci, ni) on, in key
// order, until fn returns false.
func (v *tableView) each(ci, ni int, fn func(*node, *flatTwin) bool) {
	for ; ci < len(v.chunks); ci, ni = ci+1, 0 {
		for _, n := range v.chunks[ci].nodes[ni:] {
			if t := n.twin.Load(); t != nil && !fn(n, t) {
				return
			}
		}
	}
}

// get returns the live node with the key, if any.
func (v *tableView) get(key string) (*node, *flatTwin) {
	ci, ni := v.seek(key, true)
	if ci < len(v.chunks) {
		if n := v.chunks[ci].nodes[ni]; n.key == key {
			if t := n.twin.Load(); t != nil {
				return n, t
			}
		}
	}
	return nil, nil
}

// ListDevices returns up to max devices (all when max <= 0) in id order.
// The caller has waited for the index to catch up.
func (ix *Index) ListDevices(max int) []*twinhub.Device {
	out := []*twinhub.Device{}
	v := ix.devices.view.Load()
	v.each(0, 0, func(_ *node, t *flatTwin) bool {
		out = append(out, t.id.device())
		return max <= 0 || len(out) < max
	})
	return out
}

// ListModules returns the modules of a device in id order.
func (ix *Index) ListModules(deviceID string) []*twinhub.Module {
	out := []*twinhub.Module{}
	prefix := deviceID + "\x00"
	v := ix.modules.view.Load()
	ci, ni := v.seek(prefix, true)
	v.each(ci, ni, func(n *node, t *flatTwin) bool {
		if !strings.HasPrefix(n.key, prefix) {
			return false
		}
		out = append(out, t.id.module())
		return true
	})
	return out
}

// Statistics counts devices by status and connection state.
func (ix *Index) Statistics() (twinhub.DeviceStatistics, twinhub.ServiceStatistics) {
	total, enabled := ix.devicesTotal.Load(), ix.devicesEnabled.Load()
	return twinhub.DeviceStatistics{
			TotalDeviceCount:    int(total),
			EnabledDeviceCount:  int(enabled),
			DisabledDeviceCount: int(max(total-enabled, 0)),
		}, twinhub.ServiceStatistics{
			ConnectedDeviceCount: int(ix.devicesConnected.Load()),
		}
}

func sortNodes(ns []*node) {
	slices.SortFunc(ns, func(a, b *node) int { return strings.Compare(a.key, b.key) })
}

// sortNodesParallel is sortNodes, splitting a long sort among the
// processors (as when a node starts and puts a million identities in
// order at once).
func sortNodesParallel(ns []*node) {
	parts := min(runtime.GOMAXPROCS(0), len(ns)/(1<<15))
	if parts < 2 {
		sortNodes(ns)
		return
	}
	width := (len(ns) + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := 0; lo < len(ns); lo += width {
		wg.Go(func() { sortNodes(ns[lo:min(lo+width, len(ns))]) })
	}
	wg.Wait()
	var runs [][]*node
	for lo := 0; lo < len(ns); lo += width {
		runs = append(runs, ns[lo:min(lo+width, len(ns))])
	}
	copy(ns, mergeNodes(runs))
}

// mergeNodes merges runs of nodes, each in key order, into one in key
// order: one allocation, and a heap of the runs' heads, so that each node
// costs log(len(runs)) comparisons of keys near at hand (pairwise merges
// allocated a slice a level, which at a million twins cost more in
// collections than the merge saved). One run is returned as it is.
func mergeNodes(runs [][]*node) []*node {
	switch len(runs) {
	case 0:
		return nil
	case 1:
		return runs[0]
	}
	total := 0
	heads := make([][]*node, 0, len(runs))
	for _, r := range runs {
		if len(r) > 0 {
			heads = append(heads, r)
			total += len(r)
		}
	}
	less := func(i, j int) bool { return heads[i][0].key < heads[j][0].key }
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= len(heads) {
				return
			}
			if c+1 < len(heads) && less(c+1, c) {
				c++
			}
			if !less(c, i) {
				return
			}
			heads[i], heads[c] = heads[c], heads[i]
			i = c
		}
	}
	for i := len(heads)/2 - 1; i >= 0; i-- {
		down(i)
	}
	out := make([]*node, 0, total)
	for len(heads) > 0 {
		out = append(out, heads[0][0])
		if heads[0] = heads[0][1:]; len(heads[0]) == 0 {
			last := len(heads) - 1
			heads[0] = heads[last]
			heads = heads[:last]
		}
		down(0)
	}
	return out
}

// compactNodes drops repeats from sorted nodes.
func compactNodes(ns []*node) []*node {
	return slices.CompactFunc(ns, func(a, b *node) bool { return a == b })
}
