package index

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordtest"
	"github.com/twinhub/twinhub/query"
	"github.com/twinhub/twinhub/query/querytest"
)

// allPaths lists the paths of every member and array element of doc.
func allPaths(prefix []query.Segment, x any, out *[][]query.Segment) {
	*out = append(*out, slices.Clone(prefix))
	switch v := x.(type) {
	case map[string]any:
		for k, c := range v {
			allPaths(append(prefix, query.Segment{Name: k}), c, out)
		}
	case []any:
		for i, c := range v {
			allPaths(append(prefix, query.Segment{Index: i, IsIndex: true}), c, out)
		}
	}
}

func jsonString(t testing.TB, x any) string {
	t.Helper()
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFlatTwin checks that the compact form of random records renders
// exactly as Record.TwinDoc, and that every path of the document, and some
// that are not in it, read the same from the compact form as from the
// document.
func TestFlatTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	ix := NewIndex()
	extra := [][]query.Segment{
		{{Name: "tags"}, {Name: "nothing"}},
		{{Name: "tags"}, {Index: 0, IsIndex: true}},
		{{Name: "properties"}, {Name: "other"}},
		{{Name: "properties"}, {Name: "reported"}, {Name: "$metadata"}, {Name: "a"}, {Name: "$lastUpdated"}},
		{{Name: "x509Thumbprint"}, {Name: "other"}},
		{{Name: "deviceId"}, {Index: 0, IsIndex: true}},
		{{Name: "nothing"}},
		{{Name: "DeviceId"}},
		{{Index: 0, IsIndex: true}},
	}
	rendered := 0 // twins appendDoc leaves to doc
	for i := range 3000 {
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
		rec.SetETags()
		want := rec.TwinDoc()
		ft := ix.build.flatten(rec)
		if got := ft.doc(ix.dict); !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d renders\n%s\nwant\n%s", i, jsonString(t, got), jsonString(t, want))
		}
		wantJSON, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := (&twinWriter{d: ix.dict}).appendDoc([]byte("x"), ft); !ok {
			rendered++
		} else if string(got) != "x"+string(wantJSON) {
			t.Fatalf("record %d writes\n%s\nwant\n%s", i, got[1:], wantJSON)
		}
		var paths [][]query.Segment
		allPaths(nil, want, &paths)
		paths = append(paths, extra...)
		d := &evalDoc{p: &plan{ix: ix}}
		d.set(&node{key: nodeKey(k)}, ft)
		for _, segs := range paths {
			p := &query.Path{Segments: segs, Slot: -1}
			got, exp := d.Lookup(p), p.Walk(want, 0)
			if jsonValue(got) != jsonValue(exp) || got.Kind != exp.Kind {
				t.Fatalf("record %d, %s: got %s %v, want %s %v", i, p, got.Kind, jsonValue(got), exp.Kind, jsonValue(exp))
			}
		}
	}
	if rendered > 30 {
		t.Errorf("appendDoc left %d of 3000 twins to doc", rendered)
	}
}

func jsonValue(v query.Value) string {
	x, ok := v.Any()
	if !ok {
		return "undefined"
	}
	b, _ := json.Marshal(x)
	return string(b)
}

// TestTwinDocSystemProperties checks that every system property of the
// twin document is read from the identity without rendering the document.
func TestTwinDocSystemProperties(t *testing.T) {
	ix := NewIndex()
	for k := range docKeys() {
		first, sub, _ := strings.Cut(k, ".")
		p := &query.Path{Segments: []query.Segment{{Name: first}}}
		if sub != "" {
			p.Segments = append(p.Segments, query.Segment{Name: sub})
		} else if _, isObj := subSys[first]; isObj || first == "tags" || first == "properties" || first == "configurations" {
			continue
		}
		if r := ix.resolve(p); r.kind != resAttr {
			t.Errorf("%s is read from the rendered document; teach twin.go's sys about it", p)
		}
	}
	// A configuration's status, below an id of the user's.
	p := &query.Path{Segments: []query.Segment{{Name: "configurations"}, {Name: "my-config"}, {Name: "status"}}}
	if r := ix.resolve(p); r.kind != resAttr || r.attr.sys != sysConfigStatus || r.attr.cfg != "my-config" {
		t.Errorf("%s resolves to %+v", p, r)
	}
}

