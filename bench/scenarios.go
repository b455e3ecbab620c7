package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const requestTimeout = 30 * time.Second

// connect: N devices connect, conc at a time (new TLS connections a
// second, with the MQTT CONNECT and the SAS check), then stay idle; the
// hub's memory before and after gives the memory per connection.
func (e *env) connect() error {
	ids := e.ids("connect", e.cfg.Devices)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	before := e.usageNow()
	rec := newRecorder()
	o := e.deviceOptions()
	var devs []*device
	res := e.measure("connect", "connections", e.cfg.ConnectConcurrency, rec, func() {
		devs = connectAll(ids, e.cfg.ConnectConcurrency, func(int) deviceOptions { return o }, rec)
	})
	defer closeAll(devs)
	if e.cfg.TLSVersion == 0 {
		res.note("devices negotiate TLS 1.3")
	} else {
		res.note("devices pinned to TLS 1.2")
	}
	// Idle a little so that the connections settle, then weigh them.
	e.weighIdle(res, before, min(e.cfg.Duration, 3*time.Second), "connected", "connection", "the paho client of each device")
	closeAll(devs)
	devs = nil
	return e.connectRaw()
}

// usageNow is the hub's usage after a collection (gcNow), the zero
// Snapshot when it is not measured. Its heap figure is zero (unknown)
// unless a collection ran first: a heap with garbage in it would make the
// memory an item adds look smaller than it is, even below zero.
func (e *env) usageNow() Snapshot {
	collected := e.gcNow()
	if e.t.Usage == nil {
		return Snapshot{}
	}
	s, _ := e.t.Usage()
	if !collected {
		s.Heap = 0
	}
	return s
}

// weighIdle lets what res opened idle a while, then records the hub's
// memory and goroutines since before per item (res.Ops of them, counted
// as count): extras rss_bytes_per_<item>, heap_bytes_per_<item>,
// goroutines_per_<item>. client says what of the load generator an
// in-process hub's figures include.
func (e *env) weighIdle(res *Result, before Snapshot, idle time.Duration, count, item, client string) {
	e.progressf("  %d %s; idle for %s", res.Ops, count, idle)
	time.Sleep(idle)
	after := e.usageNow()
	if e.t.Usage == nil || res.Ops == 0 || after == (Snapshot{}) {
		return
	}
	n := float64(res.Ops)
	res.extra(count, n)
	var per []string
	if after.RSS > 0 && before.RSS > 0 {
		b := float64(after.RSS-before.RSS) / n
		res.extra("rss_bytes_per_"+item, b)
		per = append(per, fmt.Sprintf("RSS %.1f KB", b/1024))
	}
	if after.Heap > 0 && before.Heap > 0 {
		b := float64(after.Heap-before.Heap) / n
		res.extra("heap_bytes_per_"+item, b)
		per = append(per, fmt.Sprintf("Go heap %.1f KB", b/1024))
	}
	if after.Goroutines > 0 {
		g := float64(after.Goroutines-before.Goroutines) / n
		res.extra("goroutines_per_"+item, g)
		per = append(per, fmt.Sprintf("%.1f goroutines", g))
	}
	if len(per) > 0 {
		res.note("%d %s: %s per %s", res.Ops, count, strings.Join(per, ", "), item)
	}
	if e.t.InProcess {
		res.note("memory per %s counts the hub and %s: both live in this process (--hub-process keeps them apart)", item, client)
	}
}

// padding makes a JSON string of about n bytes.
func padding(n int) string { return strings.Repeat("x", max(n, 1)) }

// twinDevice is a device that patches its reported properties: over MQTT
// (*device) or AMQP (*amqpTwinDevice).
type twinDevice interface {
	patchReported(body []byte, timeout time.Duration) error
	close()
}

func closeTwinDevices(devs []twinDevice) {
	forEach(len(devs), 64, func(i int) {
		if devs[i] != nil {
			devs[i].close()
		}
	})
}

// mqttTwinDevices connects ids over MQTT for the twin scenarios.
func (e *env) mqttTwinDevices(ids []string, onDesired func(payload []byte, at time.Time)) ([]twinDevice, error) {
	o := e.deviceOptions()
	o.subscribes = []string{twinResPrefix + "#"}
	o.onDesired = onDesired
	devs, err := e.connectDevices(ids, o)
	if err != nil {
		return nil, err
	}
	out := make([]twinDevice, len(devs))
	for i, d := range devs {
		out[i] = d
	}
	return out, nil
}

// reported: devices patch their reported properties over MQTT as fast as
// the round trips allow, each waiting for its answer before the next.
func (e *env) reported() error {
	return e.reportedLoad("reported", e.mqttTwinDevices, "MQTT reported-property PATCH round trips (request to 204), one outstanding per device")
}

