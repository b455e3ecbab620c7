package index

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub/query"
)

// Hash indexes answer path = constant (and path IN [...]) without a scan:
// for one property path of one table, the nodes by the primitive value
// they hold there. An index is built the first time a query could use it,
// which takes one pass over the table with the writer held off, and from
// then on apply keeps it current. A table keeps at most maxHashIndexes;
// past that, the one unused for longest is dropped.

// attr is something a twin holds one value of: a system property or a
// property of tags, desired or reported properties.
type attr struct {
	sys sysField
	id  pathID
	sec section
	cfg string // the configuration of sysConfigStatus
}

func (a attr) of(d *pathDict, t *flatTwin) query.Value {
	if a.sys == sysConfigStatus {
		if status, ok := t.configs[a.cfg]; ok {
			return strValue(status)
		}
		return query.Value{}
	}
	if a.sys != sysNone {
		return t.sys(a.sys)
	}
	i := t.find(a.id, a.sec)
	if i < 0 {
		return query.Value{}
	}
	return t.value(d, i)
}

// hkey is a primitive value as a map key: values that = finds equal have
// equal keys.
type hkey struct {
	kind query.Kind
	num  float64
	str  string
}

func hkeyOf(v query.Value) (hkey, bool) {
	switch v.Kind {
	case query.Null:
		return hkey{kind: query.Null}, true
	case query.Bool:
		if v.Bool {
			return hkey{kind: query.Bool, num: 1}, true
		}
		return hkey{kind: query.Bool}, true
	case query.Number:
		if math.IsNaN(v.Num) {
			return hkey{}, false // equal to nothing; JSON has none anyway
		}
		if v.Num == 0 {
			return hkey{kind: query.Number}, true // -0 = 0
		}
		return hkey{kind: query.Number, num: v.Num}, true
	case query.String:
		return hkey{kind: query.String, str: v.Str}, true
	}
	return hkey{}, false
}

// posting is the set of nodes that hold one value. A set that grows past
// the index's cap is dropped, and only counted from then on: a value that
// many twins hold is found faster by a scan, and its set would cost the
// most memory.
type posting struct {
	one  *node // the member, while there is one
	many *nodeSet
	n    int  // how many nodes hold the value
	full bool // the set was dropped
}

// nodeSet is the members of a posting once there are two or more.
type nodeSet struct {
	m map[*node]struct{}
	// ordered is m's nodes in key order, as queries want them: made by
	// the first query that needs it since m last changed, and kept for
	// the next ones. Putting a thousand nodes in order was a third of a
	// selective query's CPU at a million twins (BENCHMARKS.md, issue 16),
	// and the sets a query selects by change far less often than they
	// are read. Queries store it under the index's read lock; the writer,
	// which holds the write lock, clears it when m changes. Never changed
	// once stored: readers keep using the slice they loaded.
	ordered atomic.Pointer[[]*node]
}

// inOrder returns the set's nodes in key order; the slice is shared and
// read-only.
func (s *nodeSet) inOrder() []*node {
	if o := s.ordered.Load(); o != nil {
		return *o
	}
	o := make([]*node, 0, len(s.m))
	for n := range s.m {
		o = append(o, n)
	}
	sortNodes(o)
	s.ordered.Store(&o)
	return o
}

type hashIndex struct {
	attr attr
	cap  int // the largest set kept
	mu   sync.RWMutex
	m    map[hkey]posting
	used atomic.Int64 // when a query last used it, in Unix nanoseconds
}

func (h *hashIndex) add(k hkey, n *node) {
	if k.kind == query.String {
		// Not a piece of a twin's data, which the map would keep alive.
		k.str = strings.Clone(k.str)
	}
	p := h.m[k]
	p.n++
	switch {
	case p.full:
	case p.n > h.cap:
		p.one, p.many, p.full = nil, nil, true
	case p.many != nil:
		p.many.m[n] = struct{}{}
		p.many.ordered.Store(nil)
	case p.one == nil:
		p.one = n
	default:
		p.many = &nodeSet{m: map[*node]struct{}{p.one: {}, n: {}}}
		p.one = nil
	}
	h.m[k] = p
}