// reference is what the index is checked against: the twins of each
// collection rendered by Record.TwinDoc, in key order.
type reference struct {
	devices, modules []map[string]any
}

func newReference(recs map[twinhub.Key]*twinhub.Record) *reference {
	return &reference{devices: refDocs(recs, false), modules: refDocs(recs, true)}
}

func refDocs(recs map[twinhub.Key]*twinhub.Record, modules bool) []map[string]any {
	var keys []twinhub.Key
	for k := range recs {
		if (k.ModuleID != "") == modules {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b twinhub.Key) int { return strings.Compare(nodeKey(a), nodeKey(b)) })
	out := make([]map[string]any, len(keys))
	for i, k := range keys {
		out[i] = recs[k].TwinDoc()
	}
	return out
}

// runPaged runs a query through the index page by page, each page from
// the cursor the one before gave (the hub's tokens, which carry cursors,
// have their own tests).
func runPaged(t testing.TB, ix *Index, q *query.Query, pageSize int) ([]map[string]any, int) {
	t.Helper()
	var all []map[string]any
	tok, pages := Cursor{}, 0
	for {
		page, next := ix.Query(q, pageSize, tok)
		pages++
		if len(page.Items) > pageSize {
			t.Fatalf("%s: page of %d items, size %d", q.Source, len(page.Items), pageSize)
		}
		if page.ItemType != q.ItemType() {
			t.Fatalf("%s: item type %s", q.Source, page.ItemType)
		}
		all = append(all, page.Items...)
		if next == nil {
			return all, pages
		}
		tok = *next
		if pages > 100000 {
			t.Fatalf("%s: endless paging", q.Source)
		}
	}
}

// checkQuery compares what the index answers, paged, with Execute over
// the reference documents.
func checkQuery(t *testing.T, ix *Index, ref *reference, src string, pageSizes ...int) {
	t.Helper()
	q, err := query.Parse(src)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	var docs []map[string]any
	switch q.Collection {
	case query.Devices:
		docs = ref.devices
	case query.DevicesModules:
		docs = ref.modules
	}
	want, err := q.Execute(slices.Values(docs))
	if err != nil {
		t.Fatal(err)
	}
	for i, size := range pageSizes {
		got, _ := runPaged(t, ix, q, size)
		if got == nil {
			got = []map[string]any{}
		}
		if q.Star {
			// TestFlatTwin checks rendering; here the twins and their
			// order matter, and a few documents.
			if g, w := docIDs(got), docIDs(want); !slices.Equal(g, w) {
				t.Errorf("%s, pages of %d:\n got %q\nwant %q", src, size, g, w)
			} else if i == 0 && !reflect.DeepEqual(got[:min(len(got), 10)], want[:min(len(want), 10)]) {
				t.Errorf("%s: the documents differ", src)
			}
			continue
		}
		if reflect.DeepEqual(got, want) {
			continue
		}
		if g, w := jsonString(t, got), jsonString(t, want); g != w {
			t.Errorf("%s, pages of %d:\n got %.2000s\nwant %.2000s", src, size, g, w)
			return
		}
	}
}

func docIDs(docs []map[string]any) []string {
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = querytest.DocID(d)
	}
	return ids
}

