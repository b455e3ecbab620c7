package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/query"
)

// Automatic configurations: the registry of them (with etags), and the
// reconciler that writes their content into the desired properties of
// the twins they target and counts their metrics.
//
// The reconciler keeps its state in the twins: a pass finds each
// configuration's targets with the query index, gives each twin to the
// configuration of highest priority that targets it (the newest on a
// tie), and writes that configuration's content into the twins whose
// desired properties do not hold it already. A twin that holds it counts
// as applied. Each twin also shows the configurations that target it
// (configurations.{id}.status: Applied for the one whose content it has,
// Targeted for the others), which metric queries read; the pass writes
// them too, and removes the status of a configuration a twin left or
// that was deleted. It runs after every change to a configuration and
// every ConfigurationInterval, so that twins that come into a target get
// the content; a twin that leaves every target keeps its desired
// properties. Every node runs passes; their writes are the same and find
// the content in place once one has written it.

// DefaultConfigurationInterval is how often the reconciler runs besides
// after each change (IoT Hub: every five minutes).
const DefaultConfigurationInterval = 10 * time.Second

func errNoConfigurations() error {
	return twinhub.Errorf(http.StatusNotImplemented, "NotImplemented", "this hub keeps no configurations")
}

// conditionQuery is the query that lists what a target condition (or a
// metric's condition) matches: a WHERE condition on devices, or on
// devices.modules after "FROM devices.modules WHERE"; * is everything and
// an empty condition nothing (nil).
func conditionQuery(condition string, modules bool) (*query.Query, error) {
	c := strings.TrimSpace(condition)
	if c == "" {
		return nil, nil
	}
	from := "devices"
	if modules {
		from = "devices.modules"
	}
	lower := strings.ToLower(c)
	for _, prefix := range []string{"from devices.modules where ", "from devices where ", "where "} {
		if strings.HasPrefix(lower, prefix) {
			c = strings.TrimSpace(c[len(prefix):])
			break
		}
	}
	src := "SELECT * FROM " + from
	if c != "*" {
		src += " WHERE " + c
	}
	q, err := query.Parse(src)
	if err != nil {
		return nil, err
	}
	return q, nil
}

// metricQuery parses a custom metric: a whole query (SELECT deviceId
// FROM devices WHERE ...), counted by its rows.
func metricQuery(src string) (*query.Query, error) { return query.Parse(src) }

// checkConfiguration validates a configuration that a client sends.
func checkConfiguration(c *twinhub.Configuration) error {
	if err := twinhub.ValidateConfigurationID(c.ID); err != nil {
		return err
	}
	if c.Priority < 0 {
		return twinhub.ErrInvalid("priority must not be negative, not %d", c.Priority)
	}
	kinds := 0
	for _, n := range []int{len(c.Content.DeviceContent), len(c.Content.ModuleContent), len(c.Content.ModulesContent)} {
		if n > 0 {
			kinds++
		}
	}
	if kinds > 1 {
		return twinhub.Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content holds one of deviceContent, moduleContent and modulesContent")
	}
	for _, section := range []map[string]any{c.Content.DeviceContent, c.Content.ModuleContent} {
		if len(section) > 0 {
			if _, err := twinhub.DesiredPatch(section); err != nil {
				return err
			}
		}
	}
	for module, section := range c.Content.ModulesContent {
		if err := twinhub.ValidateID("module", module); err != nil {
			return twinhub.Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "modulesContent: %s", twinhub.AsError(err).Message)
		}
		if _, err := twinhub.DesiredPatch(section); err != nil {
			return err
		}
	}
	if _, err := conditionQuery(c.TargetCondition, c.ForModules()); err != nil {
		return twinhub.Errorf(http.StatusBadRequest, "InvalidConfigurationTargetCondition", "targetCondition: %v", err)
	}
	if len(c.Metrics.Queries) > twinhub.MaxConfigurationMetrics {
		return twinhub.ErrInvalid("a configuration has at most %d custom metrics, not %d", twinhub.MaxConfigurationMetrics, len(c.Metrics.Queries))
	}
	for name, src := range c.Metrics.Queries {
		if _, err := metricQuery(src); err != nil {
			return twinhub.Errorf(http.StatusBadRequest, "InvalidConfigurationCustomMetricsQuery", "metric %q: %v", name, err)
		}
	}
	return nil
}

