package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestThrottles runs a hub with low limits on twin reads, queries and new
// connections, floods each, and shows that the floods get 429
// ThrottlingException (REST and MQTT twin) and CONNACK 3 refusals while a
// device that was connected before, and a back end using the registry,
// keep being served. No timing is asserted: each flood runs until it has
// been refused at least once (or gives up after very many requests).
func TestThrottles(t *testing.T) {
	t.Parallel()
	p := newProc(t, "127.0.0.66",
		"--throttle-twin-reads", "20", "--throttle-queries", "2", "--throttle-connects", "10")
	c := p.rest()
	victim := c.createDevice(t, "victim")
	var flooders []device
	for i := range 16 {
		flooders = append(flooders, c.createDevice(t, fmt.Sprintf("flood-%d", i)))
	}
	// The sentinel's device patches reported properties (twin updates, not
	// limited here) and its back end reads the registry (not limited).
	s := startSentinel(t, p, c, "/devices/sentinel")

	// flood runs fn from workers until it reports a refusal and at least
	// minTotal calls were made, or maxTotal calls were made.
	flood := func(workers, minTotal, maxTotal int, fn func() (ok, refused bool)) (oks, refusals int64) {
		began := time.Now()
		defer func() { t.Logf("(flood of %d calls took %s)", oks+refusals, time.Since(began).Round(time.Millisecond)) }()
		var okN, refN, total atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					n := total.Add(1)
					if n > int64(maxTotal) || (refN.Load() > 0 && n > int64(minTotal)) {
						return
					}
					ok, refused := fn()
					if ok {
						okN.Add(1)
					}
					if refused {
						refN.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return okN.Load(), refN.Load()
	}

	// REST twin reads.
	var badThrottle atomic.Value
	oks, refused := flood(16, 5000, 100000, func() (bool, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := c.do(ctx, p.policyToken("service"), "GET", "/twins/victim", nil)
		if err != nil {
			return false, false
		}
		if r.Status == http.StatusTooManyRequests {
			if r.Header.Get("iothub-errorcode") != "ThrottlingException" || !strings.Contains(string(r.Body), "ErrorCode:ThrottlingException") {
				badThrottle.Store(fmt.Sprintf("%v %s", r.Header, r.Body))
			}
			return false, true
		}
		return r.Status == http.StatusOK, false
	})
	t.Logf("REST twin-read flood (limit 20/s): %d served, %d refused with 429", oks, refused)
	if refused == 0 || oks == 0 {
		t.Errorf("REST flood: %d served, %d refused; want both", oks, refused)
	}
	if v := badThrottle.Load(); v != nil {
		t.Errorf("a 429 without ThrottlingException: %v", v)
	}

	// Queries.
	oks, refused = flood(4, 200, 10000, func() (bool, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := c.do(ctx, p.policyToken("service"), "POST", "/devices/query", map[string]any{"query": "SELECT * FROM devices"})
		if err != nil {
			return false, false
		}
		return r.Status == http.StatusOK, r.Status == http.StatusTooManyRequests
	})
	t.Logf("query flood (limit 2/s): %d served, %d refused with 429", oks, refused)
	if refused == 0 || oks == 0 {
		t.Errorf("query flood: %d served, %d refused; want both", oks, refused)
	}

	// MQTT twin reads from one device: 429 on the twin response topic.
	dev, err := p.connectDevice(t, victim)
	if err != nil {
		t.Fatal(err)
	}
	oks, refused = flood(4, 2000, 100000, func() (bool, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := dev.getTwin(ctx)
		if err != nil {
			return false, false
		}
		if r.Status == http.StatusTooManyRequests {
			var body struct {
				ErrorCode int `json:"errorCode"`
			}
			json.Unmarshal(r.Body, &body)
			if body.ErrorCode != 429001 {
				badThrottle.Store(fmt.Sprintf("MQTT 429 body %s", r.Body))
			}
			return false, true
		}
		return r.Status == http.StatusOK, false
	})
	// (The REST flood may have emptied the bucket they share: the MQTT
	// flood may be refused whole.)
	t.Logf("MQTT twin-read flood (same limit): %d served, %d refused with 429 (errorCode 429001)", oks, refused)
	if refused == 0 {
		t.Errorf("MQTT flood: %d served, none refused", oks)
	}
	if v := badThrottle.Load(); v != nil {
		t.Errorf("a bad throttling answer: %v", v)
	}

	// A connection flood: valid devices connecting as fast as they can.
	var seq atomic.Int64
	oks, refused = flood(16, 1000, 20000, func() (bool, bool) {
		d := flooders[seq.Add(1)%int64(len(flooders))]
		r, err := p.tryDialMQTT()
		if err != nil {
			return false, false
		}
		defer r.nc.Close()
		code, err := r.connack(d.ID, p.username(d.ID), p.deviceToken(d.ID, d.Key))
		if err != nil {
			return false, false
		}
		return code == 0, code == 3
	})
	t.Logf("connection flood (limit 10/s): %d accepted, %d refused with CONNACK 3", oks, refused)
	if refused == 0 || oks == 0 {
		t.Errorf("connection flood: %d accepted, %d refused; want both", oks, refused)
	}
	s.stop(t)
}
