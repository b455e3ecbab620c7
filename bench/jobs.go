package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// jobs measures a twin-update job over Twins devices: devices updated a
// second, from the PUT of the job to its end, and twin reads over REST
// meanwhile beside the same reads before it (the hub's other traffic).
func (e *env) jobs() error {
	ids := e.ids("job", e.cfg.Twins)
	if err := e.createDevices(ids, func(i int) map[string]any { return map[string]any{"jobbench": e.prefix} }); err != nil {
		return err
	}
	e.waitIndexed(len(ids), "job")

	reads := func(name string, until func() bool) *Result {
		rec := newRecorder()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; !until() && e.ctx.Err() == nil; i += 4 {
					t := time.Now()
					err := e.svc.getTwin(e.ctx, ids[i%len(ids)])
					rec.doneLatency(time.Since(t), err)
				}
			}()
		}
		wg.Wait()
		return rec.result(name, "twinhub", "reads", time.Since(start), 4)
	}
	quiet := time.Now().Add(e.cfg.Duration / 2)
	before := reads("jobs/twin-reads-before", func() bool { return time.Now().After(quiet) })
	e.add(before)

	jobID := fmt.Sprintf("%s-job", e.prefix)
	body, _ := json.Marshal(map[string]any{
		"jobId": jobID, "type": "scheduleUpdateTwin", "queryCondition": fmt.Sprintf("tags.jobbench = '%s'", e.prefix),
		"updateTwin":                map[string]any{"etag": "*", "tags": map[string]any{"jobrun": 1}, "properties": map[string]any{"desired": map[string]any{"fw": "2.0"}}},
		"maxExecutionTimeInSeconds": 3600,
	})
	start := time.Now()
	if _, _, err := e.svc.do(e.ctx, http.MethodPut, "/jobs/v2/"+jobID, nil, body); err != nil {
		return err
	}
	var job struct {
		Status string `json:"status"`
		Stats  struct {
			DeviceCount, SucceededCount, FailedCount int
		} `json:"deviceJobStatistics"`
	}
	ctx, done := context.WithCancel(e.ctx)
	var during *Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		during = reads("jobs/twin-reads-during", func() bool { return ctx.Err() != nil })
	}()
	last := time.Now()
	for job.Status != "completed" && job.Status != "failed" && job.Status != "cancelled" {
		time.Sleep(100 * time.Millisecond)
		data, _, err := e.svc.do(e.ctx, http.MethodGet, "/jobs/v2/"+jobID, nil, nil)
		if err != nil {
			done()
			return err
		}
		if err := json.Unmarshal(data, &job); err != nil {
			done()
			return err
		}
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			e.progressf("  job %s: %d of %d devices", job.Status, job.Stats.SucceededCount+job.Stats.FailedCount, job.Stats.DeviceCount)
		}
	}
	elapsed := time.Since(start)
	done()
	wg.Wait()
	rec := newRecorder()
	rec.ops.Store(int64(job.Stats.SucceededCount))
	rec.errs.Store(int64(job.Stats.FailedCount))
	res := rec.result("jobs/update-twin", "twinhub", "devices", elapsed, 0)
	res.note("one scheduleUpdateTwin job over %d devices (status %s), from its PUT to its end as GET /jobs/v2 shows it, polled every 100 ms", job.Stats.DeviceCount, job.Status)
	e.add(res)
	during.note("4 REST twin readers while the job ran; jobs/twin-reads-before is the same load before it")
	e.add(during)
	if job.Status != "completed" || job.Stats.SucceededCount != len(ids) {
		return fmt.Errorf("the job ended %s with %d of %d devices updated", job.Status, job.Stats.SucceededCount, len(ids))
	}
	return nil
}