// fleetQueries are queries over the random fleets of these tests, meant
// to take every path of the planner: key lookups, hash indexes (built
// lazily, then kept up to date), scans, groups, and reads from the
// rendered document.
var fleetQueries = []string{
	`SELECT * FROM devices`,
	`SELECT * FROM devices.modules`,
	`SELECT * FROM devices WHERE deviceId = 'd17'`,
	`SELECT * FROM devices WHERE deviceId IN ['d17', 'd3', 'nope', 5, 'd17']`,
	`SELECT * FROM devices.modules WHERE deviceId = 'd30'`,
	`SELECT * FROM devices.modules WHERE deviceId IN ['d30', 'd33'] AND moduleId = 'm1'`,
	`SELECT * FROM devices.modules WHERE moduleId = 'm2'`,
	`SELECT * FROM devices WHERE tags.a = 'EU'`,
	`SELECT * FROM devices WHERE tags.a = 'EU' AND properties.reported.temp > 0`,
	`SELECT * FROM devices WHERE tags.a IN ['EU', 'US', 3]`,
	`SELECT * FROM devices WHERE tags.a = 'nothing-has-this'`,
	`SELECT * FROM devices WHERE tags.zzz = 1`,
	`SELECT * FROM devices WHERE properties.reported.mode = 4`,
	`SELECT * FROM devices WHERE properties.desired.b = true`,
	`SELECT * FROM devices WHERE properties.reported.loc.a = null`,
	`SELECT * FROM devices WHERE status = 'disabled'`,
	`SELECT * FROM devices WHERE status = 'disabled' AND connectionState = 'Connected'`,
	`SELECT * FROM devices WHERE capabilities.iotEdge = true`,
	`SELECT * FROM devices WHERE properties.reported.temp > 3`,
	`SELECT * FROM devices WHERE properties.reported.temp > 100`,
	`SELECT * FROM devices WHERE IS_OBJECT(tags.loc) OR IS_ARRAY(tags.list)`,
	`SELECT * FROM devices WHERE tags.list[0] = 'a' OR tags.list[1].a = 1`,
	`SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint != null`,
	`SELECT * FROM devices WHERE IS_DEFINED(x509Thumbprint) AND NOT IS_DEFINED(tags.nilmap.x)`,
	`SELECT * FROM devices WHERE properties.reported.$metadata.$lastUpdated > '2024-03-01T12:10'`,
	`SELECT * FROM devices WHERE properties.desired.$version > 2 AND version >= 2`,
	`SELECT * FROM devices WHERE etag = 'AAAAAAAAAAE=' OR deviceEtag = 'Mw=='`,
	`SELECT * FROM devices WHERE modelId = 'dtmi:x;1'`,
	`SELECT * FROM devices WHERE configurations.[[fw-2.0]].status = 'Applied'`,
	`SELECT * FROM devices WHERE IS_DEFINED(configurations) AND configurations.[[a"b]].status != 'Applied'`,
	`SELECT deviceId, configurations FROM devices WHERE NOT IS_DEFINED(configurations.[[fw-2.0]].status)`,
	`SELECT configurations FROM devices.modules WHERE IS_DEFINED(configurations)`,
	`SELECT deviceId, configurations.[[fw-2.0]] AS c FROM devices WHERE IS_OBJECT(configurations.[[fw-2.0]])`,
	`SELECT TOP 7 * FROM devices WHERE tags.b != 'x'`,
	`SELECT TOP 0 * FROM devices`,
	`SELECT TOP 1000 deviceId FROM devices WHERE properties.reported.a > 0`,
	`SELECT deviceId, tags.a AS a, tags.loc, properties.reported.temp * 2 AS t2 FROM devices WHERE tags.a = 'US'`,
	`SELECT deviceId, moduleId, properties FROM devices.modules WHERE deviceId = 'd3'`,
	`SELECT devices FROM devices WHERE deviceId = 'd1'`,
	`SELECT COUNT() AS n FROM devices`,
	`SELECT COUNT() AS n FROM devices WHERE tags.a = 'EU'`,
	`SELECT COUNT() AS n, SUM(properties.reported.temp) AS s, AVG(properties.reported.a) AS a, MIN(tags.b) AS lo, MAX(tags.b) AS hi FROM devices WHERE properties.reported.temp < 10`,
	`SELECT tags.a AS a, COUNT() AS n FROM devices GROUP BY tags.a`,
	`SELECT tags.a AS a, status, COUNT() AS n, MAX(properties.reported.temp) AS t FROM devices GROUP BY tags.a, status`,
	`SELECT TOP 3 tags.b AS b, COUNT() AS n FROM devices GROUP BY tags.b`,
	`SELECT * FROM devices GROUP BY tags.a`,
	`SELECT * FROM devices.modules WHERE status = 'enabled' GROUP BY deviceId`,
	`SELECT COUNT() AS n FROM devices.modules GROUP BY connectionState`,
	`SELECT properties.reported.loc AS l, COUNT() AS n FROM devices GROUP BY properties.reported.loc`,
	`SELECT * FROM devices.jobs`,
}

