package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scenarios lists the scenarios in the order `all` runs them (with each
// one's baselines and AMQP counterpart beside it: allOrder), and
// Baselines the baselines. The scenarios that load --twins twins (query,
// jobs, configurations) come after those whose ratios compare two
// protocols: the run's devices are deleted only at its end, and a hub
// holding 100,000 more twins spends more on the garbage collector a
// message (telemetry over MQTT 13.6 -> 16.1 µs, over AMQP 15.4 -> 17.8 µs),
// which measured the AMQP scenarios, once after query, on a heavier hub
// than their MQTT measures.
var (
	Scenarios = []string{"connect", "reported", "desired", "twin-read", "telemetry", "methods", "telemetry-amqp", "reported-amqp", "desired-amqp", "sessions-amqp", "eventhub", "c2d-amqp", "query", "jobs", "configurations"}
	Baselines = []string{"kv", "mosquitto", "tls", "https", "c2d-rest"}
	// Heavy scenarios run only when named: not part of "all".
	Heavy = []string{"million"}
)

// baselinesOf says which baselines give a scenario's numbers their ratio.
var baselinesOf = map[string][]string{
	"connect":   {"tls"},
	"reported":  {"kv"},
	"desired":   {"kv"},
	"telemetry": {"mosquitto"},
	"twin-read": {"https"},
	"c2d-amqp":  {"c2d-rest"},
	// The MQTT figures of the same run are the measure of the AMQP ones.
	"telemetry-amqp": {"telemetry"},
	"reported-amqp":  {"reported"},
	"desired-amqp":   {"desired"},
}

// Config scales the scenarios. Zero fields take the defaults of
// DefaultConfig (or QuickConfig).
type Config struct {
	// Devices is how many devices the connect scenario connects, and
	// sessions-amqp multiplexes.
	Devices int `json:"devices"`
	// ConnectConcurrency is how many connections are being made at once.
	ConnectConcurrency int `json:"connect_concurrency"`
	// Clients is how many devices (or back-end workers) generate load in
	// the other scenarios, and the concurrency of the KV baseline.
	Clients int `json:"clients"`
	// Duration is how long each measured phase runs.
	Duration time.Duration `json:"duration_ns"`
	// DesiredRate is the pace of desired-property PATCHes a second.
	DesiredRate int `json:"desired_rate"`
	// Twins is how many twins the query scenario loads.
	Twins int `json:"twins"`
	// QueryClients is how many queries run at once.
	QueryClients int `json:"query_clients"`
	// QueryUpdateRate is the pace of twin updates during queries.
	QueryUpdateRate int `json:"query_update_rate"`
	// TLSVersion pins the devices' TLS version (0: TLS 1.3 allowed).
	TLSVersion uint16 `json:"tls_version,omitempty"`
	// PayloadBytes is the size of telemetry bodies and reported patches.
	PayloadBytes int `json:"payload_bytes"`
	// NoBaselines skips the baselines of single scenarios.
	NoBaselines bool `json:"no_baselines,omitempty"`
	// Mosquitto is the mosquitto binary (default: found on PATH or in
	// /usr/sbin).
	Mosquitto string `json:"-"`
	// ProbeCommand runs a query probe (RunProbe) in a process of its
	// own: `twinhub bench-probe`. Without it the million scenario
	// measures its queries in this process only.
	ProbeCommand []string `json:"-"`
	// BareServerCommand runs the bare server of the https and tls
	// baselines in a process of its own (RunBareServer), with the kind
	// as its last argument: `twinhub bench-bare-server`. Without it, or
	// with the hub in this process, the server runs in this process.
	BareServerCommand []string `json:"-"`
	// Progress receives progress lines (nil: none).
	Progress io.Writer `json:"-"`
}

// DefaultConfig finishes each scenario in well under a minute on two cores.
func DefaultConfig() Config {
	return Config{
		Devices: 2000, ConnectConcurrency: 32, Clients: 64, Duration: 10 * time.Second,
		DesiredRate: 5000, Twins: 100_000, QueryClients: 4, QueryUpdateRate: 1000, PayloadBytes: 256,
	}
}

// QuickConfig runs every scenario and baseline at small scale: `all`
// takes well under a minute. Numbers are rougher.
func QuickConfig() Config {
	return Config{
		Devices: 300, ConnectConcurrency: 16, Clients: 32, Duration: 2 * time.Second,
		DesiredRate: 2000, Twins: 5_000, QueryClients: 2, QueryUpdateRate: 500, PayloadBytes: 256,
	}
}

// Fill sets the fields of c that are zero from d.
func (c *Config) Fill(d Config) {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	set(&c.Devices, d.Devices)
	set(&c.ConnectConcurrency, d.ConnectConcurrency)
	set(&c.Clients, d.Clients)
	set(&c.DesiredRate, d.DesiredRate)
	set(&c.Twins, d.Twins)
	set(&c.QueryClients, d.QueryClients)
	set(&c.QueryUpdateRate, d.QueryUpdateRate)
	set(&c.PayloadBytes, d.PayloadBytes)
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
}

// Report is what a run measured; it is written as JSON.
type Report struct {
	Machine Machine   `json:"machine"`
	Command string    `json:"command,omitempty"`
	Hub     HubInfo   `json:"hub"`
	Config  Config    `json:"config"`
	Results []*Result `json:"results"`
	Ratios  []Ratio   `json:"ratios,omitempty"`
	Goals   []Goal    `json:"goals,omitempty"`
	Skipped []string  `json:"skipped,omitempty"`
	Seconds float64   `json:"seconds"`
}

// HubInfo says which hub was measured.
type HubInfo struct {
	Host      string `json:"host"`
	HTTPSAddr string `json:"https_addr"`
	MQTTAddr  string `json:"mqtt_addr"`
	InProcess bool   `json:"in_process"`
	UsageNote string `json:"usage_note,omitempty"`
}

// env is the state of one run.
type env struct {
	ctx    context.Context
	t      *Target
	cfg    Config
	svc    *service
	key    string // SAS key of every device the run creates
	prefix string // of every device id the run creates
	report *Report
	// created lists the devices to delete afterwards (external hubs).
	created []string
	// temp folders to remove at the end
	cleanups []func()
}

// Check refuses names that are neither scenarios, baselines nor "all".
func Check(names []string) error {
	for _, n := range names {
		if n != "all" && !slices.Contains(Scenarios, n) && !slices.Contains(Baselines, n) && !slices.Contains(Heavy, n) {
			return fmt.Errorf("no scenario %q: choose from %s, %s or all", n, strings.Join(Scenarios, ", "), strings.Join(Baselines, ", "))
		}
	}
	return nil
}

// Run runs the named scenarios (or "all", or a baseline name) against
// the target and returns the report. command is recorded in it.
func Run(ctx context.Context, t *Target, cfg Config, names []string, command string) (*Report, error) {
	cfg.Fill(DefaultConfig())
	var run []string
	for _, n := range names {
		switch {
		case n == "all":
			run = append(run, allOrder()...)
		case slices.Contains(Scenarios, n) || slices.Contains(Baselines, n) || slices.Contains(Heavy, n):
			run = append(run, n)
			if !cfg.NoBaselines {
				run = append(run, baselinesOf[n]...)
			}
		default:
			return nil, fmt.Errorf("no scenario %q: choose from %s, %s or all", n, strings.Join(Scenarios, ", "), strings.Join(Baselines, ", "))
		}
	}
	run = dedupe(run)

	e := &env{
		ctx: ctx, t: t, cfg: cfg,
		svc:    newService(t, max(cfg.Clients, cfg.QueryClients*2, cfg.DesiredRate/40)+16),
		key:    newKey(),
		prefix: "bench-" + randHex(3),
		report: &Report{
			Machine: machine(), Command: command, Config: cfg,
			Hub: HubInfo{Host: t.Host, HTTPSAddr: t.HTTPSAddr, MQTTAddr: t.MQTTAddr, InProcess: t.InProcess, UsageNote: t.UsageNote},
		},
	}
	defer e.svc.close()
	defer func() {
		for _, f := range slices.Backward(e.cleanups) {
			f()
		}
	}()
	start := time.Now()
	for _, name := range run {
		if err := ctx.Err(); err != nil {
			return e.report, err
		}
		e.progressf("== %s", name)
		var err error
		switch name {
		case "connect":
			err = e.connect()
		case "reported":
			err = e.reported()
		case "desired":
			err = e.desired()
		case "twin-read":
			err = e.twinRead()
		case "telemetry":
			err = e.telemetry()
		case "query":
			err = e.query()
		case "methods":
			err = e.methods()
		case "kv":
			err = e.kvBaseline()
		case "mosquitto":
			err = e.mosquittoBaseline()
		case "tls":
			err = e.tlsBaseline()
		case "https":
			err = e.httpsBaseline()
		case "telemetry-amqp":
			err = e.telemetryAMQP()
		case "reported-amqp":
			err = e.reportedAMQP()
		case "desired-amqp":
			err = e.desiredAMQP()
		case "sessions-amqp":
			err = e.sessionsAMQP()
		case "eventhub":
			err = e.eventhub()
		case "c2d-amqp":
			err = e.c2dAMQP()
		case "c2d-rest":
			err = e.c2dREST()
		case "jobs":
			err = e.jobs()
		case "configurations":
			err = e.configurations()
		case "million":
			err = e.million()
		}
		if err != nil {
			return e.report, fmt.Errorf("%s: %w", name, err)
		}
	}
	if !t.Local && len(e.created) > 0 {
		e.progressf("deleting the %d devices the run created", len(e.created))
		e.svc.deleteDevices(context.Background(), e.created)
	}
	e.report.Seconds = time.Since(start).Seconds()
	e.report.Machine.LoadEnd = loadAvg()
	e.report.Ratios = ratios(e.report.Results)
	e.report.Goals = goals(e.report)
	return e.report, nil
}

// allOrder is the order in which `all` runs the scenarios and baselines:
// the scenarios in the order of Scenarios, each right after its baselines
// (those not run yet) and right before the scenarios it is the measure of
// (the AMQP counterpart of an MQTT scenario), so that the two sides of
// every ratio run back to back and see the same machine. A drift of the
// shared machine between them moved the ratio: telemetry over AMQP,
// measured after Mosquitto and methods, read 0.86x of the MQTT telemetry
// of 40 s before, where the two back to back (`bench telemetry-amqp`)
// read 0.96x on the same machine that hour.
func allOrder() []string {
	var run []string
	for _, sc := range Scenarios {
		for _, b := range baselinesOf[sc] {
			if !slices.Contains(Scenarios, b) {
				run = append(run, b)
			}
		}
		run = append(run, sc)
		for _, other := range Scenarios {
			if slices.Contains(baselinesOf[other], sc) {
				run = append(run, other)
			}
		}
	}
	return dedupe(append(run, Baselines...))
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func newKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *env) progressf(format string, args ...any) {
	if e.cfg.Progress != nil {
		fmt.Fprintf(e.cfg.Progress, format+"\n", args...)
	}
}

// ids names n devices of a scenario.
func (e *env) ids(scenario string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%s-%d", e.prefix, scenario, i)
	}
	return ids
}

