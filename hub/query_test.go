package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/recordtest"
	"github.com/twinhub/twinhub/jetstream"
	"github.com/twinhub/twinhub/query"
	"github.com/twinhub/twinhub/query/querytest"
	"github.com/twinhub/twinhub/sas"
)

// makeFleet registers the twins of the conformance fleets in the hub,
// through the hub's own operations, as far as they can be: what a back end
// and devices could make.
func makeFleet(t *testing.T, h *hub.Hub) {
	t.Helper()
	ctx := context.Background()
	obj := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	devices := map[string]bool{}
	for _, tw := range slices.Concat(querytest.DeviceTwins, querytest.ModuleTwins) {
		if !devices[tw.DeviceID] {
			devices[tw.DeviceID] = true
			status := tw.Status
			if tw.ModuleID != "" {
				status = twinhub.StatusEnabled
			}
			d := twinhub.Device{DeviceID: tw.DeviceID, Status: status, Capabilities: twinhub.Capabilities{IoTEdge: tw.IoTEdge}}
			if _, err := h.CreateDevice(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		k := twinhub.DeviceKey(tw.DeviceID)
		if tw.ModuleID != "" {
			k = twinhub.ModuleKey(tw.DeviceID, tw.ModuleID)
			if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: tw.DeviceID, ModuleID: tw.ModuleID}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Tags: obj(tw.Tags), Desired: obj(tw.Desired)}, "*"); err != nil {
			t.Fatal(err)
		}
		for v := 2; v < tw.DesiredVersion; v++ {
			if _, err := h.UpdateTwin(ctx, k, twinhub.TwinUpdate{Desired: obj(tw.Desired)}, "*"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.UpdateReported(ctx, k, obj(tw.Reported)); err != nil {
			t.Fatal(err)
		}
		if tw.ConnectionState == twinhub.StateConnected {
			if err := h.SetConnectionState(ctx, k, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The fleets hold only the modules they list: the system modules the
	// hub gave their edge devices go.
	listed := map[twinhub.Key]bool{}
	for _, tw := range querytest.ModuleTwins {
		listed[twinhub.ModuleKey(tw.DeviceID, tw.ModuleID)] = true
	}
	for id := range devices {
		mods, err := h.ListModules(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mods {
			if !listed[twinhub.ModuleKey(id, m.ModuleID)] {
				if err := h.DeleteModule(ctx, id, m.ModuleID, "*"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// allTwins reads every twin of a collection through GetTwin, in key order:
// the documents the query language is defined over.
func allTwins(t *testing.T, h *hub.Hub, modules bool) []map[string]any {
	t.Helper()
	ctx := context.Background()
	devs, err := h.ListDevices(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, d := range devs {
		keys := []twinhub.Key{twinhub.DeviceKey(d.DeviceID)}
		if modules {
			mods, err := h.ListModules(ctx, d.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			keys = keys[:0]
			for _, m := range mods {
				keys = append(keys, twinhub.ModuleKey(m.DeviceID, m.ModuleID))
			}
		}
		for _, k := range keys {
			doc := hubtest.Twin(t, h, k)
			out = append(out, doc)
		}
	}
	return out
}

// pagedQuery runs a query through Hub.Query page by page.
func pagedQuery(t *testing.T, h *hub.Hub, src string, size int) ([]map[string]any, string) {
	t.Helper()
	var all []map[string]any
	cont, itemType := "", ""
	for pages := 0; ; pages++ {
		page, err := h.Query(context.Background(), src, size, cont)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if len(page.Items) > size || pages > 1000 {
			t.Fatalf("%s: %d items in a page of %d, page %d", src, len(page.Items), size, pages)
		}
		all = append(all, page.Items...)
		itemType = page.ItemType
		if cont = page.Continuation; cont == "" {
			return all, itemType
		}
	}
}

// normalize is a result as a client decodes it.
func normalize(t *testing.T, rows []map[string]any) any {
	t.Helper()
	if rows == nil {
		rows = []map[string]any{}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQueryConformance runs every conformance case of package querytest
// through Hub.Query, on a hub with an embedded JetStream store holding the
// conformance fleets, in pages of 1,000 and of 2: the answers of the index
// must be what query.Execute answers over the twins as GET /twins shows
// them, in key order. Bad queries must be 400s.
func TestQueryConformance(t *testing.T) {
	h, _ := newTestHub(t)
	makeFleet(t, h)
	devices, modules := allTwins(t, h, false), allTwins(t, h, true)
	if len(devices) != 13 || len(modules) != len(querytest.ModuleTwins) {
		t.Fatalf("%d device twins and %d module twins", len(devices), len(modules))
	}
	for _, c := range querytest.Cases {
		q, err := query.Parse(c.Query)
		if err != nil {
			t.Fatal(err)
		}
		var docs []map[string]any
		switch q.Collection {
		case query.Devices:
			docs = devices
		case query.DevicesModules:
			docs = modules
		}
		want, err := q.Execute(slices.Values(docs))
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{1000, 2} {
			got, itemType := pagedQuery(t, h, c.Query, size)
			if itemType != q.ItemType() {
				t.Errorf("%s: item type %s, want %s", c.Query, itemType, q.ItemType())
			}
			if g, w := normalize(t, got), normalize(t, want); !reflect.DeepEqual(g, w) {
				gb, _ := json.Marshal(g)
				wb, _ := json.Marshal(w)
				t.Errorf("%s, pages of %d:\n got %.1500s\nwant %.1500s", c.Query, size, gb, wb)
			}
		}
	}
	// The REST API's pages (QueryJSON): json.Marshal's bytes of Query's
	// items, page by page, the continuation tokens alike.
	for _, c := range querytest.Cases {
		for _, size := range []int{1000, 3} {
			cont := ""
			for {
				page, err := h.Query(context.Background(), c.Query, size, cont)
				if err != nil {
					t.Fatal(err)
				}
				want, err := json.Marshal(page.Items)
				if err != nil {
					t.Fatal(err)
				}
				jpage, got, err := h.QueryJSON(context.Background(), c.Query, size, cont)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) || jpage.Continuation != page.Continuation || jpage.ItemType != page.ItemType || jpage.Items != nil {
					t.Errorf("%s: QueryJSON gives %.300q (next %q), json.Marshal of Query's items %.300q (next %q)", c.Query, got, jpage.Continuation, want, page.Continuation)
					break
				}
				if cont = page.Continuation; cont == "" {
					break
				}
			}
		}
	}
	for _, c := range querytest.ParseErrors {
		_, err := h.Query(context.Background(), c.Query, 100, "")
		if statusOf(err) != 400 || !strings.Contains(err.Error(), c.Msg) {
			t.Errorf("%.60q: %v, want a 400 saying %q", c.Query, err, c.Msg)
		}
	}
}

// TestQueryPagingUnderChanges pages through twins while others are
// updated, deleted and created between pages: every twin that exists and
// matches throughout comes back exactly once.
func TestQueryPagingUnderChanges(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	const n = 60
	for i := range n {
		id := fmt.Sprintf("dev%03d", i)
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"fleet": "a", "i": float64(i)}}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	for run, src := range []string{
		`SELECT * FROM devices WHERE tags.fleet = 'a'`,
		`SELECT deviceId, tags.i FROM devices WHERE tags.fleet = 'a'`,
		`SELECT TOP 45 * FROM devices WHERE tags.fleet = 'a'`,
	} {
		seen := map[string]int{}
		deleted := map[string]bool{}
		cont, page := "", 0
		for {
			p, err := h.Query(ctx, src, 7, cont)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				seen[it["deviceId"].(string)]++
			}
			if cont = p.Continuation; cont == "" {
				break
			}
			// Between pages: update twins on both sides of the page
			// boundary, delete one ahead, create one ahead and one behind.
			page++
			for _, i := range []int{page * 3 % n, (page*7 + 30) % n, n - 1 - page} {
				id := fmt.Sprintf("dev%03d", i)
				if deleted[id] {
					continue
				}
				u := twinhub.TwinUpdate{Tags: map[string]any{"v": float64(page)}}
				if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), u, "*"); err != nil {
					t.Fatal(err)
				}
			}
			gone := fmt.Sprintf("dev%03d", (page*11+20)%n)
			if !deleted[gone] {
				if err := h.DeleteDevice(ctx, gone, "*"); err != nil {
					t.Fatal(err)
				}
				deleted[gone] = true
			}
			for _, id := range []string{fmt.Sprintf("dev%03d.new%d-%d", 59-page, run, page), fmt.Sprintf("a-new%d-%d", run, page)} {
				if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
					t.Fatal(err)
				}
				if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"fleet": "a"}}, "*"); err != nil {
					t.Fatal(err)
				}
			}
		}
		total := 0
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%s: %s came back %d times", src, id, c)
			}
			total += c
		}
		if strings.Contains(src, "TOP 45") {
			if total != 45 {
				t.Errorf("%s: %d twins, want 45", src, total)
			}
		} else {
			for i := range n {
				id := fmt.Sprintf("dev%03d", i)
				if !deleted[id] && seen[id] != 1 {
					t.Errorf("%s: %s, which existed throughout, came back %d times", src, id, seen[id])
				}
			}
		}
		// Put the fleet back for the next query.
		for id := range deleted {
			if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"fleet": "a"}}, "*"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestQueryContinuationOfAnotherQuery: a token works only for its query.
func TestQueryContinuationOfAnotherQuery(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t)
	for i := range 5 {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: fmt.Sprintf("d%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := h.Query(ctx, "SELECT * FROM devices", 2, "")
	if err != nil || p.Continuation == "" {
		t.Fatalf("%v, %+v", err, p)
	}
	if _, err := h.Query(ctx, "SELECT deviceId FROM devices", 2, p.Continuation); statusOf(err) != 400 {
		t.Errorf("a token of another query: %v, want a 400", err)
	}
	g, err := h.Query(ctx, "SELECT deviceId, COUNT() AS n FROM devices GROUP BY deviceId", 2, "")
	if err != nil || g.Continuation == "" {
		t.Fatalf("%v, %+v", err, g)
	}
	seen := len(g.Items)
	for cont := g.Continuation; cont != ""; {
		g, err = h.Query(ctx, "SELECT deviceId, COUNT() AS n FROM devices GROUP BY deviceId", 2, cont)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(g.Items)
		cont = g.Continuation
	}
	if seen != 5 {
		t.Errorf("%d groups over the pages, want 5", seen)
	}
}

// TestReplay starts a hub on a store that already holds twins, some of
// them updated or deleted since they were made: the index the watch's
// replay builds (in parallel) must answer as the twins read one by one do.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	store, err := jetstream.OpenStore(ctx, e.Conn, jetstream.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(n) {
		rec := recordtest.BenchRecord(r, i, n)
		if _, err := store.Create(ctx, rec.Key(), rec); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			m := &twinhub.Record{Module: &twinhub.Module{DeviceID: rec.Device.DeviceID, ModuleID: "m"}, IdentityVersion: 1, Twin: rec.Twin}
			if _, err := store.Create(ctx, twinhub.ModuleKey(rec.Device.DeviceID, "m"), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range n / 5 {
		k := twinhub.DeviceKey(fmt.Sprintf("dev-%07d", i*5))
		if i%3 == 0 {
			if err := store.Delete(ctx, k, 0); err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 { // its module too, as the hub does
				if err := store.Delete(ctx, twinhub.ModuleKey(k.DeviceID, "m"), 0); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		rec, rev, err := store.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		rec.Twin.Tags["plant"] = "moved"
		if _, err := store.Update(ctx, k, rec, rev); err != nil {
			t.Fatal(err)
		}
	}
	policies, _ := sas.DefaultPolicies()
	h, err := hub.New(ctx, hub.Config{Host: testHost, Policies: policies, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	devices, modules := allTwins(t, h, false), allTwins(t, h, true)
	if len(devices) != n-n/15 || len(modules) != n/10-n/30 {
		t.Fatalf("%d device twins and %d module twins", len(devices), len(modules))
	}
	for _, src := range []string{
		`SELECT * FROM devices WHERE tags.plant = 'moved'`,
		`SELECT * FROM devices WHERE tags.plant = 'plant-00007'`,
		`SELECT deviceId, properties.reported.battery FROM devices WHERE properties.reported.temperature > 90`,
		`SELECT tags.region AS r, COUNT() AS n, AVG(properties.reported.humidity) AS h FROM devices GROUP BY tags.region`,
		`SELECT * FROM devices.modules WHERE tags.model = 'TH-100'`,
		`SELECT COUNT() AS n FROM devices.modules`,
	} {
		q, err := query.Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		docs := devices
		if q.Collection == query.DevicesModules {
			docs = modules
		}
		want, _ := q.Execute(slices.Values(docs))
		got, _ := pagedQuery(t, h, src, 50)
		if g, w := normalize(t, got), normalize(t, want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %d items, want %d", src, len(got), len(want))
		}
	}
}

// TestSoleWriterReadsItsWrites: a hub that is its store's only writer
// waits for its own last write rather than asking the store, and its
// queries still see every write acknowledged before them: creations,
// twin updates, module creations and deletions (whose revision the store
// does not return), each queried at once, from many goroutines.
func TestSoleWriterReadsItsWrites(t *testing.T) {
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.SoleWriter = true })).Hub
	ctx := context.Background()
	count := func(sql string) int {
		t.Helper()
		page, err := h.Query(ctx, sql, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		return int(page.Items[0]["n"].(float64))
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			errs <- func() error {
				for i := range 25 {
					id := fmt.Sprintf("w%d-%d", w, i)
					if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
						return err
					}
					if n := count(fmt.Sprintf("SELECT COUNT() AS n FROM devices WHERE deviceId = '%s'", id)); n != 1 {
						return fmt.Errorf("%s: created, queried %d", id, n)
					}
					if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"i": float64(i)}}, ""); err != nil {
						return err
					}
					if n := count(fmt.Sprintf("SELECT COUNT() AS n FROM devices WHERE deviceId = '%s' AND tags.i = %d", id, i)); n != 1 {
						return fmt.Errorf("%s: tagged, queried %d", id, n)
					}
					if _, err := h.CreateModule(ctx, twinhub.Module{DeviceID: id, ModuleID: "m"}); err != nil {
						return err
					}
					if n := count(fmt.Sprintf("SELECT COUNT() AS n FROM devices.modules WHERE deviceId = '%s'", id)); n != 1 {
						return fmt.Errorf("%s: module created, queried %d", id, n)
					}
					if err := h.DeleteDevice(ctx, id, ""); err != nil {
						return err
					}
					if n := count(fmt.Sprintf("SELECT COUNT() AS n FROM devices WHERE deviceId = '%s'", id)); n != 0 {
						return fmt.Errorf("%s: deleted, queried %d", id, n)
					}
				}
				return nil
			}()
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestSoleWriterTwinReadsAreCurrent: a hub that is its store's only
// writer answers twin and device reads from its cache when its index
// knows the cached revision is current; every read still sees every
// write acknowledged before it: a creation, a twin update, a deletion
// (404), the same id created again (a new twin), from many goroutines at
// once, each read at once after its write.
func TestSoleWriterTwinReadsAreCurrent(t *testing.T) {
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.SoleWriter = true })).Hub
	ctx := context.Background()
	twin := func(id string) (map[string]any, error) {
		data, err := h.TwinJSON(ctx, twinhub.DeviceKey(id))
		if err != nil {
			return nil, err
		}
		var doc map[string]any
		return doc, json.Unmarshal(data, &doc)
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			errs <- func() error {
				for i := range 25 {
					id := fmt.Sprintf("r%d-%d", w, i%5) // ids come back: created again after a deletion
					if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
						return err
					}
					doc, err := twin(id)
					if err != nil {
						return fmt.Errorf("%s: created, read: %v", id, err)
					}
					if tags, _ := doc["tags"].(map[string]any); tags["i"] != nil {
						return fmt.Errorf("%s: created again, reads the old twin's tags %v", id, tags)
					}
					for v := range 3 {
						if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"i": float64(i*10 + v)}}, ""); err != nil {
							return err
						}
						doc, err := twin(id)
						if err != nil {
							return err
						}
						if got := doc["tags"].(map[string]any)["i"]; got != float64(i*10+v) {
							return fmt.Errorf("%s: tagged %d, reads %v", id, i*10+v, got)
						}
					}
					if err := h.DeleteDevice(ctx, id, ""); err != nil {
						return err
					}
					var te *twinhub.Error
					if _, err := twin(id); !errors.As(err, &te) || te.Status != 404 {
						return fmt.Errorf("%s: deleted, read: %v", id, err)
					}
					if _, err := h.GetDevice(ctx, id); !errors.As(err, &te) || te.Status != 404 {
						return fmt.Errorf("%s: deleted, device read: %v", id, err)
					}
				}
				return nil
			}()
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkItemsJSON: a page of 100 whole twins for the REST API, written
// by QueryJSON straight from the index, and as before QueryJSON, by
// Query's maps encoded item by item.
func BenchmarkItemsJSON(b *testing.B) {
	h, _ := newTestHub(b)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 100 {
		id := fmt.Sprintf("d%03d", i)
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
			b.Fatal(err)
		}
		u := twinhub.TwinUpdate{Tags: recordtest.RandomObject(r, 3), Desired: recordtest.RandomObject(r, 3)}
		if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), u, ""); err != nil {
			b.Fatal(err)
		}
	}
	const src = "SELECT * FROM devices"
	b.Run("QueryJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := h.QueryJSON(ctx, src, 100, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("QueryJSON-by-id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := h.QueryJSON(ctx, "SELECT * FROM devices WHERE deviceId = 'd042'", 100, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Query+AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			page, err := h.Query(ctx, src, 100, "")
			if err != nil {
				b.Fatal(err)
			}
			out := []byte{'['}
			for _, item := range page.Items {
				if len(out) > 1 {
					out = append(out, ',')
				}
				out, _ = recordjson.AppendJSON(out, item)
			}
		}
	})
}

// BenchmarkTwinJSON: a REST twin read on an embedded JetStream, 1,000
// twins read at random from parallel goroutines, for a hub that asks the
// store for each twin's revision and for one that is its store's only
// writer and asks its index.
func BenchmarkTwinJSON(b *testing.B) {
	for _, sole := range []bool{false, true} {
		b.Run(fmt.Sprintf("soleWriter=%v", sole), func(b *testing.B) {
			h := hubtest.New(b, hubtest.WithConfig(func(c *hub.Config) { c.SoleWriter = sole })).Hub
			ctx := context.Background()
			const twins = 1000
			for i := range twins {
				id := fmt.Sprintf("d%04d", i)
				if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: id}); err != nil {
					b.Fatal(err)
				}
				if _, err := h.UpdateTwin(ctx, twinhub.DeviceKey(id), twinhub.TwinUpdate{Tags: map[string]any{"i": float64(i)}}, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					if _, err := h.TwinJSON(ctx, twinhub.DeviceKey(fmt.Sprintf("d%04d", r.IntN(twins)))); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