// PutConfiguration creates a configuration, or with ifMatch updates one
// (PUT /configurations/{id}); content cannot change after creation.
func (h *Hub) PutConfiguration(ctx context.Context, c twinhub.Configuration, ifMatch string) (*twinhub.Configuration, error) {
	if h.configs == nil {
		return nil, errNoConfigurations()
	}
	if err := checkConfiguration(&c); err != nil {
		return nil, err
	}
	if c.Metrics.Queries == nil {
		c.Metrics.Queries = map[string]string{}
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = "1.0"
	}
	now := twinhub.Now()
	if ifMatch == "" {
		all, err := h.configs.Configurations(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) >= twinhub.MaxConfigurations {
			return nil, twinhub.Errorf(http.StatusRequestEntityTooLarge, "ConfigurationCountLimitExceeded", "a hub has at most %d configurations", twinhub.MaxConfigurations)
		}
		c.CreatedTimeUtc, c.LastUpdatedTimeUtc, c.Version = now, now, 1
		err = h.configs.CreateConfiguration(ctx, &c)
		if errors.Is(err, twinhub.ErrExists) {
			return nil, twinhub.Errorf(http.StatusConflict, "ConfigurationAlreadyExists", "Configuration '%s' already exists; update it with If-Match", c.ID)
		} else if err != nil {
			return nil, err
		}
		h.reconcileSoon()
		return h.showConfiguration(&c), nil
	}
	for {
		old, rev, err := h.configs.Configuration(ctx, c.ID)
		if errors.Is(err, twinhub.ErrNotFound) {
			return nil, twinhub.ErrConfigurationNotFound(c.ID)
		} else if err != nil {
			return nil, err
		}
		if !etagMatches(ifMatch, twinhub.ConfigurationETag(old.Version)) {
			return nil, twinhub.ErrPreconditionFailed("configuration")
		}
		if !reflect.DeepEqual(normalContent(c.Content), normalContent(old.Content)) {
			return nil, twinhub.Errorf(http.StatusBadRequest, "CannotModifyImmutableConfigurationContent", "the content of configuration '%s' cannot change; create another configuration", c.ID)
		}
		next := *old
		next.Labels, next.TargetCondition, next.Priority, next.Metrics.Queries = c.Labels, c.TargetCondition, c.Priority, c.Metrics.Queries
		next.SchemaVersion = c.SchemaVersion
		next.LastUpdatedTimeUtc, next.Version = now, old.Version+1
		err = h.configs.UpdateConfiguration(ctx, &next, rev)
		if errors.Is(err, twinhub.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		h.reconcileSoon()
		return h.showConfiguration(&next), nil
	}
}

// normalContent compares contents as JSON sees them (a client sends back
// what it read: numbers as float64, empty sections left out).
func normalContent(c twinhub.ConfigurationContent) any {
	var v any
	b, _ := json.Marshal(c)
	_ = json.Unmarshal(b, &v)
	return v
}

// GetConfiguration reads one (GET /configurations/{id}).
func (h *Hub) GetConfiguration(ctx context.Context, id string) (*twinhub.Configuration, error) {
	if h.configs == nil {
		return nil, errNoConfigurations()
	}
	c, _, err := h.configs.Configuration(ctx, id)
	if errors.Is(err, twinhub.ErrNotFound) {
		return nil, twinhub.ErrConfigurationNotFound(id)
	} else if err != nil {
		return nil, err
	}
	return h.showConfiguration(c), nil
}

// ListConfigurations returns up to top configurations, oldest first
// (GET /configurations?top=).
func (h *Hub) ListConfigurations(ctx context.Context, top int) ([]*twinhub.Configuration, error) {
	if h.configs == nil {
		return nil, errNoConfigurations()
	}
	all, err := h.configs.Configurations(ctx)
	if err != nil {
		return nil, err
	}
	if top > 0 && len(all) > top {
		all = all[:top]
	}
	for i, c := range all {
		all[i] = h.showConfiguration(c)
	}
	return all, nil
}

// DeleteConfiguration removes one (DELETE /configurations/{id}), if
// ifMatch matches; the twins keep the desired properties it wrote.
func (h *Hub) DeleteConfiguration(ctx context.Context, id, ifMatch string) error {
	if h.configs == nil {
		return errNoConfigurations()
	}
	for {
		c, rev, err := h.configs.Configuration(ctx, id)
		if errors.Is(err, twinhub.ErrNotFound) {
			return twinhub.ErrConfigurationNotFound(id)
		} else if err != nil {
			return err
		}
		if !etagMatches(ifMatch, twinhub.ConfigurationETag(c.Version)) {
			return twinhub.ErrPreconditionFailed("configuration")
		}
		err = h.configs.DeleteConfiguration(ctx, id, rev)
		if errors.Is(err, twinhub.ErrConflict) {
			continue
		}
		if err == nil {
			h.reconcileSoon()
		}
		return err
	}
}

// TestConfigurationQueries checks a target condition and metric queries
// without storing anything (POST /configurations/testQueries).
func (h *Hub) TestConfigurationQueries(targetCondition string, metrics map[string]string) (string, map[string]string) {
	targetErr := ""
	if _, err := conditionQuery(targetCondition, false); err != nil {
		targetErr = err.Error()
	}
	metricErrs := map[string]string{}
	for name, src := range metrics {
		if _, err := metricQuery(src); err != nil {
			metricErrs[name] = err.Error()
		}
	}
	return targetErr, metricErrs
}

// showConfiguration fills in what the hub computes: the etag and the
// metrics of the last reconciler pass.
func (h *Hub) showConfiguration(c *twinhub.Configuration) *twinhub.Configuration {
	out := *c
	out.ETag = twinhub.ConfigurationETag(c.Version)
	h.configMu.Lock()
	m := h.configMetrics[c.ID]
	h.configMu.Unlock()
	out.SystemMetrics = twinhub.ConfigurationMetrics{Results: map[string]int64{"targetedCount": m.targeted, "appliedCount": m.applied},
		Queries: systemQueries(c)}
	out.Metrics.Results = map[string]int64{}
	for name := range c.Metrics.Queries {
		out.Metrics.Results[name] = m.custom[name]
	}
	return &out
}

// systemQueries are the queries IoT Hub names for the system metrics.
func systemQueries(c *twinhub.Configuration) map[string]string {
	targeted := ""
	if strings.TrimSpace(c.TargetCondition) != "" {
		targeted = "select deviceId from devices where " + c.TargetCondition
		if c.ForModules() {
			targeted = "select deviceId, moduleId from devices.modules where " + c.TargetCondition
		}
	}
	return map[string]string{
		"targetedCount": targeted,
		"appliedCount":  fmt.Sprintf("select deviceId from devices where configurations.[[%s]].status = 'Applied'", c.ID),
	}
}

// configMetrics are a configuration's counts from a reconciler pass.
type configMetrics struct {
	targeted, applied int64
	custom            map[string]int64
}

// reconcileSoon asks for a reconciler pass.
func (h *Hub) reconcileSoon() {
	select {
	case h.configKick <- struct{}{}:
	default:
	}
}

// reconcileConfigurations runs passes until ctx ends: after each change
// to a configuration, and every interval when the store has changed
// since the last pass (a pass over an unchanged store would find what
// the last one found: at 100,000 twins it costs 1.3 s of CPU).
func (h *Hub) reconcileConfigurations(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var seen uint64
	for kicked := true; ; {
		rev, err := h.store.LastRevision(ctx)
		if kicked || err != nil || rev != seen {
			seen = rev
			if err := h.reconcilePass(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn("applying configurations", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-h.configKick:
			kicked = true
		case <-t.C:
			kicked = false
		}
	}
}

// target is a twin a configuration targets, as the query index shows it:
// the desired properties the content touches and the configuration's
// status in the twin ("" for none).
type target struct {
	k       twinhub.Key
	desired map[string]any
	status  string
}

// reconcilePass is one pass of the reconciler (see the top of the file).
func (h *Hub) reconcilePass(ctx context.Context) error {
	all, err := h.configs.Configurations(ctx)
	if err != nil {
		return err
	}
	// Higher priority first; the newest first on a tie.
	slices.SortStableFunc(all, func(a, b *twinhub.Configuration) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return b.CreatedTimeUtc.Compare(a.CreatedTimeUtc.Time)
	})
	taken := map[twinhub.Key]bool{}
	metrics := map[string]*configMetrics{}
	ids := map[string]bool{}
	// The pass's writes, one a twin: the content of the configuration
	// that has it (applies) and the statuses that change.
	writes := map[twinhub.Key]*twinWrite{}
	write := func(k twinhub.Key) *twinWrite {
		w := writes[k]
		if w == nil {
			w = &twinWrite{}
			writes[k] = w
		}
		return w
	}
	for _, c := range all {
		ids[c.ID] = true
		m := &configMetrics{custom: map[string]int64{}}
		metrics[c.ID] = m
		var patch map[string]any
		switch {
		case len(c.Content.DeviceContent) > 0:
			patch, err = twinhub.DesiredPatch(c.Content.DeviceContent)
		case len(c.Content.ModuleContent) > 0:
			patch, err = twinhub.DesiredPatch(c.Content.ModuleContent)
		}
		if err != nil {
			return err
		}
		targets, err := h.configurationTargets(ctx, c, patch)
		if err != nil {
			h.log.Warn("configuration target", "configuration", c.ID, "err", err)
		}
		m.targeted = int64(len(targets))
		targeted := make(map[twinhub.Key]bool, len(targets))
		for _, t := range targets {
			targeted[t.k] = true
			status := twinhub.ConfigurationTargeted
			if !taken[t.k] && patch != nil {
				taken[t.k] = true // a configuration of lower priority gets it no more
				status = twinhub.ConfigurationApplied
				if holds(t.desired, patch) {
					m.applied++
				} else {
					w := write(t.k)
					w.u.Desired, w.applies = patch, c.ID
				}
			}
			if t.status != status {
				write(t.k).status(c.ID, status)
			}
		}
		// Twins that left the target lose the status.
		err = h.configurationHolders(ctx, c.ID, c.ForModules(), func(k twinhub.Key) {
			if !targeted[k] {
				write(k).status(c.ID, "")
			}
		})
		if err != nil {
			h.log.Warn("configuration statuses", "configuration", c.ID, "err", err)
		}
	}
	h.forgetConfigurations(ctx, ids, func(id string, k twinhub.Key) { write(k).status(id, "") })
	for id, n := range h.writeConfigured(ctx, writes) {
		metrics[id].applied += n
	}
	// Metrics are counted after the writes, on what they wrote.
	shown := make(map[string]configMetrics, len(metrics))
	for _, c := range all {
		m := metrics[c.ID]
		for name, src := range c.Metrics.Queries {
			if n, err := h.countRows(ctx, src); err == nil {
				m.custom[name] = n
			}
		}
		shown[c.ID] = *m
	}
	h.configMu.Lock()
	h.configMetrics = shown
	h.configMu.Unlock()
	return nil
}

// twinWrite is the change a pass makes to a twin: applies names the
// configuration whose content u.Desired is.
type twinWrite struct {
	u       twinhub.TwinUpdate
	applies string
}

// status sets configuration id's status in the write ("" removes it).
func (w *twinWrite) status(id, status string) {
	if w.u.Configurations == nil {
		w.u.Configurations = map[string]string{}
	}
	w.u.Configurations[id] = status
}

// configurationHolders calls fn with each twin (a device's, or with
// modules a module's) that shows configuration id's status.
func (h *Hub) configurationHolders(ctx context.Context, id string, modules bool, fn func(twinhub.Key)) error {
	from := "devices"
	if modules {
		from = "devices.modules"
	}
	return h.queryEach(ctx, fmt.Sprintf("SELECT deviceId, moduleId FROM %s WHERE IS_DEFINED(configurations.[[%s]].status)", from, id), func(item map[string]any) {
		dev, _ := item["deviceId"].(string)
		mod, _ := item["moduleId"].(string)
		fn(twinhub.Key{DeviceID: dev, ModuleID: mod})
	})
}

// forgetConfigurations calls remove for the statuses of configurations
// that no longer exist: those the last pass knew and ids does not have,
// and on a node's first pass any the twins show (a configuration deleted
// while the node was down, or by another node).
func (h *Hub) forgetConfigurations(ctx context.Context, ids map[string]bool, remove func(id string, k twinhub.Key)) {
	if h.configKnown == nil {
		found := map[string]bool{}
		for _, from := range []string{"devices", "devices.modules"} {
			err := h.queryEach(ctx, "SELECT configurations FROM "+from+" WHERE IS_DEFINED(configurations)", func(item map[string]any) {
				cs, _ := item["configurations"].(map[string]any)
				for id := range cs {
					found[id] = true
				}
			})
			if err != nil {
				h.log.Warn("configuration statuses", "err", err)
				return // tried again next pass
			}
		}
		h.configKnown = found
	}
	for id := range h.configKnown {
		if ids[id] {
			continue
		}
		for _, modules := range []bool{false, true} {
			if err := h.configurationHolders(ctx, id, modules, func(k twinhub.Key) { remove(id, k) }); err != nil {
				h.log.Warn("configuration statuses", "configuration", id, "err", err)
				return // tried again next pass
			}
		}
	}
	h.configKnown = ids
}

// configurationWorkers is how many twins a pass writes at once (as a
// job's workers: each write waits on JetStream round trips).
const configurationWorkers = 64

// writeConfigured makes a pass's writes, configurationWorkers at once,
// and returns by configuration how many twins got its content.
func (h *Hub) writeConfigured(ctx context.Context, writes map[twinhub.Key]*twinWrite) map[string]int64 {
	var mu sync.Mutex
	applied := map[string]int64{}
	h.forEachKey(ctx, slices.Collect(maps.Keys(writes)), configurationWorkers, func(_ int, k twinhub.Key) error {
		w := writes[k]
		if _, err := h.UpdateTwin(ctx, k, w.u, "*"); err != nil {
			if twinhub.AsError(err).Status != http.StatusNotFound { // not deleted meanwhile
				h.log.Warn("applying configurations", "twin", k.String(), "err", err)
			}
			return nil
		}
		if w.applies != "" {
			mu.Lock()
			applied[w.applies]++
			mu.Unlock()
		}
		return nil
	})
	return applied
}

// configurationTargets lists the twins a configuration's target
// condition matches, with the desired properties that patch touches
// (all of them when its names are not plain identifiers: a projection of
// a few properties costs a small part of rendering whole twins) and the
// configuration's status in each.
func (h *Hub) configurationTargets(ctx context.Context, c *twinhub.Configuration, patch map[string]any) ([]target, error) {
	q, err := conditionQuery(c.TargetCondition, c.ForModules())
	if err != nil || q == nil {
		return nil, err
	}
	names := []string{}
	for name := range patch {
		if !plainIdentifier(name) {
			names = nil
			break
		}
		names = append(names, name)
	}
	src := q.Source
	if names != nil {
		list := fmt.Sprintf("deviceId, moduleId, configurations.[[%s]].status AS status", c.ID)
		for i, name := range names {
			list += fmt.Sprintf(", properties.desired.%s AS p%d", name, i)
		}
		src = "SELECT " + list + strings.TrimPrefix(src, "SELECT *")
		if _, err := query.Parse(src); err != nil {
			src, names = q.Source, nil // a name the language reserves: read whole twins
		}
	}
	var out []target
	err = h.queryEach(ctx, src, func(item map[string]any) {
		id, _ := item["deviceId"].(string)
		mid, _ := item["moduleId"].(string)
		t := target{k: twinhub.Key{DeviceID: id, ModuleID: mid}}
		if names != nil {
			t.status, _ = item["status"].(string)
			t.desired = make(map[string]any, len(names))
			for i, name := range names {
				if v, ok := item[fmt.Sprintf("p%d", i)]; ok {
					t.desired[name] = v
				}
			}
		} else {
			props, _ := item["properties"].(map[string]any)
			t.desired, _ = props["desired"].(map[string]any)
			configs, _ := item["configurations"].(map[string]any)
			status, _ := configs[c.ID].(map[string]any)
			t.status, _ = status["status"].(string)
		}
		out = append(out, t)
	})
	return out, err
}

// plainIdentifier says whether a property name can be written in a
// query path as it is.
func plainIdentifier(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// countRows counts the rows a metric query returns.
func (h *Hub) countRows(ctx context.Context, src string) (int64, error) {
	var n int64
	err := h.queryEach(ctx, src, func(map[string]any) { n++ })
	return n, err
}

// holds says whether desired properties hold every value of patch (a
// null in the patch: the property is absent). Both sides hold JSON as
// twins do (numbers float64: the patch comes from ParsePatch, the
// desired properties from the index), so values compare as they are.
func holds(desired, patch map[string]any) bool {
	for k, v := range patch {
		have, present := desired[k]
		switch v := v.(type) {
		case nil:
			if present {
				return false
			}
		case map[string]any:
			sub, ok := have.(map[string]any)
			if !ok || !holds(sub, v) {
				return false
			}
		default:
			if !present || !reflect.DeepEqual(have, v) {
				return false
			}
		}
	}
	return true
}

// ApplyConfigurationContent writes a configuration's content to one IoT
// Edge device at once (POST /devices/{id}/applyConfigurationContent):
// modulesContent into the desired properties of its module twins,
// deviceContent into its own. A module of the deployment that has no
// identity yet is left out: the edge runtime creates it.
func (h *Hub) ApplyConfigurationContent(ctx context.Context, id string, content twinhub.ConfigurationContent) error {
	rec, err := h.get(ctx, twinhub.DeviceKey(id))
	if err != nil {
		return err
	}
	if len(content.ModulesContent) == 0 && len(content.DeviceContent) == 0 {
		return twinhub.Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "the content holds neither modulesContent nor deviceContent")
	}
	if len(content.ModulesContent) > 0 && !rec.Device.Capabilities.IoTEdge {
		return twinhub.ErrInvalid("device '%s' is not an IoT Edge device: modulesContent is for edge devices", id)
	}
	patches := map[twinhub.Key]map[string]any{}
	for module, section := range content.ModulesContent {
		if err := twinhub.ValidateID("module", module); err != nil {
			return err
		}
		patch, err := twinhub.DesiredPatch(section)
		if err != nil {
			return err
		}
		patches[twinhub.ModuleKey(id, module)] = patch
	}
	if len(content.DeviceContent) > 0 {
		patch, err := twinhub.DesiredPatch(content.DeviceContent)
		if err != nil {
			return err
		}
		patches[twinhub.DeviceKey(id)] = patch
	}
	for k, patch := range patches {
		_, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: patch}, "*")
		var te *twinhub.Error
		if errors.As(err, &te) && te.Code == "ModuleNotFound" {
			continue
		} else if err != nil {
			return err
		}
	}
	return nil
}
