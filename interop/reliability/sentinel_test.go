package reliability

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sentinel is a well-behaved device and back end that keep using the hub
// while a test attacks it: every 50 ms the device patches its reported
// properties over MQTT and the back end reads the twin over REST (or
// another path: restPath, default /twins/sentinel). stop
// fails the test if any of their requests failed, and reports the counts.
type sentinel struct {
	ok, failed atomic.Int64
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func startSentinel(t *testing.T, p *proc, c *rest, restPath ...string) *sentinel {
	t.Helper()
	path := "/twins/sentinel"
	if len(restPath) > 0 {
		path = restPath[0]
	}
	d := c.createDevice(t, "sentinel")
	dev, err := p.connectDevice(t, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sentinel{cancel: cancel}
	note := func(err error) {
		if err == nil {
			s.ok.Add(1)
			return
		}
		s.failed.Add(1)
		s.mu.Lock()
		if len(s.errs) < 5 {
			s.errs = append(s.errs, err.Error())
		}
		s.mu.Unlock()
	}
	s.wg.Go(func() {
		for n := 0; ctx.Err() == nil; n++ {
			cctx, done := context.WithTimeout(context.Background(), 20*time.Second)
			r, err := dev.patchReported(cctx, map[string]any{"n": n})
			done()
			if err == nil && r.Status != http.StatusNoContent {
				err = fmt.Errorf("reported patch: %d %s", r.Status, r.Body)
			}
			note(err)
			time.Sleep(50 * time.Millisecond)
		}
	})
	s.wg.Go(func() {
		for ctx.Err() == nil {
			cctx, done := context.WithTimeout(context.Background(), 20*time.Second)
			r, err := c.do(cctx, p.policyToken("iothubowner"), "GET", path, nil)
			done()
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("GET %s: %d %.200s", path, r.Status, r.Body)
			}
			note(err)
			time.Sleep(50 * time.Millisecond)
		}
	})
	return s
}

func (s *sentinel) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	s.wg.Wait()
	t.Logf("sentinel device and back end: %d requests served, %d failed", s.ok.Load(), s.failed.Load())
	if s.failed.Load() > 0 {
		t.Errorf("the sentinel's requests failed while the hub was attacked: %v", s.errs)
	}
	if s.ok.Load() == 0 {
		t.Error("the sentinel made no request")
	}
}
