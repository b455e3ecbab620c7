package index

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordtest"
	"github.com/twinhub/twinhub/query"
)

// The benchmarks of this file run on a fleet of realistic twins, 100,000
// by default; set TWINHUB_BENCH_TWINS=1000000 for the size the issue sets
// goals for. They feed the index through applyJSON, as the store's watch
// does, with records in random key order; the store itself is not
// measured here (see replay_bench_test.go). Results are in
// BENCHMARKS.md.

func benchTwins() int {
	if s := os.Getenv("TWINHUB_BENCH_TWINS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 100_000
}

// benchFleet is the index every query benchmark shares, with what it took
// to build it.
type benchFleet struct {
	ix          *Index
	n           int
	build       time.Duration // applying the records, their making excluded
	heapPerTwin float64
	// objectsPerTwin: live heap objects a twin, what the collector marks.
	objectsPerTwin float64
	rev            atomic.Uint64
}

var (
	fleetOnce sync.Once
	fleet     *benchFleet
)

func heapInUse() (bytes, objects uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapObjects
}

// buildFleet applies n records in random key order to a new index, in
// their stored JSON form as the store's watch hands them over at start-up,
// on one goroutine (start-up flattens on every processor, see
// BenchmarkStore/Replay).
func buildFleet(n int) *benchFleet {
	f := &benchFleet{n: n}
	before, beforeObjects := heapInUse()
	f.ix = NewIndex()
	r := rand.New(rand.NewPCG(7, 7))
	order := r.Perm(n)
	const batch = 4096
	type stored struct {
		k    twinhub.Key
		data []byte
	}
	recs := make([]stored, 0, batch)
	f.ix.setReplaying(true) // as at start-up: key order made once, at the end
	for start := 0; start < n; start += batch {
		recs = recs[:0]
		for _, i := range order[start:min(start+batch, n)] {
			rec := recordtest.BenchRecord(r, i, n)
			data, err := json.Marshal(rec)
			if err != nil {
				panic(err)
			}
			recs = append(recs, stored{rec.Key(), data})
		}
		t0 := time.Now()
		for _, s := range recs {
			if err := f.ix.applyJSON(s.k, s.data, f.rev.Add(1)); err != nil {
				panic(err)
			}
		}
		f.build += time.Since(t0)
	}
	clear(recs)
	t0 := time.Now()
	f.ix.setReplaying(false)
	if err := f.ix.WaitFor(context.Background(), f.rev.Load()); err != nil {
		panic(err)
	}
	f.build += time.Since(t0)
	after, afterObjects := heapInUse()
	f.heapPerTwin = float64(after-before) / float64(n)
	f.objectsPerTwin = float64(afterObjects-beforeObjects) / float64(n)
	return f
}

func sharedFleet(b *testing.B) *benchFleet {
	b.Helper()
	fleetOnce.Do(func() { fleet = buildFleet(benchTwins()) })
	return fleet
}

// BenchmarkIndexBuild applies a whole fleet to an empty index; one op is
// the whole fleet. It reports the time per twin and the heap the index
// holds per twin.
func BenchmarkIndexBuild(b *testing.B) {
	n := benchTwins()
	var f *benchFleet
	for b.Loop() {
		f = buildFleet(n)
	}
	b.ReportMetric(f.build.Seconds(), "build-s")
	b.ReportMetric(float64(f.build.Nanoseconds())/float64(n), "ns/twin")
	b.ReportMetric(f.heapPerTwin, "heap-B/twin")
	b.ReportMetric(f.objectsPerTwin, "heap-objects/twin")
	runtime.KeepAlive(f)
}

// latencies records the duration of each op, for medians.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	at := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.9), "p90-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the mean hides what matters here
}

// benchQuery runs a query's first page (or every page, with all) again
// and again; src may hold a %d that each op fills with a random number
// below vary.
func benchQuery(b *testing.B, src string, vary, pageSize int, check func(*twinhub.QueryPage)) {
	f := sharedFleet(b)
	r := rand.New(rand.NewPCG(9, 9))
	parse := func() *query.Query {
		s := src
		if vary > 0 {
			s = fmt.Sprintf(src, r.IntN(vary))
		}
		q, err := query.Parse(s)
		if err != nil {
			b.Fatal(err)
		}
		return q
	}
	// Warm up: build the hash index the query uses, if any.
	f.ix.Query(parse(), pageSize, Cursor{})
	var lat latencies
	for b.Loop() {
		q := parse()
		t0 := time.Now()
		page, _ := f.ix.Query(q, pageSize, Cursor{})
		lat = append(lat, time.Since(t0))
		if check != nil {
			check(page)
		}
	}
	lat.report(b)
}

