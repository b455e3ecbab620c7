package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// million is issue 16's scenario, at --twins (the name says the goal): a
// bulk load through the REST bulk API (100 a request, 16 in flight), then
// random tag PATCHes over REST from --clients back ends with a by-id and a
// selective query every 20 ms meanwhile, then reported patches over MQTT
// from devices chosen at random (each connects, sends millionBatch
// patches, and makes way for another), the hub's memory, and with a hub
// of its own (--hub-process) a restart timed to the first answered query.
// With the hub's metrics (--hub-process, --hub-metrics) it adds the
// hub's own time for a query page over the update phase.
func (e *env) million() error {
	ids := e.ids("million", e.cfg.Twins)
	start := time.Now()
	err := e.loadDevices(ids, 16, func(i int) map[string]any {
		return map[string]any{"shard": i % 1000, "region": fmt.Sprintf("r%d", i%10), "n": i}
	})
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	load := newRecorder()
	load.ops.Store(int64(len(ids)))
	lres := load.result("million/load", "twinhub", "twins", elapsed, 16)
	lres.note("bulk POST /devices, 100 identities with three tags a request, 16 in flight (each twin stored with its identity in one write)")
	e.add(lres)
	e.waitIndexed(len(ids), "million")

	// Random tag updates over REST, with the two queries meanwhile.
	// A query's figure is its first page (100 twins), which is what an
	// SDK's query.next() waits for; the selective query's whole walk
	// (twins/1000 results: ten pages at a million) is a figure of its own.
	byID, selective, selectiveAll := newRecorder(), newRecorder(), newRecorder()
	qctx, stopQueries := context.WithCancel(e.ctx)
	var qwg sync.WaitGroup
	every := func(first, all *recorder, text func() string) {
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-qctx.Done():
					return
				case <-tick.C:
				}
				s := time.Now()
				var firstPage time.Duration
				_, err := e.svc.queryPages(qctx, text(), 100, func() {
					if firstPage == 0 {
						firstPage = time.Since(s)
					}
				})
				if qctx.Err() != nil {
					continue
				}
				if firstPage > 0 {
					first.doneLatency(firstPage, nil) // a later page may have failed: all counts that
				} else {
					first.done(s, err)
				}
				if all != nil {
					all.done(s, err)
				}
			}
		}()
	}
	every(byID, nil, func() string {
		return fmt.Sprintf("SELECT * FROM devices WHERE deviceId = '%s'", ids[rand.IntN(len(ids))])
	})
	every(selective, selectiveAll, func() string {
		// shard k implies region k%10: N/1000 twins match.
		k := rand.IntN(1000)
		return fmt.Sprintf("SELECT * FROM devices WHERE tags.shard = %d AND tags.region = 'r%d'", k, k%10)
	})
	// The same by-id query from a process of its own (probe.go).
	byIDApart := newRecorder()
	// It runs for nine tenths of the phase, so that it ends within it.
	probed, err := e.startProbe(ids, e.cfg.Duration*9/10, byIDApart)
	if err != nil {
		stopQueries()
		qwg.Wait()
		return err
	}
	queryPages := e.hubHistogramOver(queryDurationMetric, nil)
	updates := e.hubHistogramOver(httpDurationMetric, map[string]string{"route": "PATCH /twins/{id}"})
	upd := newRecorder()
	ures := e.measure("million/updates-rest", "tag updates", e.cfg.Clients, upd, func() {
		e.forDuration(e.cfg.Clients, e.cfg.Duration, func(int) {
			s := time.Now()
			upd.done(s, e.svc.patchTwin(e.ctx, ids[rand.IntN(len(ids))], map[string]any{"tags": map[string]any{"temp": rand.IntN(100)}}))
		})
	})
	stopQueries()
	qwg.Wait()
	var apart *Result
	if probed != nil {
		if err := probed(); err != nil {
			return err
		}
		apart = byIDApart.result("million/by-id-apart", "twinhub", "queries", e.cfg.Duration*9/10, 1)
		apart.note("the by-id query from a back end in a process of its own (twinhub bench-probe), every 20 ms while the updates ran: what an application sees, without the load generator's own wait for a core")
	}
	ures.extra("twins", float64(len(ids)))
	ures.note("REST tag PATCHes of random twins, %d back ends, while a by-id and a selective query ran every 20 ms each", e.cfg.Clients)
	for _, q := range []struct {
		name string
		rec  *recorder
		note string
	}{
		{"million/by-id", byID, "SELECT * FROM devices WHERE deviceId = '<random>', every 20 ms while the updates ran"},
		{"million/selective", selective, "SELECT * FROM devices WHERE tags.shard = k AND tags.region = 'r<k%10>' (twins/1000 match), every 20 ms while the updates ran: its first page of 100"},
		{"million/selective-all", selectiveAll, "the selective query's every page, one after the other (twins/1000 results, 100 a page)"},
	} {
		r := q.rec.result(q.name, "twinhub", "queries", e.cfg.Duration, 1)
		r.note("%s", q.note)
		e.add(r)
	}
	if apart != nil {
		e.add(apart)
	}
	updates("million/updates-rest-hub", "tag updates", "the hub's own time to answer a twin PATCH (twinhub_http_request_duration_seconds, route PATCH /twins/{id}: from routing the request to the end of its answer) over the update phase; quantiles estimated within the histogram's buckets")
	queryPages("million/query-pages-hub", "query pages", "the hub's own time to answer a query page (twinhub_query_duration_seconds) over the update phase: every page of both queries, by id and selective; quantiles estimated within the histogram's buckets")

	// Reported patches over MQTT, from devices picked at random.
	rep := newRecorder()
	var connects atomic.Int64
	o := e.deviceOptions()
	o.subscribes = []string{twinResPrefix + "#"}
	pad := padding(e.cfg.PayloadBytes - 60)
	rres := e.measure("million/reported-mqtt", "patches", e.cfg.Clients, rep, func() {
		clients := min(e.cfg.Clients, len(ids))
		e.forDuration(clients, e.cfg.Duration, func(w int) {
			// Worker w picks among the devices i with i%clients == w: no
			// two connect as the same device (the second would take the
			// first's connection).
			i := w + clients*rand.IntN((len(ids)-w+clients-1)/clients)
			d, err := connectDevice(ids[i], o)
			if err != nil {
				rep.done(time.Now(), err)
				return
			}
			connects.Add(1)
			defer d.close()
			for range millionBatch {
				if e.ctx.Err() != nil {
					return
				}
				body := fmt.Appendf(nil, `{"bench":{"temp":%d,"pad":%q}}`, rand.IntN(100), pad)
				s := time.Now()
				rep.done(s, d.patchReported(body, requestTimeout))
			}
		})
	})
	rres.extra("connections", float64(connects.Load()))
	rres.note("MQTT reported PATCH round trips from devices picked at random (each connects, sends %d, disconnects), %d at once", millionBatch, e.cfg.Clients)

	if e.t.Usage != nil {
		if u, err := e.t.Usage(); err == nil && u.RSS > 0 {
			r := &Result{Name: "million/memory", Kind: "twinhub", Unit: "bytes", Hub: &Usage{RSSBytes: u.RSS, Note: e.t.UsageNote}}
			r.extra("rss_bytes", float64(u.RSS))
			r.extra("rss_bytes_per_twin", float64(u.RSS)/float64(len(ids)))
			r.note("the hub's RSS after the updates: %.0f MiB, %.0f bytes a twin", float64(u.RSS)/(1<<20), float64(u.RSS)/float64(len(ids)))
			e.add(r)
		}
	}
	if e.t.Restart == nil {
		e.skip("million/restart: needs a hub of its own (--hub-process)")
		return nil
	}
	started, err := e.t.Restart()
	if err != nil {
		return fmt.Errorf("restarting the hub: %w", err)
	}
	q := fmt.Sprintf("SELECT * FROM devices WHERE deviceId = '%s'", ids[len(ids)-1])
	for {
		n, err := e.svc.query(e.ctx, q, 100)
		if err == nil && n == 1 {
			break
		}
		if e.ctx.Err() != nil {
			return e.ctx.Err()
		}
		if time.Since(started) > 10*time.Minute {
			return fmt.Errorf("no query answered within 10 minutes of the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(started)
	ms := float64(took) / float64(time.Millisecond)
	r := &Result{Name: "million/restart", Kind: "twinhub", Unit: "restarts", Ops: 1, Seconds: took.Seconds(), Rate: 1 / took.Seconds(),
		Latency: &Latency{P50: ms, P99: ms, P999: ms, Max: ms, Mean: ms}}
	r.extra("seconds", took.Seconds())
	r.note("from starting the hub process again (same data) to the first by-id query answered with its twin: %.1f s", took.Seconds())
	e.add(r)
	return nil
}

// millionBatch is how many reported patches a device of the million
// scenario sends before another takes its place.
const millionBatch = 20