func (h *hashIndex) remove(k hkey, n *node) {
	p, ok := h.m[k]
	if !ok {
		return
	}
	if p.n--; p.n == 0 {
		delete(h.m, k)
		return
	}
	switch {
	case p.full:
		h.m[k] = p
	case p.many != nil:
		delete(p.many.m, n)
		p.many.ordered.Store(nil)
		h.m[k] = p
	case p.one == n:
		p.one = nil
		h.m[k] = p
	}
}

// count returns how many nodes hold one of vals.
func (h *hashIndex) count(vals []query.Value) int {
	h.used.Store(time.Now().UnixNano())
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, v := range vals {
		if k, ok := hkeyOf(v); ok {
			n += h.m[k].n
		}
	}
	return n
}

// nodes returns the nodes that hold one of vals, in key order; ok is false
// when the set of one of them was dropped. The slice may be a set's own:
// read-only.
func (h *hashIndex) nodes(vals []query.Value) (out []*node, ok bool) {
	var runs [][]*node
	var seen map[hkey]bool // an IN list's values, once each
	if len(vals) > 1 {
		seen = make(map[hkey]bool, len(vals))
	}
	h.mu.RLock()
	for _, v := range vals {
		k, ok := hkeyOf(v)
		if !ok || seen[k] {
			continue
		}
		if seen != nil {
			seen[k] = true
		}
		p := h.m[k]
		switch {
		case p.full:
			h.mu.RUnlock()
			return nil, false
		case p.one != nil:
			runs = append(runs, []*node{p.one})
		case p.many != nil:
			runs = append(runs, p.many.inOrder())
		}
	}
	h.mu.RUnlock()
	// A node holds one value of the attribute: the runs of distinct
	// values have no node in common.
	return mergeNodes(runs), true
}

// maxHashIndexes bounds the hash indexes of a table. An index costs about
// 20 bytes a twin whose value few others share, and little for the rest.
const maxHashIndexes = 32

// hashSet is the hash indexes of a table. Readers find them under mu; the
// writer changes the set under mu while it holds the index's wmu, and so
// may read it without mu.
type hashSet struct {
	mu     sync.RWMutex
	byAttr map[attr]*hashIndex
}

func (s *hashSet) get(a attr) *hashIndex {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byAttr[a]
}

// update moves n in every index from what old held to what t holds (nil:
// nothing). The caller holds wmu.
func (s *hashSet) update(d *pathDict, n *node, old, t *flatTwin) {
	for _, h := range s.byAttr {
		var ko, kn hkey
		okOld, okNew := false, false
		if old != nil {
			ko, okOld = hkeyOf(h.attr.of(d, old))
		}
		if t != nil {
			kn, okNew = hkeyOf(h.attr.of(d, t))
		}
		if okOld == okNew && ko == kn {
			continue
		}
		h.mu.Lock()
		if okOld {
			h.remove(ko, n)
		}
		if okNew {
			h.add(kn, n)
		}
		h.mu.Unlock()
	}
}

// hashIndex returns the table's index of a, building it if needed.
func (ix *Index) hashIndex(tb *table, a attr) *hashIndex {
	if h := tb.hashes.get(a); h != nil {
		return h
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	if h := tb.hashes.byAttr[a]; h != nil {
		return h
	}
	h := &hashIndex{attr: a, cap: max(4096, len(tb.byKey)/16), m: map[hkey]posting{}}
	h.used.Store(time.Now().UnixNano())
	for _, n := range tb.byKey {
		if k, ok := hkeyOf(a.of(ix.dict, n.twin.Load())); ok {
			h.add(k, n)
		}
	}
	tb.hashes.mu.Lock()
	if len(tb.hashes.byAttr) >= maxHashIndexes {
		var oldest *hashIndex
		for _, o := range tb.hashes.byAttr {
			if oldest == nil || o.used.Load() < oldest.used.Load() {
				oldest = o
			}
		}
		delete(tb.hashes.byAttr, oldest.attr)
	}
	tb.hashes.byAttr[a] = h
	tb.hashes.mu.Unlock()
	return h
}
