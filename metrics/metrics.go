// Package metrics is what operators watch a hub by: Prometheus metrics
// (github.com/prometheus/client_golang) at /metrics, and /healthz and
// /readyz for load balancers and orchestrators, on a listener of their
// own (`serve --metrics-addr`). Names follow the Prometheus conventions
// (units in the names, _total on counters) and labels are bounded sets:
// route patterns and status codes, never a device id.
package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the hub's collectors. A nil *Metrics records nothing,
// so that front ends started without metrics need no checks.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	// The hub's operations, whatever front end asked for them; result is
	// "ok" or an IoT Hub error code (a bounded set).
	twinReads      *prometheus.CounterVec
	twinUpdates    *prometheus.CounterVec
	queries        *prometheus.CounterVec
	queryDuration  prometheus.Histogram
	telemetry      *prometheus.CounterVec
	c2d            *prometheus.CounterVec
	methods        *prometheus.CounterVec
	methodDuration prometheus.Histogram

	// Device connections of this node, by transport.
	connects    *prometheus.CounterVec
	disconnects *prometheus.CounterVec
}

// The results of a device's connection attempt (twinhub_device_connects_total):
// ConnectOK, or why it was refused.
const (
	ConnectOK = "ok"
	// ConnectProtocol: not the protocol IoT Hub speaks (an MQTT version
	// other than 3.1.1, a malformed CONNECT).
	ConnectProtocol = "protocol"
	// ConnectIdentifier: a client id that names no valid identity.
	ConnectIdentifier = "identifier"
	// ConnectCredentials: no credentials, or not in the form IoT Hub
	// expects (user name, token syntax).
	ConnectCredentials = "credentials"
	// ConnectUnauthorized: credentials the hub checked and refused (a
	// wrong or expired token, an unknown or disabled identity, a
	// certificate that does not match).
	ConnectUnauthorized = "unauthorized"
	// ConnectThrottled: over the rate of new connections.
	ConnectThrottled = "throttled"
	// ConnectUnavailable: the hub could not decide (its store did not
	// answer).
	ConnectUnavailable = "unavailable"
)

// ConnectRefusal is the result of a connection attempt the hub's
// authentication refused with err's HTTP status: unauthorized for the
// statuses of refused credentials, unavailable for the others.
func ConnectRefusal(status int) string {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return ConnectUnauthorized
	}
	return ConnectUnavailable
}

// latencyBuckets are the histogram buckets of the hub's operations, in
// seconds: half a millisecond to 10 s.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Registry is the registry's counts, read at each scrape.
type Registry struct {
	Devices, EnabledDevices, DisabledDevices, ConnectedDevices int64
	// IndexLag is how many store revisions the query index has yet to
	// apply.
	IndexLag uint64
}

// Stream is what a JetStream stream holds, read at each scrape.
type Stream struct {
	Name            string
	Bytes, Messages uint64
}

