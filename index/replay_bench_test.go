package index_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/recordtest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

// BenchmarkStore measures the index through a real embedded JetStream
// bucket: start-up (Replay: the watch's replay of every record into the
// index) and queries through Hub.Query, which waits for the store's last
// revision first (Query/...). The bucket holds 200,000 realistic twins by
// default (TWINHUB_BENCH_REPLAY sets another number), in a temporary
// folder removed at the end; filling it takes a while and is not measured.
func BenchmarkStore(b *testing.B) {
	n := 200_000
	if s := os.Getenv("TWINHUB_BENCH_REPLAY"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	store, err := jetstream.OpenStore(context.Background(), e.Conn, jetstream.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, store, n)
	policies, _ := sas.DefaultPolicies()
	b.Run("Replay", func(b *testing.B) { benchReplay(b, store, policies, n) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := hub.New(ctx, hub.Config{Host: "bench", Policies: policies, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	plants := max(n/100, 1)
	for _, c := range []struct {
		name string
		src  func(r *rand.Rand) string
	}{
		{"TagEquality", func(r *rand.Rand) string {
			return fmt.Sprintf(`SELECT * FROM devices WHERE tags.plant = 'plant-%05d'`, r.IntN(plants))
		}},
		{"DeviceID", func(r *rand.Rand) string {
			return fmt.Sprintf(`SELECT * FROM devices WHERE deviceId = 'dev-%07d'`, r.IntN(n))
		}},
		{"GroupByCount", func(*rand.Rand) string {
			return `SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region`
		}},
		{"CountInequality", func(*rand.Rand) string {
			return `SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature > 50`
		}},
	} {
		b.Run("Query/"+c.name, func(b *testing.B) { benchHubQuery(b, h, c.src) })
	}
}

// fill writes n twins of the benchmark fleet, in random order, as a hub
// whose twins have been updated over time holds them, and as the watch
// replays them.
func fill(b *testing.B, store *jetstream.Store, n int) {
	order := rand.New(rand.NewPCG(5, 5)).Perm(n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				rec := recordtest.BenchRecord(r, order[i], n)
				if _, err := store.Create(context.Background(), rec.Key(), rec); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchReplay starts hubs on the filled bucket: one op is hub.New,
// which returns once the index holds every record. It reports the median
// time, the rate and the heap the hub holds per twin afterwards.
func benchReplay(b *testing.B, store *jetstream.Store, policies []sas.Policy, n int) {
	var times []time.Duration
	var perTwin float64
	for b.Loop() {
		before := heapAlloc()
		ctx, cancel := context.WithCancel(context.Background())
		t0 := time.Now()
		h, err := hub.New(ctx, hub.Config{Host: "bench", Policies: policies, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
		perTwin = float64(heapAlloc()-before) / float64(n)
		stats, _, err := h.Statistics(ctx)
		if err != nil || stats.TotalDeviceCount != n {
			b.Fatalf("%+v, %v", stats, err)
		}
		runtime.KeepAlive(h)
		cancel()
	}
	slices.Sort(times)
	d := times[len(times)/2]
	b.ReportMetric(d.Seconds(), "replay-s")
	b.ReportMetric(float64(n)/d.Seconds(), "twins/s")
	b.ReportMetric(perTwin, "heap-B/twin")
	b.ReportMetric(0, "ns/op")
}

// benchHubQuery runs queries through Hub.Query: parsing, the wait for the
// store's last revision, the index, the page's documents and its
// continuation token.
func benchHubQuery(b *testing.B, h *hub.Hub, src func(*rand.Rand) string) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 3))
	if _, err := h.Query(ctx, src(r), 100, ""); err != nil { // builds a hash index
		b.Fatal(err)
	}
	var lat []time.Duration
	for b.Loop() {
		s := src(r)
		t0 := time.Now()
		if _, err := h.Query(ctx, s, 100, ""); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
	b.ReportMetric(0, "ns/op")
}