// newTestIndex applies records for n devices, each with up to two modules,
// and returns them.
func newTestIndex(r *rand.Rand, n int) (*Index, map[twinhub.Key]*twinhub.Record) {
	ix := NewIndex()
	recs := map[twinhub.Key]*twinhub.Record{}
	rev := uint64(0)
	for i := range n {
		id := fmt.Sprintf("d%d", i)
		keys := []twinhub.Key{twinhub.DeviceKey(id)}
		for m := range r.IntN(3) {
			keys = append(keys, twinhub.ModuleKey(id, fmt.Sprintf("m%d", m+1)))
		}
		for _, k := range keys {
			rec := recordtest.RandomRecord(r, k)
			recs[k] = rec
			rev++
			ix.apply(k, rec, rev)
		}
	}
	return ix, recs
}

// TestIndexQueries checks the index against Execute over full documents,
// on a fleet big enough for hash indexes, then again after updates,
// deletions and re-creations.
func TestIndexQueries(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	ix, recs := newTestIndex(r, 3000)
	if err := ix.WaitFor(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	ref := newReference(recs)
	for _, src := range fleetQueries {
		checkQuery(t, ix, ref, src, 1000, 7)
	}
	if n := len(ix.devices.hashes.byAttr); n < 5 {
		t.Errorf("%d hash indexes, want the queries to have built more", n)
	}
	// Change a third of the fleet, delete some, re-create some.
	rev := uint64(1 << 20)
	keys := make([]twinhub.Key, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b twinhub.Key) int { return strings.Compare(nodeKey(a), nodeKey(b)) })
	for i, k := range keys {
		rev++
		switch i % 9 {
		case 0, 1, 2:
			rec := recordtest.RandomRecord(r, k)
			recs[k] = rec
			ix.apply(k, rec, rev)
		case 3:
			delete(recs, k)
			ix.apply(k, nil, rev)
		}
	}
	for i := range 400 {
		k := twinhub.DeviceKey(fmt.Sprintf("new%d", i))
		if i%2 == 0 {
			k = keys[i*7] // a re-creation, or an update
		}
		rev++
		rec := recordtest.RandomRecord(r, k)
		recs[k] = rec
		ix.apply(k, rec, rev)
	}
	if err := ix.WaitFor(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	ref = newReference(recs)
	for _, src := range fleetQueries {
		checkQuery(t, ix, ref, src, 1000, 13)
	}
	checkViews(t, ix, recs)
}

// checkViews checks that each table's key order holds exactly the live
// identities.
func checkViews(t *testing.T, ix *Index, recs map[twinhub.Key]*twinhub.Record) {
	t.Helper()
	for _, tb := range []*table{ix.devices, ix.modules} {
		var want []string
		for k := range recs {
			if tb == ix.table(k) {
				want = append(want, nodeKey(k))
			}
		}
		slices.Sort(want)
		var got []string
		v := tb.view.Load()
		for _, c := range v.chunks {
			if len(c.nodes) == 0 || len(c.nodes) > chunkSize || c.first != c.nodes[0].key || len(c.twins) != len(c.nodes) {
				t.Fatalf("bad chunk: %d nodes, %d twins, first %q", len(c.nodes), len(c.twins), c.first)
			}
			for i, n := range c.nodes {
				if n.chunk != c || n.at != i || c.twins[i].Load() != n.twin.Load() {
					t.Fatalf("node %s is not where its chunk has it, or its twin differs", n.key)
				}
			}
		}
		v.each(0, 0, func(n *node, _ *flatTwin) bool {
			got = append(got, n.key)
			return true
		})
		if !slices.Equal(got, want) {
			t.Fatalf("view has %d keys, want %d", len(got), len(want))
		}
		if int(tb.live.Load()) != len(want) || len(tb.byKey) != len(want) {
			t.Fatalf("live %d, byKey %d, want %d", tb.live.Load(), len(tb.byKey), len(want))
		}
	}
}

// TestIndexMerge applies random creations and deletions and checks the
// key order after every reader-triggered merge.
func TestIndexMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	ix := NewIndex()
	recs := map[twinhub.Key]*twinhub.Record{}
	rev := uint64(0)
	rec := recordtest.RandomRecord(r, twinhub.DeviceKey("x"))
	for round := range 40 {
		for range r.IntN(3000) {
			k := twinhub.DeviceKey(fmt.Sprintf("k%05d", r.IntN(20000)))
			rev++
			if r.IntN(3) == 0 {
				delete(recs, k)
				ix.apply(k, nil, rev)
			} else {
				recs[k] = rec
				ix.apply(k, rec, rev)
			}
		}
		if round%2 == 0 {
			if err := ix.WaitFor(t.Context(), rev); err != nil {
				t.Fatal(err)
			}
			checkViews(t, ix, recs)
		}
	}
}