func wantItems(b *testing.B, lo, hi int) func(*twinhub.QueryPage) {
	return func(p *twinhub.QueryPage) {
		if n := len(p.Items); n < lo || n > hi {
			b.Fatalf("%d items, want %d to %d", n, lo, hi)
		}
	}
}

// BenchmarkQueryTagEquality is the selective query: a plant has about 100
// twins; one op is the first page of 100 full twins.
func BenchmarkQueryTagEquality(b *testing.B) {
	n := benchTwins()
	benchQuery(b, `SELECT * FROM devices WHERE tags.plant = 'plant-%05d'`, max(n/100, 1), 100, wantItems(b, 40, 100))
}

// BenchmarkQueryJSONManyCandidates is the shape of `bench million`'s
// selective query on the REST path (QueryJSON): ten plants, about 1,000
// twins at any fleet size, of which the first page of 100 full twins in
// key order is rendered as JSON.
func BenchmarkQueryJSONManyCandidates(b *testing.B) { benchManyCandidates(b, false) }

// BenchmarkQueryJSONManyCandidatesWalk is that query's every page, as an
// SDK reads them (one op: the ten pages).
func BenchmarkQueryJSONManyCandidatesWalk(b *testing.B) { benchManyCandidates(b, true) }

func benchManyCandidates(b *testing.B, walk bool) {
	f := sharedFleet(b)
	plants := max(f.n/100, 10)
	r := rand.New(rand.NewPCG(9, 9))
	src := func() *query.Query {
		k := r.IntN(plants - 9)
		var in []string
		for i := range 10 {
			in = append(in, fmt.Sprintf("'plant-%05d'", k+i))
		}
		q, err := query.Parse("SELECT * FROM devices WHERE tags.plant IN [" + strings.Join(in, ", ") + "]")
		if err != nil {
			b.Fatal(err)
		}
		return q
	}
	f.ix.QueryJSON(src(), 100, Cursor{}) // builds the hash index
	var lat latencies
	for b.Loop() {
		q := src()
		t0 := time.Now()
		_, items, next, err := f.ix.QueryJSON(q, 100, Cursor{})
		for walk && next != nil && err == nil {
			_, _, next, err = f.ix.QueryJSON(q, 100, *next)
		}
		lat = append(lat, time.Since(t0))
		var twins []json.RawMessage
		if err == nil {
			err = json.Unmarshal(items, &twins)
		}
		if err != nil || len(twins) != 100 {
			b.Fatalf("%v: %d twins, want 100", err, len(twins))
		}
	}
	lat.report(b)
}

// BenchmarkQueryReportedEquality: a reported property with ~100 twins a value.
func BenchmarkQueryReportedEquality(b *testing.B) {
	n := benchTwins()
	benchQuery(b, `SELECT * FROM devices WHERE properties.reported.batch = 'b-%05d'`, max(n/100, 1), 100, wantItems(b, 40, 100))
}

// BenchmarkQueryEqualityProjection: the selective query with a projection.
func BenchmarkQueryEqualityProjection(b *testing.B) {
	n := benchTwins()
	benchQuery(b, `SELECT deviceId, properties.reported.temperature AS t FROM devices WHERE tags.plant = 'plant-%05d' AND status = 'enabled'`,
		max(n/100, 1), 100, nil)
}

// BenchmarkQueryDeviceID: a lookup by id.
func BenchmarkQueryDeviceID(b *testing.B) {
	benchQuery(b, `SELECT * FROM devices WHERE deviceId = 'dev-%07d'`, benchTwins(), 100, wantItems(b, 1, 1))
}

// BenchmarkQueryInequalityScan must read every twin: ~1 in 10,000 has a
// temperature this high, so the first page needs the whole table.
func BenchmarkQueryInequalityScan(b *testing.B) {
	benchQuery(b, `SELECT * FROM devices WHERE properties.reported.temperature > 99.98`, 0, 100, nil)
}

// BenchmarkQueryCountInequality counts with an inequality: every twin.
func BenchmarkQueryCountInequality(b *testing.B) {
	benchQuery(b, `SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature > 50`, 0, 100, wantItems(b, 1, 1))
}

