package reliability

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM to a hub under mixed load and checks
// that it exits cleanly, that every write it acknowledged is there after a
// restart, and that it recorded its devices as disconnected on the way out.
func TestGracefulShutdown(t *testing.T) {
	p := newProc(t, "127.0.0.67")
	c := p.rest()
	var devices []device
	for i := range 8 {
		devices = append(devices, c.createDevice(t, fmt.Sprintf("term-%d", i)))
	}
	states := func() map[string]*seqState {
		m := map[string]*seqState{}
		for _, d := range devices {
			m[d.ID] = &seqState{next: 1}
		}
		return m
	}
	var offline []device
	for i := range 2 {
		offline = append(offline, c.createDevice(t, fmt.Sprintf("term-c2d-%d", i)))
	}
	loads := []workload{
		&reportedLoad{devices: devices, state: states()},
		&serviceLoad{devices: devices, state: states()},
		newTelemetryLoad(devices[:4]),
		newC2DLoad(offline),
	}
	idle := c.createDevice(t, "term-idle")
	if _, err := p.connectDevice(t, idle); err != nil {
		t.Fatal(err)
	}
	if st := c.owner(t, 200, "GET", "/devices/"+idle.ID, nil).json(t)["connectionState"]; st != "Connected" {
		t.Fatalf("idle device: connectionState %v while connected", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range loads {
		wg.Go(func() { w.run(ctx, t, p) })
	}
	time.Sleep(1500 * time.Millisecond)
	took, err := p.Stop()
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("SIGTERM under load: %v", err)
	}
	t.Logf("SIGTERM under load: the hub exited cleanly in %s", took.Round(time.Millisecond))

	p.Start(t)
	// The owner key is printed at the data folder's first start, not at
	// the restart (a container's stdout is its log).
	key := p.Policies["iothubowner"].PrimaryKey
	runs := strings.Split(p.Output(), "### start:")
	if first, last := runs[1], runs[len(runs)-1]; !strings.Contains(first, key) || strings.Contains(last, key) ||
		!strings.Contains(last, "owner connection:    twinhub --data") {
		t.Errorf("the owner key should be printed at the first start only; the runs printed:\n%s", p.Output())
	}
	c = p.rest()
	var acked, found int
	for _, w := range loads {
		a, f, problems := w.verify(t, p, c)
		for _, pr := range problems {
			t.Error(pr)
		}
		t.Logf("after SIGTERM and restart: %s: acknowledged %d, found %d, lost %d", w.name(), a, f, a-f)
		acked, found = acked+a, found+f
	}
	t.Logf("after SIGTERM and restart: all writes: acknowledged %d, found %d, lost %d", acked, found, acked-found)
	for _, d := range append(devices, idle) {
		if st := c.owner(t, 200, "GET", "/devices/"+d.ID, nil).json(t)["connectionState"]; st != "Disconnected" {
			t.Errorf("%s: connectionState %v after the hub stopped", d.ID, st)
		}
	}
}

var indexLoaded = regexp.MustCompile(`msg="index loaded" took=(\S+)`)

// TestRestartManyTwins fills a hub with twins through the bulk registry
// API (20,000 by default, 100,000 with TWINHUB_LONG=1), restarts it and
// reports how long it took to serve again. Nothing is asserted about the
// time; the figures go to docs/RELIABILITY.md.
func TestRestartManyTwins(t *testing.T) {
	n := pick(20000, 100000)
	p := newProc(t, "127.0.0.68")
	c := p.rest()
	const batch = 100
	began := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				first := int(next.Add(batch)) - batch
				if first >= n || t.Failed() {
					return
				}
				var entries []map[string]any
				for i := first; i < min(first+batch, n); i++ {
					entries = append(entries, map[string]any{
						"id": fmt.Sprintf("many-%06d", i), "importMode": "create",
						"tags":       map[string]any{"site": fmt.Sprintf("site-%d", i%100), "n": i},
						"properties": map[string]any{"desired": map[string]any{"interval": 30, "mode": "normal"}},
					})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				r, err := c.do(ctx, p.policyToken("iothubowner"), "POST", "/devices", entries)
				cancel()
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("bulk create: %v %d %.300s", err, r.Status, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	created := time.Since(began)
	t.Logf("created %d devices with tags and desired properties through the bulk API in %s (%.0f/s)", n, created.Round(time.Millisecond), float64(n)/created.Seconds())

	took, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	p.Start(t)
	loaded := "?"
	if m := indexLoaded.FindAllStringSubmatch(p.Output(), -1); len(m) > 0 {
		loaded = m[len(m)-1][1]
	}
	t.Logf("%d twins: SIGTERM exit %s; restart until both listeners serve %s (query index loaded in %s)",
		n, took.Round(time.Millisecond), p.Ready.Round(time.Millisecond), loaded)
	stats := c.owner(t, 200, "GET", "/statistics/devices", nil).json(t)
	if got := stats["totalDeviceCount"]; got != float64(n) {
		t.Errorf("after the restart: totalDeviceCount %v, want %d", got, n)
	}
	r := c.owner(t, 200, "POST", "/devices/query", map[string]any{"query": "SELECT COUNT() AS n FROM devices WHERE tags.site = 'site-7'"})
	t.Logf("a query after the restart: %s", r.Body)
}