// TestQueryOnRecordsOfTheConformanceFleet runs the conformance cases over
// records made from the fleet's twins, compared with Execute over what
// TwinDoc renders of the same records.
func TestIndexConformanceCases(t *testing.T) {
	ix := NewIndex()
	recs := map[twinhub.Key]*twinhub.Record{}
	rev := uint64(0)
	for _, tw := range slices.Concat(querytest.DeviceTwins, querytest.ModuleTwins) {
		k := twinhub.Key{DeviceID: tw.DeviceID, ModuleID: tw.ModuleID}
		rec := fleetRecord(t, tw)
		recs[k] = rec
		rev++
		ix.apply(k, rec, rev)
	}
	if err := ix.WaitFor(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	ref := newReference(recs)
	for _, c := range querytest.Cases {
		checkQuery(t, ix, ref, c.Query, 1000, 1, 3)
	}
}

// fleetRecord makes a record with the twin of a conformance fleet.
func fleetRecord(t testing.TB, tw querytest.Twin) *twinhub.Record {
	t.Helper()
	obj := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	now := twinhub.Time{Time: recordtest.Epoch}
	rec := &twinhub.Record{IdentityVersion: 1, Twin: twinhub.NewTwin(now)}
	var last twinhub.Time
	if tw.LastActivityTime != "" {
		tm, err := time.Parse(time.RFC3339Nano, tw.LastActivityTime)
		if err != nil {
			t.Fatal(err)
		}
		last = twinhub.Time{Time: tm}
	}
	auth := twinhub.Authentication{Type: twinhub.AuthSAS}
	if tw.ModuleID != "" {
		rec.Module = &twinhub.Module{DeviceID: tw.DeviceID, ModuleID: tw.ModuleID, ConnectionState: tw.ConnectionState,
			LastActivityTime: last, Authentication: auth}
	} else {
		rec.Device = &twinhub.Device{DeviceID: tw.DeviceID, Status: tw.Status, ConnectionState: tw.ConnectionState,
			LastActivityTime: last, Authentication: auth, Capabilities: twinhub.Capabilities{IoTEdge: tw.IoTEdge}}
	}
	if err := rec.Twin.Apply(twinhub.TwinUpdate{Tags: obj(tw.Tags), Desired: obj(tw.Desired)}, now); err != nil {
		t.Fatal(err)
	}
	for rec.Twin.Desired.Version < int64(tw.DesiredVersion) {
		rec.Twin.Desired.Version++
	}
	if err := rec.Twin.UpdateReported(obj(tw.Reported), now); err != nil {
		t.Fatal(err)
	}
	rec.Twin.ModelID = tw.ModelID
	return rec
}

// TestIndexConcurrent runs queries while a writer creates, updates and
// deletes twins (run with -race). Paging through a query must never return
// a twin twice, whatever changes in between.
func TestIndexConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	ix, recs := newTestIndex(r, 2500)
	keys := make([]twinhub.Key, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	var rev atomic.Uint64
	rev.Store(1 << 20)
	stop := make(chan struct{})
	var writer, wg sync.WaitGroup
	writer.Go(func() {
		w := rand.New(rand.NewPCG(5, 5))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := keys[w.IntN(len(keys))]
			if i%10 == 0 {
				ix.apply(k, nil, rev.Add(1))
				k = twinhub.DeviceKey(fmt.Sprintf("c%d", i))
			}
			ix.apply(k, recordtest.RandomRecord(w, k), rev.Add(1))
		}
	})
	for g := range 2 {
		wg.Go(func() {
			for i, src := range fleetQueries {
				if i%2 != g {
					continue
				}
				q, err := query.Parse(src)
				if err != nil {
					t.Error(err)
					return
				}
				if err := ix.WaitFor(context.Background(), rev.Load()); err != nil {
					t.Error(err)
					return
				}
				got, _ := runPaged(t, ix, q, 50)
				if q.Star && !q.Grouped() {
					ids := docIDs(got)
					slices.Sort(ids)
					if d := slices.Compact(slices.Clone(ids)); len(d) != len(ids) {
						t.Errorf("%s: a twin came back twice", src)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	writer.Wait()
}

// TestHashPostings checks the sets of a hash index, dropped past the cap.
func TestHashPostings(t *testing.T) {
	h := &hashIndex{cap: 3, m: map[hkey]posting{}}
	a, _ := hkeyOf(query.Value{Kind: query.String, Str: "a"})
	b, _ := hkeyOf(query.Value{Kind: query.Number, Num: -0.0})
	vals := []query.Value{{Kind: query.String, Str: "a"}}
	var ns []*node
	for i := range 5 {
		ns = append(ns, &node{key: fmt.Sprint(i)})
	}
	check := func(when string, count int, nodes int, ok bool) {
		t.Helper()
		got, gotOK := h.nodes(vals)
		if c := h.count(vals); c != count || len(got) != nodes || gotOK != ok {
			t.Errorf("%s: count %d, %d nodes, %v; want %d, %d, %v", when, c, len(got), gotOK, count, nodes, ok)
		}
	}
	check("empty", 0, 0, true)
	h.add(a, ns[0])
	h.add(b, ns[0])
	check("one", 1, 1, true)
	h.add(a, ns[1])
	h.add(a, ns[2])
	check("three", 3, 3, true)
	h.remove(a, ns[1])
	check("two", 2, 2, true)
	h.add(a, ns[1])
	h.add(a, ns[3])
	check("past the cap", 4, 0, false)
	h.add(a, ns[4])
	h.remove(a, ns[0])
	check("still full", 4, 0, false)
	for _, n := range ns[1:] {
		h.remove(a, n)
	}
	check("gone", 0, 0, true)
	h.add(a, ns[2])
	check("anew", 1, 1, true)
	if h.count([]query.Value{{Kind: query.Number, Num: 0}}) != 1 {
		t.Error("-0 and 0 are one value")
	}
}

// TestHashPostingsInOrder changes the sets of a hash index at random,
// asking for them between changes (which keeps each set's order until
// the next change): the nodes of one value or several (repeats among
// them) always come back in key order, exactly those that hold them, and
// a slice handed out earlier is not changed by what comes after.
func TestHashPostingsInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 17))
	h := &hashIndex{cap: 1000, m: map[hkey]posting{}}
	val := func(i int) query.Value { return query.Value{Kind: query.String, Str: fmt.Sprint("v", i)} }
	ns := make([]*node, 300)
	holds := make([]int, len(ns)) // the value each node holds, -1: none
	for i := range ns {
		ns[i] = &node{key: fmt.Sprintf("k%04d", r.IntN(10000))}
		holds[i] = -1
	}
	type handedOut struct {
		got, copy []*node
	}
	var earlier []handedOut
	for step := range 3000 {
		i := r.IntN(len(ns))
		if holds[i] >= 0 {
			k, _ := hkeyOf(val(holds[i]))
			h.remove(k, ns[i])
			holds[i] = -1
		}
		if r.IntN(4) > 0 {
			holds[i] = r.IntN(6)
			k, _ := hkeyOf(val(holds[i]))
			h.add(k, ns[i])
		}
		var vals []query.Value
		want := map[*node]bool{}
		for range 1 + r.IntN(3) {
			v := r.IntN(6)
			vals = append(vals, val(v))
			for j, hv := range holds {
				if hv == v {
					want[ns[j]] = true
				}
			}
		}
		got, ok := h.nodes(vals)
		if !ok {
			t.Fatalf("step %d: a set was dropped below the cap", step)
		}
		if !slices.IsSortedFunc(got, func(a, b *node) int { return strings.Compare(a.key, b.key) }) {
			t.Fatalf("step %d: nodes of %v not in key order", step, vals)
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: %d nodes of %v, want %d", step, len(got), vals, len(want))
		}
		for _, n := range got {
			if !want[n] {
				t.Fatalf("step %d: a node that does not hold %v, or one twice", step, vals)
			}
			delete(want, n)
		}
		earlier = append(earlier, handedOut{got, slices.Clone(got)})
	}
	for i, e := range earlier {
		if !slices.Equal(e.got, e.copy) {
			t.Fatalf("the nodes handed out at step %d changed since", i)
		}
	}
}

// TestMergeNodes merges up to 40 runs, some empty: the nodes of all of
// them, each once, in key order.
func TestMergeNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 41))
	cmp := func(a, b *node) int { return strings.Compare(a.key, b.key) }
	for range 300 {
		var runs [][]*node
		var all []*node
		for range r.IntN(40) {
			run := make([]*node, r.IntN(30))
			for i := range run {
				run[i] = &node{key: fmt.Sprintf("k%05d", r.IntN(2000))}
			}
			slices.SortFunc(run, cmp)
			runs = append(runs, run)
			all = append(all, run...)
		}
		got := mergeNodes(runs)
		if !slices.IsSortedFunc(got, cmp) || len(got) != len(all) {
			t.Fatalf("%d runs: %d nodes, want %d in key order", len(runs), len(got), len(all))
		}
		seen := map[*node]bool{}
		for _, n := range got {
			seen[n] = true
		}
		for _, n := range all {
			if !seen[n] {
				t.Fatalf("%d runs: a node is missing", len(runs))
			}
		}
	}
}

