package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"

	"github.com/twinhub/twinhub/internal/servetest"
)

// TestCrashSafetyAtScale kills the hub with SIGKILL while 64 back ends
// (iotservice) update the tags of twins picked at random among many, as
// the million-twin benchmark does, and checks after each restart that
// every acknowledged update is there and no twin's version went back.
// Random twins of a big registry are the writes that touch cold storage
// (each replaces a record in a message block that is not in memory).
//
// The hub saves its index snapshot every second while twins change, so
// each restart starts from a snapshot taken during the load and reads
// the store's changes after it (the reads below come from that index).
//
// TWINHUB_CRASH_TWINS sets the registry's size (5,000 by default; issue
// 16's run used 1,000,000) and TWINHUB_CRASH_ROUNDS the kills (2).
func TestCrashSafetyAtScale(t *testing.T) {
	n := servetest.EnvCount(t, "TWINHUB_CRASH_TWINS", 5000, 100, 2_000_000)
	rounds := servetest.EnvCount(t, "TWINHUB_CRASH_ROUNDS", 2, 1, 100)
	p := newProc(t, "127.0.0.60", "--index-snapshot-interval", "1s")
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("scale-%07d", i)
	}
	began := time.Now()
	registerDevices(t, p, ids)
	t.Logf("registered %d devices in %s", n, time.Since(began).Round(time.Millisecond))

	// Worker w sets tag "w<w>" of a random twin to its next sequence
	// number; acked[w] holds, by twin, the last one acknowledged, so the
	// restarted hub must show at least that. versions holds, by twin, the
	// largest acknowledged twin version.
	const workers = 64
	acked := make([]map[int]int, workers)
	for w := range acked {
		acked[w] = map[int]int{}
	}
	var versions sync.Map // twin index -> *atomic.Int64
	seq := make([]int, workers)
	total := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 16))
	for round := 1; round <= rounds; round++ {
		svc, err := newService(p, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var updates atomic.Int64
		for w := range workers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for ctx.Err() == nil {
					i := r.IntN(n)
					seq[w]++
					s := seq[w]
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					tw, err := svc.UpdateDeviceTwin(cctx, &iotservice.Twin{DeviceID: ids[i], Tags: map[string]any{fmt.Sprintf("w%d", w): s}})
					cancel()
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					acked[w][i] = s
					v, _ := versions.LoadOrStore(i, new(atomic.Int64))
					raise(v.(*atomic.Int64), int64(tw.Version))
					updates.Add(1)
				}
			})
		}
		// Kill 3 to 8 s into the load (the first updates of a big registry
		// start slowly: every block they touch is read from disk).
		after := 3*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
		time.Sleep(after)
		p.Kill()
		cancel()
		wg.Wait()
		svc.Close()
		total += int(updates.Load())

		restarted := time.Now()
		p.Start(t)
		listening := time.Since(restarted)
		c := p.rest()
		c.owner(t, 200, "GET", "/twins/"+ids[0], nil)
		firstRead := time.Since(restarted)

		twins := map[int]bool{}
		for w := range acked {
			for i := range acked[w] {
				twins[i] = true
			}
		}
		loaded := "?"
		if m := indexLoaded.FindAllStringSubmatch(p.Output(), -1); len(m) > 0 {
			loaded = m[len(m)-1][1]
		}
		since := "?"
		if m := snapshotLoaded.FindAllStringSubmatch(p.Output(), -1); len(m) < round {
			t.Errorf("round %d: the restart did not start from an index snapshot (%d loaded in all)", round, len(m))
		} else {
			since = m[len(m)-1][1]
		}
		lost, back := checkTwins(t, c, ids, twins, acked, &versions)
		t.Logf("round %d: killed after %s; %d updates acknowledged in the round, %d in all, over %d twins; restarted: index loaded in %s (a snapshot and %s changes after it), listening in %s, first twin read in %s; lost %d, versions gone back %d",
			round, after.Round(time.Millisecond), updates.Load(), total, len(twins), loaded, since, listening.Round(time.Millisecond), firstRead.Round(time.Millisecond), lost, back)
		if updates.Load() == 0 {
			t.Errorf("round %d: no update was acknowledged: the load did not run", round)
		}
	}
}

// snapshotLoaded finds the hub's log of an index snapshot loaded, with the
// store's changes after it.
var snapshotLoaded = regexp.MustCompile(`msg="index snapshot loaded".*"changes since"=(\d+)`)

// raise sets v to x if x is larger.
func raise(v *atomic.Int64, x int64) {
	for old := v.Load(); x > old && !v.CompareAndSwap(old, x); old = v.Load() {
	}
}

// registerDevices registers the ids through the bulk API (iotservice's
// CreateDevices, 100 a request, 16 requests in flight).
func registerDevices(t *testing.T, p *proc, ids []string) {
	svc, err := newService(p, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	batches := make(chan []string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Go(func() {
			for b := range batches {
				devs := make([]*iotservice.Device, len(b))
				for i, id := range b {
					devs[i] = &iotservice.Device{DeviceID: id}
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res, err := svc.CreateDevices(ctx, devs)
				cancel()
				if err == nil && !res.IsSuccessful {
					err = fmt.Errorf("bulk create: %+v", res.Errors)
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for from := 0; from < len(ids); from += 100 {
		if failed.Load() != nil {
			break
		}
		batches <- ids[from:min(from+100, len(ids))]
	}
	close(batches)
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(err)
	}
}

// checkTwins reads every twin that had an update acknowledged (16 reads
// in flight) and counts the acknowledged updates it does not show and the
// twins whose version is below one acknowledged, each logged.
func checkTwins(t *testing.T, c *rest, ids []string, twins map[int]bool, acked []map[int]int, versions *sync.Map) (lost, back int) {
	todo := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range todo {
				doc := c.owner(t, http.StatusOK, "GET", "/twins/"+ids[i], nil).json(t)
				tags, _ := doc["tags"].(map[string]any)
				version, _ := doc["version"].(float64)
				mu.Lock()
				for w := range acked {
					want, ok := acked[w][i]
					if !ok {
						continue
					}
					if got, _ := tags[fmt.Sprintf("w%d", w)].(float64); int(got) < want {
						lost++
						t.Errorf("%s: tag w%d is %v, but %d was acknowledged", ids[i], w, tags[fmt.Sprintf("w%d", w)], want)
					}
				}
				if v, ok := versions.Load(i); ok && int64(version) < v.(*atomic.Int64).Load() {
					back++
					t.Errorf("%s: version %v, but %d was acknowledged", ids[i], version, v.(*atomic.Int64).Load())
				}
				mu.Unlock()
			}
		})
	}
	for i := range twins {
		todo <- i
	}
	close(todo)
	wg.Wait()
	return lost, back
}

// newService is an iotservice client of the hub as iothubowner whose
// requests time out after timeout.
func newService(p *proc, timeout time.Duration) (*iotservice.Client, error) {
	hc := &http.Client{Transport: p.rest().hc.Transport, Timeout: timeout}
	return iotservice.NewFromConnectionString(
		fmt.Sprintf("HostName=%s;SharedAccessKeyName=iothubowner;SharedAccessKey=%s", p.HostName, p.Policies["iothubowner"].PrimaryKey),
		iotservice.WithHTTPClient(hc))
}
