package index

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/scratch"
	"github.com/twinhub/twinhub/query"
)

// Query runs q and returns the page after cursor tok, and the cursor of
// the next page if there is one.
func (ix *Index) Query(q *query.Query, pageSize int, tok Cursor) (*twinhub.QueryPage, *Cursor) {
	out := &pageItems{maps: []map[string]any{}}
	page, next := ix.query(q, pageSize, tok, out)
	page.Items = out.maps
	return page, next
}

// QueryJSON is Query for a page that is only written out (REST): its items
// come as a JSON array, the bytes json.Marshal makes of Query's, and whole
// twins are written straight from the index's compact form, without the
// maps Query builds (appendDoc).
func (ix *Index) QueryJSON(q *query.Query, pageSize int, tok Cursor) (*twinhub.QueryPage, []byte, *Cursor, error) {
	// The page is written in a lent buffer and copied out at its size: a
	// buffer sized for the page before it is known took 32 KB for the one
	// twin of a query by id, and grew through copies for a page of a
	// hundred.
	var page *twinhub.QueryPage
	var next *Cursor
	var err error
	data, _ := pageBufs.Exact(func(b []byte) ([]byte, bool) {
		out := &pageItems{json: true, b: append(b, '[')}
		page, next = ix.query(q, pageSize, tok, out)
		err = out.err
		return append(out.b, ']'), err == nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return page, data, next, nil
}

var pageBufs = scratch.New(1 << 20)

func (ix *Index) query(q *query.Query, pageSize int, tok Cursor, out *pageItems) (*twinhub.QueryPage, *Cursor) {
	page := &twinhub.QueryPage{ItemType: q.ItemType()}
	out.w.d = ix.dict
	var tb *table
	switch q.Collection {
	case query.Devices:
		tb = ix.devices
	case query.DevicesModules:
		tb = ix.modules
	default:
		return page, nil // devices.jobs: the hub reads its job store
	}
	p := ix.plan(q, tb)
	if q.Grouped() {
		return page, p.groupPage(out, pageSize, tok)
	}
	return page, p.keysetPage(out, pageSize, tok)
}

// pageItems collects a page's items: as maps, or written as JSON.
type pageItems struct {
	w    twinWriter
	json bool
	maps []map[string]any
	b    []byte // the JSON array so far, without its closing bracket
	err  error
}

// twin adds a whole twin.
func (o *pageItems) twin(t *flatTwin) {
	if !o.json {
		o.maps = append(o.maps, t.doc(o.w.d))
		return
	}
	o.comma()
	if b, ok := o.w.appendDoc(o.b, t); ok {
		o.b = b
		return
	}
	o.appendJSON(t.doc(o.w.d))
}

// row adds a projection or a group's row.
func (o *pageItems) row(item map[string]any) {
	if !o.json {
		o.maps = append(o.maps, item)
		return
	}
	o.comma()
	o.appendJSON(item)
}

// comma separates an item from the one before.
func (o *pageItems) comma() {
	if len(o.b) > 1 {
		o.b = append(o.b, ',')
	}
}

func (o *pageItems) appendJSON(item map[string]any) {
	var err error
	if o.b, err = recordjson.AppendJSON(o.b, item); err != nil && o.err == nil {
		o.err = err
	}
}

// --- planning ---

// plan is a query prepared for one table: how to read each of its paths
// from a flatTwin.
type plan struct {
	ix  *Index
	tb  *table
	q   *query.Query
	res []resolver // by Path.Slot
	// hot lists the slots of paths read from the property trees: what a
	// scan loads ahead of evaluating (see evalDoc.load).
	hot []int
}

type resKind uint8

const (
	resMissing resKind = iota // undefined in every twin
	resAttr                   // a system property or a property of a tree
	resFull                   // read from the rendered document
)

// resolver says how to read a path: attr names the value at its first
// from segments; the rest (after an array index) are walked in that value.
type resolver struct {
	path *query.Path
	kind resKind
	attr attr
	from int
}

func (ix *Index) plan(q *query.Query, tb *table) *plan {
	p := &plan{ix: ix, tb: tb, q: q, res: make([]resolver, len(q.Paths))}
	for i, path := range q.Paths {
		r := ix.resolve(path)
		p.res[i] = r
		if r.kind == resAttr && r.attr.sys == sysNone {
			p.hot = append(p.hot, i)
		}
	}
	return p
}

// resolve works out how to read a path from a flatTwin. Objects that hold
// system properties ("properties", "x509Thumbprint", the section roots with
// $version and $metadata, the whole document) are read from the rendered
// document, which is slow but exact; names the twin document does not have
// are undefined.
func (ix *Index) resolve(path *query.Path) resolver {
	segs := path.Segments
	r := resolver{path: path, kind: resFull}
	if len(segs) == 0 {
		return r
	}
	missing := resolver{path: path}
	if segs[0].IsIndex {
		return missing
	}
	name := segs[0].Name
	switch name {
	case "tags":
		if len(segs) == 1 {
			return r
		}
		return ix.resolveTree(path, tagsPath, secTags, 1)
	case "properties":
		if len(segs) < 3 {
			if len(segs) == 2 && (segs[1].IsIndex || segs[1].Name != "desired" && segs[1].Name != "reported") {
				return missing
			}
			return r
		}
		id, sec, ver := desiredPath, secDesired, sysDesiredVersion
		switch {
		case segs[1].IsIndex:
			return missing
		case segs[1].Name == "reported":
			id, sec, ver = reportedPath, secReported, sysReportedVersion
		case segs[1].Name != "desired":
			return missing
		}
		switch {
		case segs[2].IsIndex:
			return missing
		case segs[2].Name == "$version":
			return resolver{path: path, kind: resAttr, attr: attr{sys: ver}, from: 3}
		case segs[2].Name == "$metadata":
			return r
		}
		return ix.resolveTree(path, id, sec, 2)
	}
	if name == "configurations" && len(segs) == 3 && !segs[1].IsIndex && !segs[2].IsIndex && segs[2].Name == "status" {
		return resolver{path: path, kind: resAttr, attr: attr{sys: sysConfigStatus, cfg: segs[1].Name}, from: 3}
	}
	if name == "configurations" {
		return resolver{path: path, kind: resAttr, attr: attr{sys: sysConfigurations}, from: 1}
	}
	if f, ok := topSys[name]; ok {
		return resolver{path: path, kind: resAttr, attr: attr{sys: f}, from: 1}
	}
	if sub, ok := subSys[name]; ok && len(segs) > 1 && !segs[1].IsIndex {
		if f, ok := sub[segs[1].Name]; ok {
			return resolver{path: path, kind: resAttr, attr: attr{sys: f}, from: 2}
		}
		if !docKeys()[name+"."+segs[1].Name] {
			return missing
		}
	}
	if docKeys()[name] {
		return r
	}
	return missing
}

// resolveTree follows the member names of path from segment start on down
// the dictionary, from the tree root id, up to the first array index.
func (ix *Index) resolveTree(path *query.Path, id pathID, sec section, start int) resolver {
	segs := path.Segments
	i := start
	for ; i < len(segs) && !segs[i].IsIndex; i++ {
		var ok bool
		if id, ok = ix.dict.lookup(id, segs[i].Name); !ok {
			return resolver{path: path} // no twin has had it
		}
	}
	if i == start {
		return resolver{path: path} // an index into the tree's root object
	}
	return resolver{path: path, kind: resAttr, attr: attr{id: id, sec: sec}, from: i}
}

// evalDoc is a flatTwin seen as a query.Doc through a plan. Scans reuse one
// evalDoc for every twin they read.
type evalDoc struct {
	p     *plan
	n     *node
	t     *flatTwin
	full  map[string]any // the rendered document, once a path needed it
	hints []int32        // by slot: where the last twin had the path's field
	sink  uint32         // keeps the reads of load
}

func (p *plan) doc() *evalDoc {
	return &evalDoc{p: p, hints: make([]int32, len(p.res))}
}

func (d *evalDoc) set(n *node, t *flatTwin) { d.n, d.t, d.full = n, t, nil }

// Keep returns a copy that stays on this twin.
func (d *evalDoc) Keep() query.Doc {
	c := *d
	c.hints = nil
	return &c
}

func (d *evalDoc) Lookup(path *query.Path) query.Value {
	var r resolver
	var hint *int32
	if uint(path.Slot) < uint(len(d.p.res)) && d.p.res[path.Slot].path == path {
		r = d.p.res[path.Slot]
		if d.hints != nil {
			hint = &d.hints[path.Slot]
		}
	} else {
		r = d.p.ix.resolve(path) // a path from another query
	}
	var v query.Value
	switch {
	case r.kind == resMissing:
		return query.Value{}
	case r.kind == resFull:
		if d.full == nil {
			d.full = d.t.doc(d.p.ix.dict)
		}
		return path.Walk(d.full, 0)
	case r.attr.sys == sysNone && hint != nil:
		if i := d.t.findAt(r.attr.id, r.attr.sec, hint); i >= 0 {
			v = d.t.value(d.p.ix.dict, i)
		}
	default:
		v = r.attr.of(d.p.ix.dict, d.t)
	}
	if r.from < len(path.Segments) {
		if v.Kind != query.Array && v.Kind != query.Object {
			return query.Value{}
		}
		x, _ := v.Any()
		return path.Walk(x, r.from)
	}
	return v
}

// hit is a twin that matched, in the version that matched.
type hit struct {
	n *node
	t *flatTwin
}

// --- candidates ---

// hashMinTable is the size below which a table is scanned rather than
// indexed.
const hashMinTable = 2048

// candidates returns, in key order, the nodes that can match when the
// WHERE clause has a top-level condition deviceId = 'x' (or IN), read from
// the key order, or an equality on another property that a hash index
// answers more cheaply than a scan would find limit matches (-1: all of
// them). ok is false when the query should scan.
func (p *plan) candidates(limit int) (nodes []*node, ok bool) {
	type cond struct {
		r    resolver
		vals []query.Value
	}
	var conds []cond
	for _, c := range query.Conjuncts(p.q.Where) {
		path, v, isEq := query.PathEquals(c)
		vals := []query.Value{v}
		if !isEq {
			var isIn bool
			if path, vals, isIn = query.PathIn(c); !isIn {
				continue
			}
		}
		r := p.res[path.Slot]
		if r.kind == resMissing {
			return nil, true // undefined equals nothing
		}
		if r.kind == resAttr && r.from == len(path.Segments) {
			conds = append(conds, cond{r, vals})
		}
	}
	var devs, mods []query.Value
	for _, c := range conds {
		switch c.r.attr.sys {
		case sysDeviceID:
			devs = c.vals
		case sysModuleID:
			mods = c.vals
		}
	}
	if devs != nil {
		return p.keyNodes(devs, mods), true
	}
	live := int(p.tb.live.Load())
	if live < hashMinTable {
		return nil, false
	}
	var best *hashIndex
	var bestVals []query.Value
	bestN := 0
	for _, c := range conds {
		if c.r.attr.sys == sysDeviceID {
			continue
		}
		h := p.ix.hashIndex(p.tb, c.r.attr)
		if n := h.count(c.vals); best == nil || n < bestN {
			best, bestVals, bestN = h, c.vals, n
		}
	}
	if best == nil {
		return nil, false
	}
	// A scan finds limit matches after reading about limit*live/bestN
	// twins; reading the index's bestN twins must be cheaper.
	if limit < 0 {
		if bestN > live/2 {
			return nil, false
		}
	} else if bestN > 0 && float64(bestN)*float64(bestN) > float64(limit)*float64(live) {
		return nil, false
	}
	return best.nodes(bestVals)
}

// keyNodes returns the live nodes of the given device ids (and module ids,
// for module twins), in key order.
func (p *plan) keyNodes(devs, mods []query.Value) []*node {
	v := p.tb.view.Load()
	var out []*node
	seen := map[string]bool{}
	for _, d := range devs {
		if d.Kind != query.String || seen[d.Str] {
			continue
		}
		seen[d.Str] = true
		switch {
		case p.q.Collection == query.Devices:
			if n, _ := v.get(d.Str); n != nil {
				out = append(out, n)
			}
		case mods != nil:
			for _, m := range mods {
				if m.Kind == query.String {
					if n, _ := v.get(d.Str + "\x00" + m.Str); n != nil {
						out = append(out, n)
					}
				}
			}
		default:
			prefix := d.Str + "\x00"
			ci, ni := v.seek(prefix, true)
			v.each(ci, ni, func(n *node, _ *flatTwin) bool {
				if len(n.key) < len(prefix) || n.key[:len(prefix)] != prefix {
					return false
				}
				out = append(out, n)
				return true
			})
		}
	}
	sortNodes(out)
	return compactNodes(out)
}

// --- pages of twins and projections ---

func (p *plan) keysetPage(out *pageItems, pageSize int, tok Cursor) *Cursor {
	need, more := pageSize, true
	if p.q.Top >= 0 {
		if left := p.q.Top - tok.Count; left <= pageSize {
			need, more = left, false
		}
	}
	if need <= 0 {
		return nil
	}
	limit := need
	if more {
		limit++ // one more tells whether there is a next page
	}
	var hits []hit
	if nodes, ok := p.candidates(limit); ok {
		hits = p.matchNodes(nodes, tok.After, limit)
	} else {
		hits = p.scan(tok.After, limit)
	}
	var next *Cursor
	if len(hits) > need {
		hits = hits[:need]
		next = &Cursor{After: hits[need-1].n.key, Count: tok.Count + need}
	}
	for _, h := range hits {
		if p.q.Star {
			out.twin(h.t)
		} else {
			out.row(p.q.Project(&evalDoc{p: p, n: h.n, t: h.t}))
		}
	}
	return next
}

// matchNodes returns the first limit candidates after the key after that
// match.
func (p *plan) matchNodes(nodes []*node, after string, limit int) []hit {
	var hits []hit
	d := p.doc()
	for _, n := range nodes {
		if n.key <= after {
			continue
		}
		t := n.twin.Load()
		if t == nil {
			continue
		}
		d.set(n, t)
		if p.q.MatchDoc(d) {
			if hits = append(hits, hit{n, t}); len(hits) == limit {
				break
			}
		}
	}
	return hits
}

// scan reads the table in key order after the key after until it has
// found limit matches. The first chunk is read at once; if it does not
// have enough, workers (one a processor) take the next chunks in order,
// and stop taking more once the chunks before the last one taken have
// enough. So a query whose matches are many stops early, and one that
// must read everything does so in parallel.
func (p *plan) scan(after string, limit int) []hit {
	v := p.tb.view.Load()
	ci, ni := v.seek(after, false)
	if ci >= len(v.chunks) {
		return nil
	}
	d := p.doc()
	var buf [chunkSize]*flatTwin
	hits := p.scanChunk(d, &buf, v.chunks[ci], ni, limit, nil)
	ci++
	workers := runtime.GOMAXPROCS(0)
	if len(hits) >= limit || ci >= len(v.chunks) {
		return hits
	}
	if workers == 1 || len(v.chunks)-ci < 2 {
		for ; ci < len(v.chunks) && len(hits) < limit; ci++ {
			hits = p.scanChunk(d, &buf, v.chunks[ci], 0, limit-len(hits), hits)
		}
		return hits
	}
	// Chunk results by position from ci; frontier is the first chunk not
	// yet done or not yet counted, found the matches of those before it.
	res := make([][]hit, len(v.chunks)-ci)
	done := make([]bool, len(res))
	var mu sync.Mutex
	frontier, found := 0, len(hits)
	var next atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			d := p.doc()
			var buf [chunkSize]*flatTwin
			for !stop.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(res) {
					return
				}
				r := p.scanChunk(d, &buf, v.chunks[ci+i], 0, limit-len(hits), nil)
				mu.Lock()
				res[i], done[i] = r, true
				for frontier < len(res) && done[frontier] {
					found += len(res[frontier])
					frontier++
				}
				if found >= limit {
					stop.Store(true)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, r := range res {
		if len(hits) >= limit {
			break
		}
		hits = append(hits, r[:min(len(r), limit-len(hits))]...)
	}
	return hits
}

// scanChunk appends to out the matches among the nodes of c from node
// from on, up to want of them.
func (p *plan) scanChunk(d *evalDoc, buf *[chunkSize]*flatTwin, c *chunk, from, want int, out []hit) []hit {
	ts := buf[:len(c.nodes)-from]
	d.load(c.twins[from:], ts)
	found := 0
	for i, t := range ts {
		if t == nil {
			continue
		}
		n := c.nodes[from+i]
		d.set(n, t)
		if p.q.MatchDoc(d) {
			out = append(out, hit{n, t})
			if found++; found == want {
				break
			}
		}
	}
	return out
}

// load reads the twins of a chunk into ts, and what evaluating the query
// will read of them: the twin, the fields of its paths (where the last
// twin had them) with their strings (the identity is in the twin's header,
// which the first pass reads). Reading a twin
// costs a few trips to memory, one after the other; done for one twin at a
// time, a scan would wait for each. Done for a chunk at once, one step at
// a time, the trips for different twins overlap, and evaluation then finds
// everything in the cache.
func (d *evalDoc) load(twins []atomic.Pointer[flatTwin], ts []*flatTwin) {
	for i := range ts {
		ts[i] = twins[i].Load()
	}
	var x uint32
	for _, t := range ts {
		if t != nil {
			x += t.desiredAt
		}
	}
	for _, t := range ts {
		if t == nil {
			continue
		}
		for _, s := range d.p.hot {
			// The field is near where the last twin had it: read the
			// cache lines around.
			if h := int(d.hints[s]); h < len(t.fields) {
				x += t.fields[h].path + t.fields[max(h-3, 0)].path + t.fields[min(h+3, len(t.fields)-1)].path
			}
		}
	}
	for _, t := range ts {
		if t == nil {
			continue
		}
		for _, s := range d.p.hot {
			if h := int(d.hints[s]); h < len(t.fields) {
				if f := &t.fields[h]; f.kind == fString && f.v&math.MaxUint32 > 0 {
					x += uint32(t.data[f.v>>32])
				}
			}
		}
	}
	d.sink += x
}

// --- pages of groups ---

func (p *plan) groupPage(out *pageItems, pageSize int, tok Cursor) *Cursor {
	g := p.groups()
	var items []map[string]any
	var firsts []query.Doc
	n := 0
	if p.q.Star {
		firsts = g.Firsts()
		n = len(firsts)
	} else {
		items = g.Rows()
		n = len(items)
	}
	from := min(tok.Count, n)
	end := min(from+pageSize, n)
	var next *Cursor
	if end < n {
		next = &Cursor{Count: end}
	}
	if !p.q.Star {
		for _, item := range items[from:end] {
			out.row(item)
		}
		return next
	}
	for _, d := range firsts[from:end] {
		out.twin(d.(*evalDoc).t)
	}
	return next
}

// parallelMin is the table size from which grouping is split among the
// processors.
const parallelMin = 16384

// groups runs a grouped query over the candidates or the whole table.
func (p *plan) groups() *query.Groups {
	q := p.q
	if nodes, ok := p.candidates(-1); ok {
		g := q.NewGroups()
		d := p.doc()
		for _, n := range nodes {
			if t := n.twin.Load(); t != nil {
				d.set(n, t)
				if q.MatchDoc(d) {
					g.Add(d)
				}
			}
		}
		return g
	}
	v := p.tb.view.Load()
	parts := 1
	if workers := runtime.GOMAXPROCS(0); workers > 1 && v.size() >= parallelMin {
		parts = min(4*workers, len(v.chunks))
	}
	res := make([]*query.Groups, parts)
	run := func(i int) {
		g := q.NewGroups()
		d := p.doc()
		var buf [chunkSize]*flatTwin
		a, b := len(v.chunks)*i/parts, len(v.chunks)*(i+1)/parts
		for _, c := range v.chunks[a:b] {
			ts := buf[:len(c.nodes)]
			d.load(c.twins, ts)
			for j, t := range ts {
				if t != nil {
					d.set(c.nodes[j], t)
					if q.MatchDoc(d) {
						g.Add(d)
					}
				}
			}
		}
		res[i] = g
	}
	if parts == 1 {
		run(0)
		return res[0]
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < parts; i = int(next.Add(1)) - 1 {
				run(i)
			}
		})
	}
	wg.Wait()
	for _, g := range res[1:] {
		res[0].Merge(g)
	}
	return res[0]
}

// Cursor is where a query's next page starts: after the key After, with
// Count results returned before (for TOP); for grouped queries Count is
// the offset of the next group. The hub carries it in a signed
// continuation token.
type Cursor struct {
	After string
	Count int
}