func TestSortNodesParallel(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	for _, n := range []int{0, 1, 1 << 15, 1<<16 + 7, 200_001} {
		ns := make([]*node, n)
		for i := range ns {
			ns[i] = &node{key: fmt.Sprintf("k%08d", r.IntN(n+1))}
		}
		before := map[*node]bool{}
		for _, x := range ns {
			before[x] = true
		}
		sortNodesParallel(ns)
		if !slices.IsSortedFunc(ns, func(a, b *node) int { return strings.Compare(a.key, b.key) }) || len(ns) != n {
			t.Fatalf("%d nodes not sorted", n)
		}
		for _, x := range ns {
			if !before[x] {
				t.Fatalf("%d nodes: one is not of the input, or twice", n)
			}
			delete(before, x)
		}
	}
}

// TestFlatTwinJSONOddNames: names that sort before the members a twin
// document adds ("$version", "$metadata", "$lastUpdated") are written in
// their place, and names that are such members leave the twin to doc,
// whose maps they overwrite.
func TestFlatTwinJSONOddNames(t *testing.T) {
	ix := NewIndex()
	now := twinhub.Time{Time: time.Date(2026, 12, 6, 1, 2, 3, 4, time.UTC)}
	leaf := func(v int64) *twinhub.Metadata { return &twinhub.Metadata{LastUpdated: now, LastUpdatedVersion: v} }
	for _, c := range []struct {
		name    string
		desired map[string]any
		meta    map[string]*twinhub.Metadata
		ok      bool
	}{
		{"before $", map[string]any{"!a": 1.0, "#b": map[string]any{"!c": "<x>", "d": nil}, "z": []any{1.0, "s"}},
			map[string]*twinhub.Metadata{"!a": leaf(2), "#b": {LastUpdated: now, Children: map[string]*twinhub.Metadata{"!c": leaf(0)}}, "z": leaf(1), "gone": leaf(4)}, true},
		{"a value named $version", map[string]any{"$version": 1.0}, nil, false},
		{"a value named $metadata", map[string]any{"$metadata": "x"}, nil, false},
		{"metadata named $lastUpdated", map[string]any{"a": map[string]any{"$lastUpdated": 1.0}},
			map[string]*twinhub.Metadata{"a": {LastUpdated: now, Children: map[string]*twinhub.Metadata{"$lastUpdated": leaf(1)}}}, false},
	} {
		rec := &twinhub.Record{Device: &twinhub.Device{DeviceID: "d", Status: "enabled"}, IdentityVersion: 1}
		rec.Twin.Version = 3
		rec.Twin.Tags = map[string]any{"!t": true, "t": false}
		rec.Twin.Desired = twinhub.Properties{Values: c.desired, Version: 2, Metadata: &twinhub.Metadata{LastUpdated: now, LastUpdatedVersion: 2, Children: c.meta}}
		ft := ix.build.flatten(rec)
		got, ok := (&twinWriter{d: ix.dict}).appendDoc(nil, ft)
		if ok != c.ok {
			t.Errorf("%s: appendDoc ok = %v, want %v", c.name, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		want, err := json.Marshal(rec.TwinDoc())
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: appendDoc writes\n%s\nwant\n%s", c.name, got, want)
		}
	}
}
