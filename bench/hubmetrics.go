package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// hubHistogram is one of the hub's Prometheus histograms as scraped from
// its /metrics: cumulative counts at each upper bound (the last +Inf).
// The load generator shares the machine's cores with the hub, so what a
// client times includes its own wait for a core; the hub's histogram is
// what the hub itself took, and the two side by side say which is which.
type hubHistogram struct {
	upper []float64
	cum   []uint64
	sum   float64 // of the observations, in seconds
}

// scrapeHistogram gets url (a hub's /metrics) and returns the histogram
// called name, the series with labels (none: the first).
func scrapeHistogram(ctx context.Context, url, name string, labels map[string]string) (h hubHistogram, err error) {
	err = scrapeMetrics(ctx, url, func(r io.Reader) error {
		h, err = parseHistogram(r, name, labels)
		return err
	})
	return h, err
}

// scrapeMetrics gets url (a hub's /metrics) and hands its body to parse.
func scrapeMetrics(ctx context.Context, url string, parse func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("%s: %s %s", url, res.Status, body)
	}
	return parse(res.Body)
}

// metricsGauges reads unlabelled gauges (or untyped values) from url, a
// hub's /metrics, in the order of names; a gauge the page lacks is an
// error.
func metricsGauges(url string, names ...string) (vals []float64, err error) {
	err = scrapeMetrics(context.Background(), url, func(r io.Reader) error {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(r)
		if err != nil {
			return fmt.Errorf("the hub's metrics do not parse: %w", err)
		}
		for _, name := range names {
			fam := fams[name]
			if fam == nil || len(fam.Metric) == 0 {
				return fmt.Errorf("%s: no %s", url, name)
			}
			switch m := fam.Metric[0]; {
			case m.Gauge != nil:
				vals = append(vals, m.Gauge.GetValue())
			case m.Untyped != nil:
				vals = append(vals, m.Untyped.GetValue())
			default:
				return fmt.Errorf("%s: %s is a %s, not a gauge", url, name, fam.GetType())
			}
		}
		return nil
	})
	return vals, err
}

// parseHistogram reads the histogram called name, the series with labels
// (none: the first), from an exposition in Prometheus' text format.
func parseHistogram(r io.Reader, name string, labels map[string]string) (hubHistogram, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return hubHistogram{}, fmt.Errorf("the hub's metrics do not parse: %w", err)
	}
	var m *dto.Histogram
	if fam := fams[name]; fam != nil {
	series:
		for _, s := range fam.Metric {
			for k, v := range labels {
				if !slices.ContainsFunc(s.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
					continue series
				}
			}
			m = s.Histogram
			break
		}
	}
	if m == nil {
		return hubHistogram{}, fmt.Errorf("%w: %s%v", errNoSeries, name, labels)
	}
	h := hubHistogram{sum: m.GetSampleSum()}
	for _, b := range m.Bucket {
		h.upper = append(h.upper, b.GetUpperBound())
		h.cum = append(h.cum, b.GetCumulativeCount())
	}
	if len(h.upper) == 0 || !math.IsInf(h.upper[len(h.upper)-1], 1) {
		h.upper = append(h.upper, math.Inf(1))
		h.cum = append(h.cum, m.GetSampleCount())
	}
	return h, nil
}

// errNoSeries: the hub's metrics have no such histogram, or not yet (a
// labelled series appears with its first observation).
var errNoSeries = errors.New("the hub's metrics have no histogram")

// since is what h counted after before (an earlier scrape of the same
// histogram, or none: the zero hubHistogram): the observations of the
// phase between the two.
func (h hubHistogram) since(before hubHistogram) (hubHistogram, error) {
	if before.upper == nil {
		return h, nil
	}
	if len(before.upper) != len(h.upper) {
		return hubHistogram{}, fmt.Errorf("the histogram's buckets changed between scrapes (%d, then %d)", len(before.upper), len(h.upper))
	}
	d := hubHistogram{upper: h.upper, cum: make([]uint64, len(h.cum)), sum: h.sum - before.sum}
	for i := range h.cum {
		if h.upper[i] != before.upper[i] || h.cum[i] < before.cum[i] {
			return hubHistogram{}, fmt.Errorf("the histogram was reset between scrapes (the hub restarted?)")
		}
		d.cum[i] = h.cum[i] - before.cum[i]
	}
	return d, nil
}

// count is how many observations h holds.
func (h hubHistogram) count() uint64 {
	if len(h.cum) == 0 {
		return 0
	}
	return h.cum[len(h.cum)-1]
}

// quantile estimates the q-quantile (0 < q < 1) in seconds as Prometheus'
// histogram_quantile does: linearly within the bucket it falls in, from
// the bucket's lower bound (0 for the first). A quantile in the +Inf
// bucket is the highest finite bound. NaN when h is empty.
func (h hubHistogram) quantile(q float64) float64 {
	n := h.count()
	if n == 0 {
		return math.NaN()
	}
	rank := q * float64(n)
	for i, c := range h.cum {
		if float64(c) < rank {
			continue
		}
		if math.IsInf(h.upper[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return h.upper[i-1]
		}
		lower, below := 0.0, uint64(0)
		if i > 0 {
			lower, below = h.upper[i-1], h.cum[i-1]
		}
		in := c - below
		if in == 0 {
			return h.upper[i]
		}
		return lower + (h.upper[i]-lower)*(rank-float64(below))/float64(in)
	}
	return h.upper[len(h.upper)-1]
}

// The hub's histograms (package metrics): the time to answer a query
// page, and a REST request (by route).
const (
	queryDurationMetric = "twinhub_query_duration_seconds"
	httpDurationMetric  = "twinhub_http_request_duration_seconds"
)

// hubHistogramOver scrapes the hub's histogram name (the series with
// labels) now, and returns the function that ends the phase: it scrapes
// again and adds a result of what the hub observed in between (unit: one
// observation), with quantiles in milliseconds. Without the hub's metrics (Target.MetricsURL)
// both do nothing; a failed scrape is reported as a skipped result.
func (e *env) hubHistogramOver(name string, labels map[string]string) (end func(result, unit, note string)) {
	url := e.t.MetricsURL
	if url == "" {
		return func(string, string, string) {}
	}
	start := time.Now()
	before, err := scrapeHistogram(e.ctx, url, name, labels)
	if errors.Is(err, errNoSeries) {
		before, err = hubHistogram{}, nil // none observed yet
	}
	return func(result, unit, note string) {
		elapsed := time.Since(start)
		if err != nil {
			e.skip("%s: %v", result, err)
			return
		}
		after, err := scrapeHistogram(e.ctx, url, name, labels)
		var d hubHistogram
		if err == nil {
			d, err = after.since(before)
		}
		if err != nil {
			e.skip("%s: %v", result, err)
			return
		}
		n := d.count()
		r := &Result{Name: result, Kind: "twinhub", Unit: unit, Ops: int64(n), Seconds: elapsed.Seconds()}
		if n > 0 {
			ms := func(q float64) float64 { return d.quantile(q) * 1000 }
			r.Rate = float64(n) / elapsed.Seconds()
			r.Latency = &Latency{P50: ms(0.5), P99: ms(0.99), P999: ms(0.999), Max: ms(1), Mean: d.sum / float64(n) * 1000}
			r.extra("p90_ms", ms(0.9))
		}
		r.note("%s", note)
		e.add(r)
	}
}