// reportedAMQP is reported over AMQP: each device on its twin channel.
func (e *env) reportedAMQP() error {
	return e.reportedLoad("reported-amqp", e.connectAMQPTwins, "AMQP reported-property PATCH round trips on the twin channel (request to the 204 answer), a connection a device, one outstanding per device")
}

// reportedLoad runs the reported scenario as name, with devices connected
// by connect.
func (e *env) reportedLoad(name string, connect func(ids []string, onDesired func([]byte, time.Time)) ([]twinDevice, error), note string) error {
	ids := e.ids(name, e.cfg.Clients)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	devs, err := connect(ids, nil)
	if err != nil {
		return err
	}
	defer closeTwinDevices(devs)
	pad := padding(e.cfg.PayloadBytes - 60)
	rec := newRecorder()
	var seq atomic.Int64
	res := e.measure(name, "patches", len(devs), rec, func() {
		e.forDuration(len(devs), e.cfg.Duration, func(w int) {
			body := fmt.Appendf(nil, `{"bench":{"seq":%d,"temp":%d,"pad":%q}}`, seq.Add(1), rand.IntN(100), pad)
			start := time.Now()
			rec.done(start, devs[w].patchReported(body, requestTimeout))
		})
	})
	res.note("%s", note)
	return nil
}

// desired: a back end PATCHes desired properties at a steady pace; the
// devices, over MQTT, note when each notification arrives. The patch
// carries the time it was sent.
func (e *env) desired() error {
	return e.desiredLoad("desired", e.mqttTwinDevices, "latency from the start of the REST PATCH to the device's notification (QoS 0); errors = acknowledged patches whose notification never came")
}

// desiredAMQP is desired with the devices on their twin channels over
// AMQP.
func (e *env) desiredAMQP() error {
	return e.desiredLoad("desired-amqp", e.connectAMQPTwins, "latency from the start of the REST PATCH to the device's desired change over AMQP; errors = acknowledged patches whose change never came")
}

// desiredLoad runs the desired scenario as name (results name/patch and
// name/notify), with devices connected by connect.
func (e *env) desiredLoad(name string, connect func(ids []string, onDesired func([]byte, time.Time)) ([]twinDevice, error), note string) error {
	n := e.cfg.Clients
	ids := e.ids(name, n)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	notify := newRecorder()
	var received atomic.Int64
	onDesired := func(payload []byte, at time.Time) {
		var p struct {
			Bench struct {
				T int64 `json:"t,string"`
			} `json:"bench"`
		}
		if json.Unmarshal(payload, &p) != nil || p.Bench.T == 0 {
			return
		}
		notify.doneLatency(at.Sub(time.Unix(0, p.Bench.T)), nil)
		received.Add(1)
	}
	devs, err := connect(ids, onDesired)
	if err != nil {
		return err
	}
	defer closeTwinDevices(devs)

	patch := newRecorder()
	workers := e.desiredWorkers()
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				start := time.Now()
				body := map[string]any{"properties": map[string]any{"desired": map[string]any{
					// Nanoseconds pass IoT Hub's ±2^52 integer limit: a string.
					"bench": map[string]any{"t": strconv.FormatInt(start.UnixNano(), 10), "seq": i},
				}}}
				patch.done(start, e.svc.patchTwin(e.ctx, ids[i%n], body))
			}
		}()
	}
	var behind int64
	rate := e.cfg.DesiredRate
	res := e.measure(name+"/patch", "patches", workers, patch, func() {
		// Pace in ticks of 10 ms; if every worker is busy, the pace slips
		// and the shortfall is reported.
		interval := 10 * time.Millisecond
		perTick := float64(rate) * interval.Seconds()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		deadline := time.Now().Add(e.cfg.Duration)
		var due float64
		i := 0
		for time.Now().Before(deadline) && e.ctx.Err() == nil {
			<-tick.C
			due += perTick
			for ; due >= 1; due-- {
				select {
				case jobs <- i:
					i++
				default:
					behind++
				}
			}
		}
		close(jobs)
		wg.Wait()
	})
	res.extra("target_rate", float64(rate))
	if behind > 0 {
		res.note("%d patches could not be sent on time: all %d back-end workers were busy (the hub is slower than the pace asked)", behind, workers)
	}
	// Wait for the last notifications.
	deadline := time.Now().Add(5 * time.Second)
	for received.Load() < patch.ops.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	nres := notify.result(name+"/notify", "twinhub", "notifications", time.Duration(res.Seconds*float64(time.Second)), len(devs))
	nres.Errors = patch.ops.Load() - received.Load()
	nres.extra("target_rate", float64(rate))
	nres.note("%s", note)
	e.add(nres)
	return nil
}

// desiredWorkers is how many PATCHes may be outstanding at once: enough
// for the pace at 25 ms a PATCH, and at least --clients.
func (e *env) desiredWorkers() int { return max(e.cfg.Clients, e.cfg.DesiredRate/40) }

