package bench

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// recorder counts operations and errors and keeps every latency, so that
// percentiles are exact. It is safe for concurrent use.
type recorder struct {
	ops, errs atomic.Int64

	mu      sync.Mutex
	lat     []time.Duration
	errMsgs map[string]int
}

func newRecorder() *recorder { return &recorder{errMsgs: map[string]int{}} }

// done records an operation that started at start.
func (r *recorder) done(start time.Time, err error) {
	r.doneLatency(time.Since(start), err)
}

func (r *recorder) doneLatency(d time.Duration, err error) {
	if err != nil {
		r.errs.Add(1)
		r.mu.Lock()
		msg := truncate(err.Error(), 160)
		if len(r.errMsgs) >= 5 && r.errMsgs[msg] == 0 {
			msg = "(other errors)"
		}
		r.errMsgs[msg]++
		r.mu.Unlock()
		return
	}
	r.ops.Add(1)
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func (r *recorder) latency() *Latency {
	r.mu.Lock()
	lat := slices.Clone(r.lat)
	r.mu.Unlock()
	if len(lat) == 0 {
		return nil
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.5) - 1
		i = max(0, min(i, len(lat)-1))
		return ms(lat[i])
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return &Latency{P50: pct(0.50), P99: pct(0.99), P999: pct(0.999), Max: ms(lat[len(lat)-1]), Mean: ms(sum / time.Duration(len(lat)))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *recorder) errorSamples() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errMsgs) == 0 {
		return nil
	}
	out := make(map[string]int, len(r.errMsgs))
	for k, v := range r.errMsgs {
		out[k] = v
	}
	return out
}

// Result is one measurement: a scenario's phase or a baseline.
type Result struct {
	// Name is scenario/phase, e.g. "reported" or "twin-read/rest".
	Name string `json:"name"`
	// Kind is "twinhub" or "baseline".
	Kind string `json:"kind"`
	// What one operation is, e.g. "reported patch round trip".
	Unit    string   `json:"unit"`
	Ops     int64    `json:"ops"`
	Errors  int64    `json:"errors"`
	Seconds float64  `json:"seconds"`
	Rate    float64  `json:"rate_per_s"`
	Latency *Latency `json:"latency,omitempty"`
	Clients int      `json:"clients,omitempty"`
	Hub     *Usage   `json:"hub,omitempty"`
	// Generator is this process's own use over the phase, when the hub
	// (or the baseline's server) runs in another: on a machine whose
	// cores the two share, a ratio of rates is also a ratio of what the
	// load generator spends on each side.
	Generator *Usage         `json:"generator,omitempty"`
	ErrorMsg  map[string]int `json:"error_samples,omitempty"`
	// Extra holds scenario-specific numbers (e.g. bytes per connection).
	Extra map[string]float64 `json:"extra,omitempty"`
	Notes []string           `json:"notes,omitempty"`
}

func (r *recorder) result(name, kind, unit string, elapsed time.Duration, clients int) *Result {
	ops := r.ops.Load()
	res := &Result{
		Name: name, Kind: kind, Unit: unit, Ops: ops, Errors: r.errs.Load(),
		Seconds: elapsed.Seconds(), Latency: r.latency(), Clients: clients,
		ErrorMsg: r.errorSamples(),
	}
	if elapsed > 0 {
		res.Rate = float64(ops) / elapsed.Seconds()
	}
	return res
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Result) extra(k string, v float64) {
	if r.Extra == nil {
		r.Extra = map[string]float64{}
	}
	r.Extra[k] = v
}
