package hub_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
)

// TestConfigurationRegistry: create, read, list, update with etags,
// delete, and the configurations refused.
func TestConfigurationRegistry(t *testing.T) {
	h := hubtest.New(t)
	ctx := context.Background()
	c := twinhub.Configuration{ID: "fw-rollout", TargetCondition: "tags.env = 'test'", Priority: 10,
		Labels:  map[string]string{"team": "a"},
		Content: twinhub.ConfigurationContent{DeviceContent: map[string]any{"properties.desired.fw": map[string]any{"version": "2"}}}}
	created, err := h.PutConfiguration(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	if created.ETag == "" || created.SchemaVersion != "1.0" || created.CreatedTimeUtc.IsZero() || created.Metrics.Queries == nil {
		t.Errorf("created %+v", created)
	}
	if _, err := h.PutConfiguration(ctx, c, ""); statusOf(err) != http.StatusConflict {
		t.Errorf("create twice: %v", err)
	}
	got, err := h.GetConfiguration(ctx, "fw-rollout")
	if err != nil || got.ETag != created.ETag || got.Priority != 10 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	got.Priority = 99
	if _, err := h.PutConfiguration(ctx, *got, `"stale"`); statusOf(err) != http.StatusPreconditionFailed {
		t.Errorf("update with a stale etag: %v", err)
	}
	updated, err := h.PutConfiguration(ctx, *got, `"`+got.ETag+`"`)
	if err != nil || updated.Priority != 99 || updated.ETag == got.ETag || !updated.CreatedTimeUtc.Equal(got.CreatedTimeUtc.Time) {
		t.Fatalf("update: %+v, %v", updated, err)
	}
	if forced, err := h.PutConfiguration(ctx, twinhub.Configuration{ID: "fw-rollout", Content: c.Content, Priority: 5}, `"*"`); err != nil || forced.Priority != 5 {
		t.Errorf("forced update: %+v, %v", forced, err)
	}
	changed := *updated
	changed.Content = twinhub.ConfigurationContent{DeviceContent: map[string]any{"properties.desired.fw": map[string]any{"version": "3"}}}
	if _, err := h.PutConfiguration(ctx, changed, "*"); statusOf(err) != http.StatusBadRequest {
		t.Errorf("a change of content: %v", err)
	}
	if all, err := h.ListConfigurations(ctx, 0); err != nil || len(all) != 1 || all[0].ID != "fw-rollout" {
		t.Errorf("list: %v, %v", all, err)
	}

	bad := map[string]twinhub.Configuration{
		"capitals":                         {ID: "FW", Content: c.Content},
		"a space":                          {ID: "f w", Content: c.Content},
		"negative priority":                {ID: "neg", Priority: -1, Content: c.Content},
		"a target that does not parse":     {ID: "bad-target", TargetCondition: "tags.env = ", Content: c.Content},
		"a key outside properties.desired": {ID: "bad-key", Content: twinhub.ConfigurationContent{DeviceContent: map[string]any{"tags.x": 1}}},
		"two kinds of content":             {ID: "two", Content: twinhub.ConfigurationContent{DeviceContent: c.Content.DeviceContent, ModuleContent: c.Content.DeviceContent}},
		"a metric that does not parse":     {ID: "bad-metric", Content: c.Content, Metrics: twinhub.ConfigurationMetrics{Queries: map[string]string{"m": "SELECT FROM"}}},
	}
	for name, b := range bad {
		if _, err := h.PutConfiguration(ctx, b, ""); statusOf(err) != http.StatusBadRequest {
			t.Errorf("%s: %v, want a 400", name, err)
		}
	}
	if err := h.DeleteConfiguration(ctx, "fw-rollout", `"stale"`); statusOf(err) != http.StatusPreconditionFailed {
		t.Errorf("delete with a stale etag: %v", err)
	}
	if err := h.DeleteConfiguration(ctx, "fw-rollout", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.GetConfiguration(ctx, "fw-rollout"); statusOf(err) != http.StatusNotFound {
		t.Errorf("get after delete: %v", err)
	}
	if target, metrics := h.TestConfigurationQueries("tags.x = ", map[string]string{"ok": "SELECT deviceId FROM devices", "bad": "SELECT"}); target == "" || metrics["bad"] == "" || metrics["ok"] != "" {
		t.Errorf("testQueries: %q %v", target, metrics)
	}
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: never", what)
}

// TestConfigurationsApply: content reaches the twins a configuration
// targets, the higher priority wins a twin, a twin that comes into the
// target gets it, and the metrics count all that.
func TestConfigurationsApply(t *testing.T) {
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.ConfigurationInterval = 50 * time.Millisecond }))
	ctx := context.Background()
	for id, env := range map[string]string{"d1": "test", "d2": "test", "d3": "prod"} {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"env": env}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	fwOf := func(id string) any {
		desired := twinDoc(t, h, id)["properties"].(map[string]any)["desired"].(map[string]any)
		fw, _ := desired["fw"].(map[string]any)
		return fw["version"]
	}
	content := func(v string) twinhub.ConfigurationContent {
		// A number among the strings: the passes compare it as twins hold it.
		return twinhub.ConfigurationContent{DeviceContent: map[string]any{"properties.desired.fw": map[string]any{"version": v, "retries": 3}}}
	}
	if _, err := h.PutConfiguration(ctx, twinhub.Configuration{ID: "base", TargetCondition: "tags.env = 'test'", Priority: 10, Content: content("2"),
		Metrics: twinhub.ConfigurationMetrics{Queries: map[string]string{"v2": "SELECT deviceId FROM devices WHERE properties.desired.fw.version = '2'"}}}, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "base applied to d1 and d2", func() bool {
		c, _ := h.GetConfiguration(ctx, "base")
		return fwOf("d1") == "2" && fwOf("d2") == "2" && c.SystemMetrics.Results["appliedCount"] == 2 && c.Metrics.Results["v2"] == 2
	})
	if fwOf("d3") != nil {
		t.Errorf("d3 is not targeted but has fw %v", fwOf("d3"))
	}
	version := twinDoc(t, h, "d1")["version"]

	if _, err := h.PutConfiguration(ctx, twinhub.Configuration{ID: "canary", TargetCondition: "deviceId = 'd1'", Priority: 20, Content: content("3")}, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "canary wins d1", func() bool {
		base, _ := h.GetConfiguration(ctx, "base")
		canary, _ := h.GetConfiguration(ctx, "canary")
		return fwOf("d1") == "3" && fwOf("d2") == "2" && base.SystemMetrics.Results["targetedCount"] == 2 &&
			base.SystemMetrics.Results["appliedCount"] == 1 && canary.SystemMetrics.Results["appliedCount"] == 1
	})
	if v := twinDoc(t, h, "d1")["version"].(float64); v != version.(float64)+1 {
		t.Errorf("d1 written %v times by the passes, want once", v-version.(float64))
	}

	// Each twin shows the configurations that target it, as queries do.
	statuses := func(id string) map[string]any {
		cs, _ := twinDoc(t, h, id)["configurations"].(map[string]any)
		out := map[string]any{}
		for cid, v := range cs {
			out[cid] = v.(map[string]any)["status"]
		}
		return out
	}
	if got := statuses("d1"); !reflect.DeepEqual(got, map[string]any{"canary": "Applied", "base": "Targeted"}) {
		t.Errorf("d1's configurations %v", got)
	}
	if got := statuses("d2"); !reflect.DeepEqual(got, map[string]any{"base": "Applied"}) {
		t.Errorf("d2's configurations %v", got)
	}
	if got := statuses("d3"); len(got) != 0 {
		t.Errorf("d3's configurations %v", got)
	}
	applied := func(id string) []string {
		page, err := h.Query(ctx, "SELECT deviceId FROM devices WHERE configurations.[["+id+"]].status = 'Applied'", 100, "")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, item := range page.Items {
			ids = append(ids, item["deviceId"].(string))
		}
		slices.Sort(ids)
		return ids
	}
	if got := applied("base"); !reflect.DeepEqual(got, []string{"d2"}) {
		t.Errorf("base applied to %v", got)
	}

	// A twin that comes into the target gets the content; one that
	// leaves loses the status; a configuration deleted leaves no status,
	// and the one below it applies again.
	if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("d3"), twinhub.TwinUpdate{Tags: map[string]any{"env": "test"}}, "*"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d3 in the target", func() bool { return fwOf("d3") == "2" && statuses("d3")["base"] == "Applied" })
	if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey("d2"), twinhub.TwinUpdate{Tags: map[string]any{"env": "prod"}}, "*"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d2 out of the target", func() bool { return len(statuses("d2")) == 0 })
	if err := h.DeleteConfiguration(ctx, "canary", "*"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "canary forgotten", func() bool {
		return reflect.DeepEqual(statuses("d1"), map[string]any{"base": "Applied"}) && fwOf("d1") == "2"
	})
	if got := applied("base"); !reflect.DeepEqual(got, []string{"d1", "d3"}) {
		t.Errorf("base applied to %v", got)
	}
}

// TestConfigurationReservedNames: content whose property names are words
// of the query language, or not identifiers, still reaches the twins.
func TestConfigurationReservedNames(t *testing.T) {
	h := hubtest.New(t)
	ctx := context.Background()
	if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"select", "from", "a-b", "x1"} {
		id := "c" + string(rune('0'+i))
		if _, err := h.PutConfiguration(ctx, twinhub.Configuration{ID: id, TargetCondition: "*", Priority: i,
			Content: twinhub.ConfigurationContent{DeviceContent: map[string]any{"properties.desired." + name: "v"}}}, ""); err != nil {
			t.Fatal(err)
		}
		eventually(t, name+" applied", func() bool {
			desired := twinDoc(t, h, "d")["properties"].(map[string]any)["desired"].(map[string]any)
			c, _ := h.GetConfiguration(ctx, id)
			return desired[name] == "v" && c.SystemMetrics.Results["appliedCount"] == 1
		})
		if err := h.DeleteConfiguration(ctx, id, "*"); err != nil {
			t.Fatal(err)
		}
	}
}