// twinRead: back ends GET /twins/{id}, then devices GET their twins.
func (e *env) twinRead() error {
	ids := e.ids("read", e.cfg.Clients)
	if err := e.createDevices(ids, func(i int) map[string]any { return map[string]any{"n": i, "group": i % 10} }); err != nil {
		return err
	}
	rec := newRecorder()
	e.measure("twin-read/rest", "reads", e.cfg.Clients, rec, func() {
		e.forDuration(e.cfg.Clients, e.cfg.Duration, func(int) {
			start := time.Now()
			rec.done(start, e.svc.getTwin(e.ctx, ids[rand.IntN(len(ids))]))
		})
	})
	o := e.deviceOptions()
	o.subscribes = []string{twinResPrefix + "#"}
	devs, err := e.connectDevices(ids, o)
	if err != nil {
		return err
	}
	defer closeAll(devs)
	rec = newRecorder()
	res := e.measure("twin-read/device", "reads", len(devs), rec, func() {
		e.forDuration(len(devs), e.cfg.Duration, func(w int) {
			start := time.Now()
			rec.done(start, devs[w].getTwin(requestTimeout))
		})
	})
	res.note("MQTT $iothub/twin/GET round trips, one outstanding per device")
	return nil
}

// publishLoop has each device publish QoS 1 messages, waiting for each
// PUBACK before the next; topic gives a device's topic.
func (e *env) publishLoop(name string, devs []*device, topic func(d *device) string) *Result {
	body := []byte(fmt.Sprintf(`{"temp":21.5,"pad":%q}`, padding(e.cfg.PayloadBytes-20)))
	rec := newRecorder()
	return e.measure(name, "messages", len(devs), rec, func() {
		e.forDuration(len(devs), e.cfg.Duration, func(w int) {
			start := time.Now()
			rec.done(start, devs[w].sendTelemetry(topic(devs[w]), body, requestTimeout))
		})
	})
}

// telemetry: devices publish QoS 1 device-to-cloud messages.
func (e *env) telemetry() error {
	ids := e.ids("telemetry", e.cfg.Clients)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	devs, err := e.connectDevices(ids, e.deviceOptions())
	if err != nil {
		return err
	}
	defer closeAll(devs)
	var before int64
	stored := false
	if e.t.TelemetryBytes != nil {
		before, stored = e.t.TelemetryBytes()
	}
	res := e.publishLoop("telemetry", devs, func(d *device) string {
		return "devices/" + d.id + "/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&bench=1"
	})
	res.extra("payload_bytes", float64(e.cfg.PayloadBytes))
	switch {
	case e.t.TelemetryBytes == nil:
		res.note("persistence not verified: the bench cannot see this hub's storage")
	case !stored:
		res.note("not persisted: this hub has no telemetry storage and acknowledges without storing, so this is the front end's rate only")
		res.extra("persisted", 0)
	default:
		time.Sleep(300 * time.Millisecond) // JetStream writes its blocks shortly after acknowledging
		after, _ := e.t.TelemetryBytes()
		grew := after - before
		if res.Ops > 0 {
			res.extra("stored_bytes_per_message", float64(grew)/float64(res.Ops))
		}
		if grew >= res.Ops*int64(e.cfg.PayloadBytes) {
			res.note("persisted: the PUBACK follows the hub's JetStream append; the telemetry stream grew %.1f MB (%.0f bytes a message)", float64(grew)/(1<<20), float64(grew)/float64(max(res.Ops, 1)))
			res.extra("persisted", 1)
		} else {
			res.note("not persisted? the telemetry stream grew only %d bytes for %d messages", grew, res.Ops)
			res.extra("persisted", 0)
		}
	}
	return nil
}