// createDevices registers devices with the run's key.
func (e *env) createDevices(ids []string, tags func(int) map[string]any) error {
	return e.loadDevices(ids, 8, tags)
}

// loadDevices is createDevices with conc bulk requests in flight.
func (e *env) loadDevices(ids []string, conc int, tags func(int) map[string]any) error {
	start := time.Now()
	last := time.Now()
	err := e.svc.createDevices(e.ctx, ids, e.key, conc, tags, func(n int) {
		if time.Since(last) > time.Second {
			last = time.Now()
			e.progressf("  creating devices: %d/%d", n, len(ids))
		}
	})
	e.created = append(e.created, ids...)
	if err == nil && len(ids) > 200 {
		e.progressf("  created %d devices in %s", len(ids), time.Since(start).Round(time.Millisecond))
	}
	return err
}

func (e *env) deviceOptions() deviceOptions {
	return deviceOptions{addr: e.t.MQTTAddr, tls: e.t.tlsConfig(e.cfg.TLSVersion), host: e.t.Host, key: e.key}
}

// connectDevices connects devices for a load phase (not measured).
func (e *env) connectDevices(ids []string, o deviceOptions) ([]*device, error) {
	rec := newRecorder()
	devs := connectAll(ids, e.cfg.ConnectConcurrency, func(int) deviceOptions { return o }, rec)
	if n := rec.errs.Load(); n > 0 {
		closeAll(devs)
		return nil, fmt.Errorf("%d of %d devices failed to connect: %v", n, len(ids), rec.errorSamples())
	}
	return devs, nil
}