// New makes the collectors: Go's runtime and the process, the REST API's
// requests, and the registry's counts from registry (called at each
// scrape; nil leaves them out).
func New(registry func(ctx context.Context) (Registry, error)) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twinhub_http_requests_total",
		Help: "REST API requests answered, by route pattern and HTTP status code.",
	}, []string{"route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "twinhub_http_request_duration_seconds",
		Help:    "Time to answer a REST API request, by route pattern.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m.twinReads = counter("twinhub_twin_reads_total", "Twin reads, by who read (service: REST and jobs; device: MQTT and AMQP twin GET) and result.", "by", "result")
	m.twinUpdates = counter("twinhub_twin_updates_total", "Twin writes, by who wrote (service: tags and desired properties; device: reported properties) and result.", "by", "result")
	m.queries = counter("twinhub_queries_total", "Queries in the IoT Hub query language (a page each), by result.", "result")
	m.queryDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twinhub_query_duration_seconds",
		Help: "Time to answer a page of a query.", Buckets: latencyBuckets})
	m.telemetry = counter("twinhub_telemetry_messages_total", "Device-to-cloud messages, by result (ok: stored).", "result")
	m.c2d = counter("twinhub_c2d_messages_total", "Cloud-to-device messages, by event: sent (queued), completed, rejected.", "event")
	m.methods = counter("twinhub_method_calls_total", "Direct method calls, by result (ok: the device answered).", "result")
	m.methodDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "twinhub_method_duration_seconds",
		Help: "Time from a direct method call to the device's answer (or its failure).", Buckets: latencyBuckets})
	m.connects = counter("twinhub_device_connects_total", "Device and module connection attempts on this node, by transport "+
		"(mqtt, amqp: WebSocket included) and result: ok, or why refused (protocol, identifier, credentials, unauthorized, throttled, unavailable).",
		"transport", "result")
	m.disconnects = counter("twinhub_device_disconnects_total", "Device and module connections of this node that ended, by transport.", "transport")
	m.reg.MustRegister(m.httpRequests, m.httpDuration, m.twinReads, m.twinUpdates, m.queries, m.queryDuration,
		m.telemetry, m.c2d, m.methods, m.methodDuration, m.connects, m.disconnects)
	if registry != nil {
		m.reg.MustRegister(&registryCollector{read: registry})
	}
	return m
}

// ObserveHTTP records a REST request answered with code after d.
func (m *Metrics) ObserveHTTP(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// DeviceConnections reports, at each scrape, the devices and modules
// connected to this node over transport (mqtt, amqp: WebSocket included),
// as count says.
func (m *Metrics) DeviceConnections(transport string, count func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "twinhub_device_connections",
		Help:        "Devices and modules connected to this node, by transport (WebSocket included).",
		ConstLabels: prometheus.Labels{"transport": transport},
	}, func() float64 { return float64(count()) }))
}

// Streams reports, at each scrape, the bytes and messages of the
// JetStream streams (the registry's bucket, telemetry partitions,
// queues), as streams reads them.
func (m *Metrics) Streams(streams func(ctx context.Context) ([]Stream, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&streamCollector{read: streams})
}

var (
	streamBytesDesc = prometheus.NewDesc("twinhub_jetstream_stream_bytes", "Bytes a JetStream stream of the hub holds.", []string{"stream"}, nil)
	streamMsgsDesc  = prometheus.NewDesc("twinhub_jetstream_stream_messages", "Messages a JetStream stream of the hub holds.", []string{"stream"}, nil)
)

type streamCollector struct {
	read func(ctx context.Context) ([]Stream, error)
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamBytesDesc
	ch <- streamMsgsDesc
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	streams, _ := c.read(ctx) // what could be read
	for _, s := range streams {
		ch <- prometheus.MustNewConstMetric(streamBytesDesc, prometheus.GaugeValue, float64(s.Bytes), s.Name)
		ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, float64(s.Messages), s.Name)
	}
}

// Throttled reports, at each scrape, the operations refused for going over
// a throttle's rate, by class, as refused says.
func (m *Metrics) Throttled(refused func() map[string]int64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&throttleCollector{refused: refused})
}

var throttledDesc = prometheus.NewDesc("twinhub_throttled_total", "Operations refused for going over a throttle's rate (serve --throttle-*), by class.", []string{"class"}, nil)

type throttleCollector struct{ refused func() map[string]int64 }

func (c *throttleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- throttledDesc }

func (c *throttleCollector) Collect(ch chan<- prometheus.Metric) {
	for class, n := range c.refused() {
		ch <- prometheus.MustNewConstMetric(throttledDesc, prometheus.CounterValue, float64(n), class)
	}
}

// TwinRead records a twin read by "service" or "device".
func (m *Metrics) TwinRead(by, result string) {
	if m != nil {
		m.twinReads.WithLabelValues(by, result).Inc()
	}
}

// TwinUpdate records a twin write by "service" or "device".
func (m *Metrics) TwinUpdate(by, result string) {
	if m != nil {
		m.twinUpdates.WithLabelValues(by, result).Inc()
	}
}