// BenchmarkQueryGroupByCount is a dashboard's count by region: every twin.
func BenchmarkQueryGroupByCount(b *testing.B) {
	benchQuery(b, `SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region`, 0, 100, wantItems(b, len(recordtest.Regions), len(recordtest.Regions)))
}

// BenchmarkQueryGroupByTwo groups by two paths with an average: every twin.
func BenchmarkQueryGroupByTwo(b *testing.B) {
	benchQuery(b, `SELECT tags.model AS model, properties.reported.status AS status, COUNT() AS n, AVG(properties.reported.temperature) AS t FROM devices GROUP BY tags.model, properties.reported.status`, 0, 1000, nil)
}

// BenchmarkQueryFirstPage: SELECT * stops after the first page.
func BenchmarkQueryFirstPage(b *testing.B) {
	benchQuery(b, `SELECT * FROM devices WHERE properties.reported.temperature > 50`, 0, 100, wantItems(b, 100, 100))
}

// BenchmarkQueryPageAll pages through every twin with pages of 1,000
// projections; one op is the whole walk.
func BenchmarkQueryPageAll(b *testing.B) {
	f := sharedFleet(b)
	q, _ := query.Parse(`SELECT deviceId, properties.reported.status AS s FROM devices`)
	var lat latencies
	for b.Loop() {
		t0 := time.Now()
		tok, n := Cursor{}, 0
		for {
			page, next := f.ix.Query(q, 1000, tok)
			n += len(page.Items)
			if next == nil {
				break
			}
			tok = *next
		}
		lat = append(lat, time.Since(t0))
		if n != f.n {
			b.Fatalf("%d twins, want %d", n, f.n)
		}
	}
	lat.report(b)
}

// BenchmarkQueryUnderUpdates runs queries while another goroutine applies
// 5,000 twin updates a second to the index (a new reported temperature and
// status, and now and then a new plant), as the store's watch would. It
// reports the queries' latencies and the update rate achieved.
func BenchmarkQueryUnderUpdates(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"TagEquality", `SELECT * FROM devices WHERE tags.plant = 'plant-%05d'`},
		{"GroupByCount", `SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region`},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := sharedFleet(b)
			pool := f.updatePool()
			stop := make(chan struct{})
			var applied atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() { f.updates(pool, 5000, stop, &applied) })
			t0 := time.Now()
			vary := 0
			if c.name == "TagEquality" {
				vary = max(f.n/100, 1)
			}
			benchQuery(b, c.src, vary, 100, nil)
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(applied.Load())/time.Since(t0).Seconds(), "updates/s")
		})
	}
}

type storedUpdate struct {
	k    twinhub.Key
	data []byte
}

// updatePool makes records of the fleet's twins with new values (new
// temperatures, statuses, plants...), in their stored JSON form.
func (f *benchFleet) updatePool() []storedUpdate {
	r := rand.New(rand.NewPCG(11, 11))
	pool := make([]storedUpdate, 20000)
	for i := range pool {
		rec := recordtest.BenchRecord(r, r.IntN(f.n), f.n)
		data, err := json.Marshal(rec)
		if err != nil {
			panic(err)
		}
		pool[i] = storedUpdate{rec.Key(), data}
	}
	return pool
}

// updates applies rate updates a second from pool until stop is closed,
// as the store's watch does, through applyJSON.
func (f *benchFleet) updates(pool []storedUpdate, rate int, stop chan struct{}, applied *atomic.Int64) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	start, done := time.Now(), 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for want := int(time.Since(start).Seconds() * float64(rate)); done < want; done++ {
			u := &pool[done%len(pool)]
			if err := f.ix.applyJSON(u.k, u.data, f.rev.Add(1)); err != nil {
				panic(err)
			}
			applied.Add(1)
		}
	}
}

// BenchmarkApplyUpdate is the cost of one update to an existing twin as
// the watch delivers it (stored JSON), the making of the JSON excluded.
func BenchmarkApplyUpdate(b *testing.B) {
	f := sharedFleet(b)
	r := rand.New(rand.NewPCG(13, 13))
	type update struct {
		k    twinhub.Key
		data []byte
	}
	var ups []update
	for range 1024 {
		rec := recordtest.BenchRecord(r, r.IntN(f.n), f.n)
		data, _ := json.Marshal(rec)
		ups = append(ups, update{rec.Key(), data})
	}
	i := 0
	for b.Loop() {
		u := ups[i%len(ups)]
		if err := f.ix.applyJSON(u.k, u.data, f.rev.Add(1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