// measureBaseline runs measured, which measures a baseline through
// measure, with its server's CPU and memory (usage, noted as note) where
// measure reads the hub's, and marks the result a baseline's. usage is
// nil for a server in this process: its CPU is then in the generator's.
func (e *env) measureBaseline(usage UsageFunc, note string, measured func() *Result) *Result {
	hub, hubNote := e.t.Usage, e.t.UsageNote
	e.t.Usage, e.t.UsageNote = usage, note
	defer func() { e.t.Usage, e.t.UsageNote = hub, hubNote }()
	res := measured()
	res.Kind = "baseline"
	return res
}

// measure runs fn, printing rec's progress every second, and returns its
// result with the hub's CPU and memory over the run.
func (e *env) measure(name, unit string, clients int, rec *recorder, fn func()) *Result {
	var before, genBefore Snapshot
	if e.t.Usage != nil {
		before, _ = e.t.Usage()
	}
	// The generator's own CPU means something only when the hub's is
	// not in it.
	measureGen := !e.t.InProcess
	if measureGen {
		var err error
		genBefore, err = SelfUsage()
		measureGen = err == nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ops := rec.ops.Load()
				e.progressf("  %s: %d %s, %d/s now, %d errors", name, ops, unit, ops-last, rec.errs.Load())
				last = ops
			}
		}
	}()
	fn()
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	res := rec.result(name, "twinhub", unit, elapsed, clients)
	if e.t.Usage != nil {
		if after, err := e.t.Usage(); err == nil {
			res.Hub = usageBetween(before, after, elapsed, e.t.UsageNote)
		}
	}
	if measureGen {
		if after, err := SelfUsage(); err == nil {
			res.Generator = usageBetween(genBefore, after, elapsed, "the load generator (this process)")
		}
	}
	e.add(res)
	return res
}

