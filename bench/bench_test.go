package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub/amqp"
	"github.com/twinhub/twinhub/certs"
	"github.com/twinhub/twinhub/httpapi"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/mqtttest"
	"github.com/twinhub/twinhub/metrics"
	"github.com/twinhub/twinhub/mqtt"
)

// startHub serves a test hub's MQTT, REST and AMQP front ends over TLS
// on loopback ports, with a server certificate from a CA in a temp
// folder, and the messaging stores of `twinhub serve`.
// It records metrics, served at Target.MetricsURL.
func startHub(t *testing.T) *Target {
	t.Helper()
	m := metrics.New(func(context.Context) (metrics.Registry, error) { return metrics.Registry{}, nil })
	h := hubtest.New(t, hubtest.WithMessaging(), hubtest.WithConfig(func(c *hub.Config) { c.Metrics = m }))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	metricsSrv := httptest.NewServer(m.Handler(nil))
	t.Cleanup(metricsSrv.Close)
	s := mqtttest.Serve(t, h.Hub, mqtttest.Options{MQTT: mqtt.Options{Log: log}, HTTP: httpapi.New(h.Hub, httpapi.Options{Log: log, Metrics: m})})
	backEnds := amqp.New(h.Hub, amqp.Options{Log: log})
	amqpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backEnds.Serve(amqpLn, s.TLSConfig)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		backEnds.Close(ctx)
	})
	owner := h.Policy("iothubowner")
	caPEM, err := os.ReadFile(filepath.Join(s.CADir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	return &Target{
		CAPEM: caPEM,
		Host:  hubtest.Host, HTTPSAddr: s.HTTPSAddr, MQTTAddr: s.MQTTAddr, AMQPAddr: amqpLn.Addr().String(),
		RootCAs: s.RootCAs, PolicyName: owner.Name, PolicyKey: owner.PrimaryKey,
		Usage: SelfUsage, UsageNote: "test", CADir: s.CADir, Local: true, InProcess: true, MetricsURL: metricsSrv.URL + "/metrics",
		// Telemetry is stored, but where the bench cannot weigh it:
		// TelemetryBytes is left nil.
	}
}

// probeEnv makes the test binary a query probe (RunProbe), for
// TestMillion's ProbeCommand.
const probeEnv = "TWINHUB_BENCH_TEST_PROBE"

func TestMain(m *testing.M) {
	if os.Getenv(probeEnv) == "1" {
		if err := RunProbe(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func tinyConfig() Config {
	return Config{
		Devices: 12, ConnectConcurrency: 4, Clients: 4, Duration: 250 * time.Millisecond,
		DesiredRate: 200, Twins: 250, QueryClients: 2, QueryUpdateRate: 50, PayloadBytes: 64,
	}
}

// runTiny runs the scenarios named on a test hub with cfg and returns the
// report, its results by name, and the progress it printed.
func runTiny(t *testing.T, cfg Config, names ...string) (*Report, map[string]*Result, *strings.Builder) {
	t.Helper()
	target := startHub(t)
	progress := &strings.Builder{}
	cfg.Progress = progress
	rep, err := Run(context.Background(), target, cfg, names, "test")
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	byName := map[string]*Result{}
	for _, r := range rep.Results {
		byName[r.Name] = r
	}
	return rep, byName, progress
}

// TestAll runs every scenario and baseline at tiny scale and checks that
// the counts add up and the JSON report is complete. No timing is checked.
func TestAll(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and runs load for several seconds")
	}
	cfg := tinyConfig()
	rep, byName, _ := runTiny(t, cfg, "all")
	for _, r := range rep.Results {
		if r.Errors != 0 && !strings.HasPrefix(r.Name, "desired") {
			t.Errorf("%s: %d errors: %v", r.Name, r.Errors, r.ErrorMsg)
		}
	}
	want := []string{
		"connect", "connect/raw", "reported", "desired/patch", "desired/notify", "twin-read/rest", "twin-read/device",
		"telemetry", "query/load", "query/by-id", "query/selective", "query/full-scan-count",
		"query/full-scan-group", "query/updates", "kv-put", "kv-cas", "tls-handshake/tls1.2", "tls-handshake/tls1.3", "https-get",
		"telemetry-amqp", "reported-amqp", "desired-amqp/patch", "desired-amqp/notify", "sessions-amqp", "eventhub/ingest", "eventhub/read", "c2d-amqp", "c2d-rest",
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		want = append(want, "mosquitto")
	}
	for _, name := range want {
		r := byName[name]
		if r == nil {
			t.Errorf("no result %q", name)
			continue
		}
		if r.Ops == 0 {
			t.Errorf("%s: no operations", name)
		}
		if r.Latency == nil && name != "query/load" {
			t.Errorf("%s: no latency", name)
		}
	}
	if r := byName["connect"]; r != nil && r.Ops != int64(cfg.Devices) {
		t.Errorf("connect: %d connections, want %d", r.Ops, cfg.Devices)
	}
	if r := byName["query/load"]; r != nil && r.Ops != int64(cfg.Twins) {
		t.Errorf("query/load: %d twins, want %d", r.Ops, cfg.Twins)
	}
	if p, n := byName["desired/patch"], byName["desired/notify"]; p != nil && n != nil {
		if p.Errors != 0 || n.Errors != 0 || n.Ops != p.Ops {
			t.Errorf("desired: %d patches (%d errors), %d notifications (%d missing)", p.Ops, p.Errors, n.Ops, n.Errors)
		}
	}
	if r := byName["telemetry"]; r != nil && !strings.Contains(strings.Join(r.Notes, " "), "persistence not verified") {
		t.Errorf("telemetry on a hub whose storage the bench cannot see is not labelled: %v", r.Notes)
	}
	if byName["methods"] == nil && !strings.Contains(strings.Join(rep.Skipped, " "), "methods") {
		t.Error("methods neither measured nor skipped")
	}
	if len(rep.Ratios) == 0 || len(rep.Goals) == 0 {
		t.Errorf("ratios %v, goals %v", rep.Ratios, rep.Goals)
	}

	path := filepath.Join(t.TempDir(), "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || back.Machine.CPUs == 0 {
		t.Errorf("JSON report: %d results, machine %+v", len(back.Results), back.Machine)
	}
	var text strings.Builder
	rep.Print(&text)
	for _, s := range []string{"reported", "kv-cas", "goals:"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("printed report lacks %q", s)
		}
	}
}

// TestSingleScenarioWithBaselines checks that a scenario brings the
// baselines of its ratios, and that an unknown name is refused.
func TestSingleScenarioWithBaselines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	target := startHub(t)
	rep, err := Run(context.Background(), target, tinyConfig(), []string{"reported"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rep.Results {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "reported,kv-put,kv-cas" {
		t.Errorf("results %v", names)
	}
	if len(rep.Ratios) == 0 || rep.Ratios[0].Over != "kv-cas" {
		t.Errorf("ratios %+v", rep.Ratios)
	}
	if _, err := Run(context.Background(), target, tinyConfig(), []string{"nope"}, "test"); err == nil {
		t.Error("unknown scenario accepted")
	}
}

// TestAllOrder: `all` runs every scenario and baseline once, an AMQP
// scenario right after the MQTT scenario it is measured against, and a
// baseline right before the first scenario it serves.
func TestAllOrder(t *testing.T) {
	order := allOrder()
	at := map[string]int{}
	for i, n := range order {
		if _, twice := at[n]; twice {
			t.Errorf("%s runs twice in %v", n, order)
		}
		at[n] = i
	}
	for _, n := range append(slices.Clone(Scenarios), Baselines...) {
		if _, ok := at[n]; !ok {
			t.Errorf("%s does not run in %v", n, order)
		}
	}
	firstServed := map[string]int{}
	for _, sc := range Scenarios {
		for _, b := range baselinesOf[sc] {
			if !slices.Contains(Scenarios, b) {
				if i, ok := firstServed[b]; !ok || at[sc] < i {
					firstServed[b] = at[sc]
				}
				continue
			}
			if at[sc] != at[b]+1 {
				t.Errorf("%s does not run right after %s, its measure: %v", sc, b, order)
			}
		}
	}
	for b, i := range firstServed {
		if at[b] > i || !slices.Contains(Baselines, order[at[b]+1]) && at[b]+1 != i {
			t.Errorf("baseline %s does not run right before the first scenario it serves: %v", b, order)
		}
	}
	if at["telemetry-amqp"] != at["telemetry"]+1 || at["mosquitto"] != at["telemetry"]-1 {
		t.Errorf("order %v", order)
	}
}

func TestRecorderPercentiles(t *testing.T) {
	r := newRecorder()
	for i := 1; i <= 1000; i++ {
		r.doneLatency(time.Duration(i)*time.Millisecond, nil)
	}
	r.doneLatency(0, io.EOF)
	l := r.latency()
	if l.P50 != 500 || l.P99 != 990 || l.P999 != 999 || l.Max != 1000 {
		t.Errorf("percentiles %+v", l)
	}
	if r.ops.Load() != 1000 || r.errs.Load() != 1 || r.errorSamples()["EOF"] != 1 {
		t.Errorf("counts %d ok %d errors %v", r.ops.Load(), r.errs.Load(), r.errorSamples())
	}
}

// TestMillion runs issue 16's scenario at tiny scale (the restart needs
// a hub process of its own: not here) and checks that each phase counted
// operations and no errors. No timing is checked.
func TestMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and runs load for several seconds")
	}
	cfg := tinyConfig()
	// The query probe is this test binary (TestMain).
	cfg.ProbeCommand = []string{"env", probeEnv + "=1", os.Args[0]}
	_, byName, progress := runTiny(t, cfg, "million")
	for _, name := range []string{"million/load", "million/updates-rest", "million/by-id", "million/selective", "million/selective-all", "million/by-id-apart", "million/reported-mqtt"} {
		r := byName[name]
		if r == nil {
			t.Errorf("no result %s (progress:\n%s)", name, progress.String())
			continue
		}
		if r.Ops == 0 || r.Errors != 0 {
			t.Errorf("%s: %d operations, %d errors: %v", name, r.Ops, r.Errors, r.ErrorMsg)
		}
	}
	if r := byName["million/load"]; r != nil && r.Ops != int64(cfg.Twins) {
		t.Errorf("loaded %d twins, want %d", r.Ops, cfg.Twins)
	}
	if m := byName["million/memory"]; m == nil || m.Extra["rss_bytes"] <= 0 {
		t.Errorf("memory result %+v", m)
	}
	// The hub answered at least every PATCH the client counted.
	if hubUpdates, updates := byName["million/updates-rest-hub"], byName["million/updates-rest"]; hubUpdates == nil || hubUpdates.Ops < updates.Ops || hubUpdates.Latency == nil {
		t.Errorf("the hub's own updates: %+v, the client's %d", hubUpdates, updates.Ops)
	}
	// The hub counted at least every page the client had answered (it
	// also counts those the client gave up on as the phase ended).
	pages := byName["million/query-pages-hub"]
	if pages == nil {
		t.Fatalf("no result million/query-pages-hub (progress:\n%s)", progress.String())
	}
	if answered := byName["million/by-id"].Ops + byName["million/selective-all"].Ops; pages.Ops < answered {
		t.Errorf("the hub counted %d query pages, the client had %d queries answered", pages.Ops, answered)
	}
	if pages.Latency == nil || pages.Latency.P50 <= 0 || pages.Latency.P99 < pages.Latency.P50 || pages.Latency.Mean <= 0 {
		t.Errorf("the hub's query page latency: %+v", pages.Latency)
	}
}

// TestHubHistogram reads a histogram from an exposition, takes an earlier
// scrape from it, and estimates quantiles within its buckets as
// Prometheus' histogram_quantile does.
func TestHubHistogram(t *testing.T) {
	exposition := func(le1, le2, le5, inf int, sum float64) string {
		return fmt.Sprintf(`# HELP twinhub_query_duration_seconds Time to answer a page of a query.
# TYPE twinhub_query_duration_seconds histogram
twinhub_query_duration_seconds_bucket{le="0.001"} %d
twinhub_query_duration_seconds_bucket{le="0.002"} %d
twinhub_query_duration_seconds_bucket{le="0.005"} %d
twinhub_query_duration_seconds_bucket{le="+Inf"} %d
twinhub_query_duration_seconds_sum %g
twinhub_query_duration_seconds_count %d
`, le1, le2, le5, inf, sum, inf)
	}
	before, err := parseHistogram(strings.NewReader(exposition(10, 10, 10, 10, 0.005)), queryDurationMetric, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 100 more: 50 within 1 ms, 30 in (1, 2] ms, 10 in (2, 5] ms, 10 above.
	after, err := parseHistogram(strings.NewReader(exposition(60, 90, 100, 110, 0.305)), queryDurationMetric, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := after.since(before)
	if err != nil {
		t.Fatal(err)
	}
	if d.count() != 100 || math.Abs(d.sum-0.3) > 1e-9 {
		t.Fatalf("count %d, sum %g; want 100, 0.3", d.count(), d.sum)
	}
	for _, c := range []struct{ q, want float64 }{
		{0.25, 0.0005},                // rank 25 of the first bucket's 50, from 0
		{0.5, 0.001},                  // the first bucket's top
		{0.65, 0.0015},                // rank 65: halfway through (1, 2] ms
		{0.855, 0.002 + 0.003*5.5/10}, // rank 85.5: 5.5 into the 10 in (2, 5] ms
		{0.88, 0.002 + 0.003*8/10},    // rank 88
		{0.92, 0.005},                 // rank 92: in +Inf
		{0.95, 0.005},                 // rank 95: in +Inf, so the highest finite bound
	} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%g) = %g, want %g", c.q, got, c.want)
		}
	}
	if d, err := after.since(hubHistogram{}); err != nil || d.count() != 110 {
		t.Errorf("since a scrape without the series (none observed yet): %d, %v; want 110", d.count(), err)
	}
	if _, err := before.since(after); err == nil {
		t.Error("a histogram that went down (a restarted hub) was taken as a phase")
	}
	if _, err := parseHistogram(strings.NewReader(exposition(1, 1, 1, 1, 0)), "twinhub_other_seconds", nil); err == nil {
		t.Error("a histogram that is not in the exposition was found")
	}
	if !math.IsNaN((hubHistogram{}).quantile(0.5)) {
		t.Error("an empty histogram has a median")
	}

	// A series is chosen by its labels.
	routes := `# TYPE twinhub_http_request_duration_seconds histogram
twinhub_http_request_duration_seconds_bucket{route="GET /twins/{id}",le="0.001"} 7
twinhub_http_request_duration_seconds_bucket{route="GET /twins/{id}",le="+Inf"} 7
twinhub_http_request_duration_seconds_sum{route="GET /twins/{id}"} 0.001
twinhub_http_request_duration_seconds_count{route="GET /twins/{id}"} 7
twinhub_http_request_duration_seconds_bucket{route="PATCH /twins/{id}",le="0.001"} 2
twinhub_http_request_duration_seconds_bucket{route="PATCH /twins/{id}",le="+Inf"} 5
twinhub_http_request_duration_seconds_sum{route="PATCH /twins/{id}"} 0.5
twinhub_http_request_duration_seconds_count{route="PATCH /twins/{id}"} 5
`
	h, err := parseHistogram(strings.NewReader(routes), httpDurationMetric, map[string]string{"route": "PATCH /twins/{id}"})
	if err != nil || h.count() != 5 || h.sum != 0.5 {
		t.Errorf("the PATCH route's series: %+v, %v", h, err)
	}
	if _, err := parseHistogram(strings.NewReader(routes), httpDurationMetric, map[string]string{"route": "DELETE /twins/{id}"}); !errors.Is(err, errNoSeries) {
		t.Errorf("a series of a route that has none: %v, want errNoSeries", err)
	}
}

// TestGoalsSayCosts checks the goals drawn from results: a ratio goal
// carries what an operation cost the hub, its baseline and the load
// generator when all were measured, the desired rate goal is judged only
// on a run paced at 25,000/s or more, no ratio is taken of a paced rate,
// and a ratio goal whose baseline the run lacks is not judged.
func TestGoalsSayCosts(t *testing.T) {
	usage := func(cpu float64) *Usage { return &Usage{CPUSeconds: cpu} }
	results := []*Result{
		{Name: "telemetry", Ops: 100000, Rate: 10000, Hub: usage(1.0), Generator: usage(1.2)},
		{Name: "mosquitto", Kind: "baseline", Ops: 200000, Rate: 20000, Hub: usage(1.0), Generator: usage(2.0)},
		{Name: "desired/patch", Ops: 50000, Rate: 5000, Extra: map[string]float64{"target_rate": 5000}},
	}
	byGoal := func(rep *Report) map[string]Goal {
		m := map[string]Goal{}
		for _, g := range goals(rep) {
			m[g.Goal] = g
		}
		return m
	}
	got := byGoal(&Report{Results: results})
	tel, ok := got["telemetry, persisted, >= 1.0x Mosquitto"]
	if !ok || tel.Met || tel.Measured != "0.50x (10000/s)" {
		t.Errorf("telemetry goal %+v", tel)
	}
	if want := "hub 10.0 µs, Mosquitto 5.0 µs; load generator 12.0 and 10.0 µs"; !strings.Contains(tel.Note, want) {
		t.Errorf("telemetry goal's note %q lacks %q", tel.Note, want)
	}
	const desired = "twin updates (desired, REST) >= 25,000/s"
	if g, ok := got[desired]; ok {
		t.Errorf("a run paced at 5,000/s judged the 25,000/s goal: %+v", g)
	}
	results[2].Extra["target_rate"], results[2].Rate = 30000, 26000
	if g, ok := byGoal(&Report{Results: results})[desired]; !ok || !g.Met {
		t.Errorf("a run paced at 30,000/s: %+v (judged %v)", g, ok)
	}
	results = append(results, &Result{Name: "kv-cas", Kind: "baseline", Ops: 100000, Rate: 10000})
	for _, r := range ratios(results) {
		if r.Of == "desired/patch" {
			t.Errorf("a ratio of the paced desired rate: %+v", r)
		}
	}
	results[1].Generator = nil
	if g := byGoal(&Report{Results: results})["telemetry, persisted, >= 1.0x Mosquitto"]; g.Note != "" {
		t.Errorf("costs said without the baseline's generator measured: %q", g.Note)
	}
	// Without its baseline in the run, a ratio goal is not judged.
	if g, ok := byGoal(&Report{Results: results[:1]})["telemetry, persisted, >= 1.0x Mosquitto"]; ok {
		t.Errorf("judged without Mosquitto: %+v", g)
	}
	results[0].Extra = map[string]float64{"persisted": 0}
	if g, ok := byGoal(&Report{Results: results[:1]})["telemetry, persisted, >= 1.0x Mosquitto"]; !ok || g.Met {
		t.Errorf("telemetry not persisted, without Mosquitto: %+v (judged %v)", g, ok)
	}
	const connect = "new TLS device connections >= 0.8x bare TLS handshakes (paho client)"
	conns := []*Result{{Name: "connect", Ops: 2000, Rate: 1500, Hub: usage(0.8), Generator: usage(1.0)}}
	if g, ok := byGoal(&Report{Results: conns})[connect]; ok {
		t.Errorf("judged without the TLS baseline: %+v", g)
	}
	conns = append(conns, &Result{Name: "tls-handshake/tls1.3", Kind: "baseline", Ops: 4000, Rate: 2000, Generator: usage(2.4)})
	g, ok := byGoal(&Report{Results: conns})[connect]
	if !ok || g.Met || g.Measured != "0.75x of tls1.3 (1500/s)" || !strings.Contains(g.Note, "hub 400 µs and load generator 500 µs; the baseline's client and server together 600 µs") {
		t.Errorf("connect goal with its baseline: %+v (judged %v)", g, ok)
	}
	// A bare server in a process of its own: its CPU is the baseline's Hub.
	conns[1].Generator, conns[1].Hub = usage(1.2), usage(1.0)
	g = byGoal(&Report{Results: conns})[connect]
	if !strings.Contains(g.Note, "hub 400 µs and load generator 500 µs; the bare server 250 µs and its client 300 µs") {
		t.Errorf("connect goal with a bare server of its own: %+v", g)
	}
}

// TestMetricsGauges: gauges come from a Prometheus page in the order
// asked, and a missing one is an error, not a zero.
func TestMetricsGauges(t *testing.T) {
	page := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 12\n" +
		"go_memstats_heap_alloc_bytes 1.5e+07\ngo_memstats_heap_alloc_bytes_total 9\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, page) }))
	defer srv.Close()
	got, err := metricsGauges(srv.URL, "go_memstats_heap_alloc_bytes", "go_goroutines")
	if err != nil || len(got) != 2 || got[0] != 1.5e7 || got[1] != 12 {
		t.Fatalf("gauges %v, %v", got, err)
	}
	if _, err := metricsGauges(srv.URL, "go_goroutines", "go_threads"); err == nil {
		t.Error("a gauge the page lacks read without an error")
	}
}

// TestSessionsGoalOnLiveHeap: the idle-session goal is judged on the
// live heap a session adds when the bench read it, the RSS beside it.
func TestSessionsGoalOnLiveHeap(t *testing.T) {
	const goal = "idle multiplexed AMQP device sessions <= 8 KB each"
	judge := func(extra map[string]float64) Goal {
		r := &Result{Name: "sessions-amqp", Ops: 2000, Extra: extra}
		for _, g := range goals(&Report{Results: []*Result{r}}) {
			if g.Goal == goal {
				return g
			}
		}
		t.Fatal("the sessions goal was not judged")
		return Goal{}
	}
	g := judge(map[string]float64{"sessions": 2000, "heap_bytes_per_session": 12 << 10, "rss_bytes_per_session": 3 << 10})
	if g.Met || !strings.Contains(g.Measured, "Go heap 12.0 KB") || !strings.Contains(g.Note, "RSS 3.0 KB") {
		t.Errorf("12 KB of heap, 3 KB of RSS: %+v", g)
	}
	if g := judge(map[string]float64{"sessions": 2000, "heap_bytes_per_session": 6 << 10, "rss_bytes_per_session": 20 << 10}); !g.Met {
		t.Errorf("6 KB of heap, 20 KB of RSS: %+v", g)
	}
	if g := judge(map[string]float64{"sessions": 2000, "rss_bytes_per_session": 6 << 10}); !g.Met || !strings.Contains(g.Measured, "RSS 6.0 KB") {
		t.Errorf("RSS alone: %+v", g)
	}
	// Less memory after the sessions than before is no measure.
	if g := judge(map[string]float64{"sessions": 2000, "heap_bytes_per_session": -12 << 10, "rss_bytes_per_session": -20 << 10}); g.Met || !strings.Contains(g.Note, "not a measure") {
		t.Errorf("the heap shrank: %+v", g)
	}
	if g := judge(map[string]float64{"sessions": 2000, "rss_bytes_per_session": 0}); g.Met || !strings.Contains(g.Note, "not a measure") {
		t.Errorf("no RSS added: %+v", g)
	}
}

// TestRunBareServer: the bare server says where it listens and whom to
// trust in its first line, serves until its input ends, and refuses a kind
// it does not know.
func TestRunBareServer(t *testing.T) {
	if err := RunBareServer("nope", strings.NewReader(""), io.Discard); err == nil {
		t.Error("an unknown kind was served")
	}
	// start runs one; its input is closed at the test's end at the
	// latest.
	start := func(kind string) (bareHello, func() error) {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- RunBareServer(kind, inR, outW) }()
		t.Cleanup(func() { inW.Close() })
		var hello bareHello
		if err := json.NewDecoder(outR).Decode(&hello); err != nil {
			t.Fatal(err)
		}
		return hello, func() error { inW.Close(); return <-done }
	}
	hello, stop := start("https")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: newPool(hello.CAPEM), ServerName: "localhost"}}}
	resp, err := c.Get("https://" + hello.Addr + "/twins/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != baselineTwin {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	c.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hello, stop = start("tls")
	conn, err := tls.Dial("tcp", hello.Addr, &tls.Config{RootCAs: newPool(hello.CAPEM), ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
