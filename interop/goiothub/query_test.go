package goiothub

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/amenzhinsky/iothub/iotservice"
)

// query collects every result of QueryDevices (which follows
// x-ms-continuation from page to page). It copies each item: iotservice
// v0.9.1 decodes every page into the same slice, and encoding/json reuses
// the maps already in it, so a map kept from page 1 is overwritten by
// page 2 (nested values are fresh, so one level of copying is enough).
func query(t *testing.T, svc *iotservice.Client, q string) ([]map[string]any, error) {
	t.Helper()
	var out []map[string]any
	err := svc.QueryDevices(testContext(t), q, func(v map[string]any) error {
		out = append(out, maps.Clone(v))
		return nil
	})
	return out, err
}

// TestQuery runs the IoT Hub query language through QueryDevices: the
// tutorial's tag query returning whole twins, a projection over 250
// devices that spans several pages of the default page size of 100 (each
// device must come back exactly once), an aggregate, and syntax errors.
func TestQuery(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.24")
	svc := h.Service(t)
	ctx := testContext(t)

	const fleet = 250
	ids := make([]string, fleet)
	for i := range ids {
		ids[i] = fmt.Sprintf("q-%03d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, fleet)
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id}); err != nil {
					errs <- fmt.Errorf("CreateDevice(%s): %w", id, err)
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Two devices in the tutorial's plant, one elsewhere.
	plants := map[string]string{"q-007": "Redmond43", "q-100": "Redmond43", "q-200": "Dublin1"}
	for id, plant := range plants {
		if _, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID:   id,
			Tags:       map[string]any{"location": map[string]any{"region": "US", "plant": plant}},
			Properties: &iotservice.Properties{Desired: tutorialDesired()},
		}); err != nil {
			t.Fatalf("UpdateDeviceTwin(%s): %v", id, err)
		}
	}

	t.Run("TagFilter", func(t *testing.T) {
		items, err := query(t, svc, "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'")
		if err != nil {
			t.Fatalf("QueryDevices: %v", err)
		}
		var got []string
		for _, it := range items {
			id, _ := it["deviceId"].(string)
			got = append(got, id)
			// Whole twins, as GET /twins/{id} shows them.
			if at(it, "tags", "location", "plant") != "Redmond43" {
				t.Errorf("%s: tags = %v", id, it["tags"])
			}
			if at(it, "properties", "desired", "power_level") != 1.0 || at(it, "properties", "desired", "$version") != 2.0 {
				t.Errorf("%s: desired = %v, want power_level 1 and $version 2", id, at(it, "properties", "desired"))
			}
			if at(it, "properties", "reported", "$version") != 1.0 {
				t.Errorf("%s: reported = %v", id, at(it, "properties", "reported"))
			}
			if it["etag"] == nil || it["version"] != 2.0 || it["status"] != "enabled" {
				t.Errorf("%s: etag %v version %v status %v, want a twin's etag, version 2, enabled", id, it["etag"], it["version"], it["status"])
			}
		}
		sort.Strings(got)
		if want := []string{"q-007", "q-100"}; !slices.Equal(got, want) {
			t.Errorf("devices in Redmond43 = %v, want %v", got, want)
		}
	})

	t.Run("ProjectionOverPages", func(t *testing.T) {
		// Upstream's TestQueryDevices query. The SDK asks for no page
		// size, so the hub's default of 100 makes this three pages.
		items, err := query(t, svc, "select deviceId from devices")
		if err != nil {
			t.Fatalf("QueryDevices: %v", err)
		}
		seen := map[string]int{}
		for _, it := range items {
			if len(it) != 1 {
				t.Errorf("projection item %v has fields other than deviceId", it)
			}
			id, _ := it["deviceId"].(string)
			seen[id]++
		}
		if len(items) != fleet {
			t.Errorf("%d results, want %d", len(items), fleet)
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("%s returned %d times, want once", id, seen[id])
			}
		}
		if len(seen) != fleet {
			t.Errorf("%d distinct ids, want %d", len(seen), fleet)
		}
	})

	t.Run("Count", func(t *testing.T) {
		items, err := query(t, svc, "SELECT COUNT() AS numberOfDevices FROM devices WHERE tags.location.region = 'US'")
		if err != nil {
			t.Fatalf("QueryDevices: %v", err)
		}
		if len(items) != 1 || items[0]["numberOfDevices"] != 3.0 {
			t.Errorf("count = %v, want [{numberOfDevices: 3}]", items)
		}
	})

	t.Run("SyntaxError", func(t *testing.T) {
		for _, q := range []string{
			"SELECT * FROM devices WHERE",
			"SELECT * FORM devices",
			"SELECT * FROM devices WHERE tags.location.plant = 'Redmond43",
		} {
			items, err := query(t, svc, q)
			if err == nil {
				t.Errorf("QueryDevices(%q) = %d results and no error, want an error", q, len(items))
				continue
			}
			wantStatus(t, fmt.Sprintf("QueryDevices(%q)", q), err, http.StatusBadRequest)
		}
	})
}
