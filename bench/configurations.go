package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// configurations measures how long a configuration that targets Twins
// devices takes until its appliedCount says every twin has its content,
// from its PUT, as GET /configurations/{id} shows it.
func (e *env) configurations() error {
	ids := e.ids("cfg", e.cfg.Twins)
	if err := e.createDevices(ids, func(i int) map[string]any { return map[string]any{"cfgbench": e.prefix} }); err != nil {
		return err
	}
	e.waitIndexed(len(ids), "cfg")
	id := fmt.Sprintf("%s-cfg", e.prefix)
	body, _ := json.Marshal(map[string]any{
		"id": id, "priority": 10, "targetCondition": fmt.Sprintf("tags.cfgbench = '%s'", e.prefix),
		"content": map[string]any{"deviceContent": map[string]any{"properties.desired.benchConfig": map[string]any{"interval": 30, "mode": "eco"}}},
	})
	start := time.Now()
	if _, _, err := e.svc.do(e.ctx, http.MethodPut, "/configurations/"+id, nil, body); err != nil {
		return err
	}
	var c struct {
		SystemMetrics struct {
			Results map[string]int64 `json:"results"`
		} `json:"systemMetrics"`
	}
	last := time.Now()
	for c.SystemMetrics.Results["appliedCount"] < int64(len(ids)) {
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("appliedCount %d of %d after 10 minutes", c.SystemMetrics.Results["appliedCount"], len(ids))
		}
		time.Sleep(100 * time.Millisecond)
		data, _, err := e.svc.do(e.ctx, http.MethodGet, "/configurations/"+id, nil, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return err
		}
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			e.progressf("  configuration: appliedCount %d of %d", c.SystemMetrics.Results["appliedCount"], len(ids))
		}
	}
	elapsed := time.Since(start)
	rec := newRecorder()
	rec.ops.Store(int64(len(ids)))
	res := rec.result("configurations/applied", "twinhub", "twins", elapsed, 0)
	res.note("one configuration targeting %d twins: from its PUT until GET /configurations shows appliedCount = %d (polled every 100 ms); %.1f s (goal < 30 s)", len(ids), len(ids), elapsed.Seconds())
	e.add(res)
	_, _, err := e.svc.do(e.ctx, http.MethodDelete, "/configurations/"+id, map[string]string{"If-Match": "*"}, nil)
	return err
}