// query: loads twins with tags, then runs selective and full-scan
// queries while back ends update tags at a steady pace.
func (e *env) query() error {
	ids := e.ids("query", e.cfg.Twins)
	load := newRecorder()
	start := time.Now()
	err := e.createDevices(ids, func(i int) map[string]any {
		return map[string]any{"shard": i % 1000, "group": i % 100, "region": fmt.Sprintf("r%d", i%10)}
	})
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	load.ops.Store(int64(len(ids)))
	lres := load.result("query/load", "twinhub", "twins", elapsed, 8)
	lres.note("bulk POST /devices, 100 identities with tags a request, 8 at once (each is a create then a tag write)")
	e.add(lres)
	// Let the index catch up with the load before measuring.
	e.waitIndexed(len(ids), "query")

	// Updates in the background, at a steady pace.
	upd := newRecorder()
	updCtx, stopUpdates := context.WithCancel(e.ctx)
	var updWG sync.WaitGroup
	updStart := time.Now()
	updWorkers := 16
	perWorker := time.Duration(float64(time.Second) * float64(updWorkers) / float64(e.cfg.QueryUpdateRate))
	for range updWorkers {
		updWG.Add(1)
		go func() {
			defer updWG.Done()
			tick := time.NewTicker(perWorker)
			defer tick.Stop()
			for {
				select {
				case <-updCtx.Done():
					return
				case <-tick.C:
				}
				s := time.Now()
				err := e.svc.patchTwin(updCtx, ids[rand.IntN(len(ids))], map[string]any{"tags": map[string]any{"temp": rand.IntN(100)}})
				if updCtx.Err() == nil {
					upd.done(s, err)
				}
			}
		}()
	}

	type q struct {
		name, text string
		pageSize   int
	}
	queries := []q{
		{"query/by-id", "", 100},
		{"query/selective", "", 1000},
		{"query/full-scan-count", "SELECT COUNT() AS n FROM devices WHERE CONTAINS(deviceId, '77') OR tags.temp > 98", 100},
		{"query/full-scan-group", "SELECT tags.region, COUNT() AS n FROM devices GROUP BY tags.region", 100},
	}
	for _, qq := range queries {
		rec := newRecorder()
		var items atomic.Int64
		res := e.measure(qq.name, "queries", e.cfg.QueryClients, rec, func() {
			e.forDuration(e.cfg.QueryClients, max(e.cfg.Duration/2, time.Second), func(int) {
				text := qq.text
				switch qq.name {
				case "query/by-id":
					text = fmt.Sprintf("SELECT * FROM devices WHERE deviceId = '%s'", ids[rand.IntN(len(ids))])
				case "query/selective":
					// shard k implies region k%10: N/1000 twins match.
					k := rand.IntN(1000)
					text = fmt.Sprintf("SELECT * FROM devices WHERE tags.shard = %d AND tags.region = 'r%d'", k, k%10)
				}
				s := time.Now()
				n, err := e.svc.query(e.ctx, text, qq.pageSize)
				rec.done(s, err)
				items.Add(int64(n))
			})
		})
		res.extra("twins", float64(len(ids)))
		if res.Ops > 0 {
			res.extra("items_per_query", float64(items.Load())/float64(res.Ops))
		}
		res.extra("per_minute", res.Rate*60)
		if qq.text != "" {
			res.note("query: %s", qq.text)
		}
	}
	stopUpdates()
	updWG.Wait()
	ures := upd.result("query/updates", "twinhub", "tag updates", time.Since(updStart), updWorkers)
	ures.extra("target_rate", float64(e.cfg.QueryUpdateRate))
	ures.note("REST tag PATCHes that flowed while the queries ran")
	e.add(ures)
	return nil
}

// waitIndexed waits (up to 30 s) until a query counts n twins of the
// scenario, so that queries measure a loaded index.
func (e *env) waitIndexed(n int, scenario string) {
	deadline := time.Now().Add(30 * time.Second)
	q := fmt.Sprintf("SELECT COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, '%s-%s-')", e.prefix, scenario)
	body, _ := json.Marshal(map[string]string{"query": q})
	for time.Now().Before(deadline) {
		data, _, err := e.svc.do(e.ctx, "POST", "/devices/query", nil, body)
		if err != nil {
			return
		}
		var rows []struct {
			N int `json:"n"`
		}
		if json.Unmarshal(data, &rows) == nil && len(rows) == 1 && rows[0].N >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// methods: back ends invoke a direct method on connected devices, which
// answer at once.
func (e *env) methods() error {
	ok, err := e.svc.methodsSupported(e.ctx)
	if err != nil {
		return err
	}
	if !ok {
		e.skip("methods: this hub does not serve POST /twins/{id}/methods yet (TODO: measure direct method round trips once it does)")
		return nil
	}
	ids := e.ids("methods", e.cfg.Clients)
	if err := e.createDevices(ids, nil); err != nil {
		return err
	}
	o := e.deviceOptions()
	o.onMethod = func(d *device, method, rid string, payload []byte) {
		d.answerMethod(rid, 200, payload)
	}
	devs, err := e.connectDevices(ids, o)
	if err != nil {
		return err
	}
	defer closeAll(devs)
	rec := newRecorder()
	res := e.measure("methods", "calls", e.cfg.Clients, rec, func() {
		e.forDuration(e.cfg.Clients, e.cfg.Duration, func(w int) {
			start := time.Now()
			status, err := e.svc.invokeMethod(e.ctx, ids[w], "ping", map[string]int{"n": w}, 10)
			if err == nil && status != 200 {
				err = fmt.Errorf("device status %d", status)
			}
			rec.done(start, err)
		})
	})
	res.note("REST POST /twins/{id}/methods round trips through the device, one outstanding per device")
	return nil
}