// Query records a page of a query answered after d.
func (m *Metrics) Query(d time.Duration, result string) {
	if m != nil {
		m.queries.WithLabelValues(result).Inc()
		m.queryDuration.Observe(d.Seconds())
	}
}

// Telemetry records a device-to-cloud message.
func (m *Metrics) Telemetry(result string) {
	if m != nil {
		m.telemetry.WithLabelValues(result).Inc()
	}
}

// C2D records a cloud-to-device message event: sent, completed or
// rejected.
func (m *Metrics) C2D(event string) {
	if m != nil {
		m.c2d.WithLabelValues(event).Inc()
	}
}

// Method records a direct method call that ended after d.
func (m *Metrics) Method(d time.Duration, result string) {
	if m != nil {
		m.methods.WithLabelValues(result).Inc()
		m.methodDuration.Observe(d.Seconds())
	}
}

// DeviceConnect records a device's or module's connection attempt over
// transport, with its result (ConnectOK or a refusal's).
func (m *Metrics) DeviceConnect(transport, result string) {
	if m != nil {
		m.connects.WithLabelValues(transport, result).Inc()
	}
}

// DeviceDisconnect records the end of a device's or module's connection.
func (m *Metrics) DeviceDisconnect(transport string) {
	if m != nil {
		m.disconnects.WithLabelValues(transport).Inc()
	}
}

// Queue is how many messages wait in one of the hub's queues, read at
// each scrape.
type Queue struct {
	// Name: c2d (cloud-to-device messages not yet settled or expired, on
	// every device), feedback, file_notifications (records no back end has
	// completed).
	Name     string
	Messages uint64
}

// Queues reports, at each scrape, the messages waiting in the hub's
// queues, as queues reads them.
func (m *Metrics) Queues(queues func(ctx context.Context) ([]Queue, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&queueCollector{read: queues})
}

var queuedDesc = prometheus.NewDesc("twinhub_queued_messages", "Messages waiting in a queue of the hub: c2d (cloud-to-device, all devices), feedback, file_notifications.", []string{"queue"}, nil)

type queueCollector struct {
	read func(ctx context.Context) ([]Queue, error)
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queuedDesc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	queues, _ := c.read(ctx) // what could be read
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(q.Messages), q.Name)
	}
}

// registryCollector reports the registry's counts as gauges.
type registryCollector struct {
	read func(ctx context.Context) (Registry, error)
}

var (
	devicesDesc   = prometheus.NewDesc("twinhub_devices", "Device identities, by status (enabled, disabled).", []string{"status"}, nil)
	connectedDesc = prometheus.NewDesc("twinhub_devices_connected", "Devices whose connection state is Connected, on every node.", nil, nil)
	scrapeErrDesc = prometheus.NewDesc("twinhub_registry_scrape_error", "1 when the registry's counts could not be read for this scrape.", nil, nil)
	indexLagDesc  = prometheus.NewDesc("twinhub_index_lag_revisions", "Store revisions the query index has yet to apply (0: caught up).", nil, nil)
)

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- devicesDesc
	ch <- connectedDesc
	ch <- scrapeErrDesc
	ch <- indexLagDesc
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 0)
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(r.EnabledDevices), "enabled")
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(r.DisabledDevices), "disabled")
	ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, float64(r.ConnectedDevices))
	ch <- prometheus.MustNewConstMetric(indexLagDesc, prometheus.GaugeValue, float64(r.IndexLag))
}

// Check is one condition of readiness: nil when it holds.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Handler serves /metrics, /healthz (the process answers) and /readyz
// (every check holds: 200, else 503 with what failed, as JSON).
func (m *Metrics) Handler(checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		failed := map[string]string{}
		for _, c := range checks {
			if err := c.Run(ctx); err != nil {
				failed[c.Name] = err.Error()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]any{"ready": false, "failed": failed})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"ready": true})
	})
	return mux
}
