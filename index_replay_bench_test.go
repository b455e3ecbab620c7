package twinhub_test

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

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/sas"
)

// The benchmarks of this file measure the index through a real embedded
// JetStream bucket: start-up (the watch's replay of every record into the
// index) and queries through Hub.Query, which waits for the store's last
// revision first. The bucket holds 200,000 realistic twins by default
// (TWINHUB_BENCH_REPLAY sets another number); filling it takes a while and
// is not measured.

type replayStore struct {
	e     *jetstream.Embedded
	store *jetstream.Store
	n     int
	dir   string
}

var (
	replayOnce sync.Once
	replay     *replayStore
	replayErr  error
)

func replayTwins() int {
	if s := os.Getenv("TWINHUB_BENCH_REPLAY"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 200_000
}

func filledStore(b *testing.B) *replayStore {
	b.Helper()
	replayOnce.Do(func() {
		n := replayTwins()
		dir, err := os.MkdirTemp("", "twinhub-replay-")
		if err != nil {
			replayErr = err
			return
		}
		e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: dir})
		if err != nil {
			replayErr = err
			return
		}
		store, err := jetstream.OpenStore(context.Background(), e.Conn, jetstream.StoreOptions{})
		if err != nil {
			replayErr = err
			return
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		for w := range 32 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					rec := twinhub.BenchRecord(r, i, n)
					if _, err := store.Create(context.Background(), rec.Key(), rec); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			replayErr = err
			return
		}
		replay = &replayStore{e: e, store: store, n: n, dir: dir}
	})
	if replayErr != nil {
		b.Fatal(replayErr)
	}
	return replay
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkWatchReplay starts a hub on the filled bucket: one op is
// twinhub.New, which returns once the index holds every record. It reports
// the time, the rate and the heap the hub holds per twin afterwards.
func BenchmarkWatchReplay(b *testing.B) {
	s := filledStore(b)
	policies, _ := sas.DefaultPolicies()
	var d time.Duration
	var perTwin float64
	for b.Loop() {
		before := heapAlloc()
		ctx, cancel := context.WithCancel(context.Background())
		t0 := time.Now()
		h, err := twinhub.New(ctx, twinhub.Config{Host: "bench", Policies: policies, Store: s.store})
		if err != nil {
			b.Fatal(err)
		}
		d = time.Since(t0)
		perTwin = float64(heapAlloc()-before) / float64(s.n)
		stats, _, err := h.Statistics(ctx)
		if err != nil || stats.TotalDeviceCount != s.n {
			b.Fatalf("%+v, %v", stats, err)
		}
		runtime.KeepAlive(h)
		cancel()
	}
	b.ReportMetric(d.Seconds(), "replay-s")
	b.ReportMetric(float64(s.n)/d.Seconds(), "twins/s")
	b.ReportMetric(perTwin, "heap-B/twin")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHubQuery runs queries through Hub.Query on a hub started on the
// filled bucket: parsing, the wait for the store's last revision, the
// index, the page's documents and its continuation token.
func BenchmarkHubQuery(b *testing.B) {
	s := filledStore(b)
	policies, _ := sas.DefaultPolicies()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := twinhub.New(ctx, twinhub.Config{Host: "bench", Policies: policies, Store: s.store})
	if err != nil {
		b.Fatal(err)
	}
	plants := max(s.n/100, 1)
	for _, c := range []struct {
		name string
		src  func(r *rand.Rand) string
	}{
		{"TagEquality", func(r *rand.Rand) string {
			return fmt.Sprintf(`SELECT * FROM devices WHERE tags.plant = 'plant-%05d'`, r.IntN(plants))
		}},
		{"DeviceID", func(r *rand.Rand) string {
			return fmt.Sprintf(`SELECT * FROM devices WHERE deviceId = 'dev-%07d'`, r.IntN(s.n))
		}},
		{"GroupByCount", func(*rand.Rand) string {
			return `SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region`
		}},
		{"CountInequality", func(*rand.Rand) string {
			return `SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature > 50`
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 3))
			if _, err := h.Query(ctx, c.src(r), 100, ""); err != nil { // builds a hash index
				b.Fatal(err)
			}
			var lat []time.Duration
			for b.Loop() {
				src := c.src(r)
				t0 := time.Now()
				if _, err := h.Query(ctx, src, 100, ""); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