func (e *env) add(r *Result) {
	e.report.Results = append(e.report.Results, r)
	if r.Ops == 0 && r.Errors == 0 && len(r.Notes) > 0 {
		// A figure, not a rate (the hub's memory): its note says it.
		e.progressf("  => %s: %s", r.Name, r.Notes[0])
		return
	}
	line := fmt.Sprintf("  => %s: %.0f %s/s (%d ok, %d errors, %.1fs)", r.Name, r.Rate, r.Unit, r.Ops, r.Errors, r.Seconds)
	if r.Latency != nil {
		line += fmt.Sprintf(", p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms", r.Latency.P50, r.Latency.P99, r.Latency.P999)
	}
	e.progressf("%s", line)
}

func (e *env) skip(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.report.Skipped = append(e.report.Skipped, msg)
	e.progressf("  skipped: %s", msg)
}

// forDuration runs n workers that call op until the phase's duration
// has passed; op gets the worker's number.
func (e *env) forDuration(n int, d time.Duration, op func(w int)) {
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				op(w)
			}
		}()
	}
	wg.Wait()
}

// gcNow has the hub collect its garbage, so that its heap figure means
// live memory: in this process for a hub in it, through the hub's pprof
// for a hub in a process of its own. It reports whether a collection
// ran.
func (e *env) gcNow() bool {
	switch {
	case e.t.InProcess:
		runtime.GC()
		return true
	case e.t.PprofURL != "":
		c := http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get(e.t.PprofURL + "heap?gc=1")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	return false
}
