package goiothub

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
)

// at walks a decoded JSON document along keys; nil when a step is missing.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// lastUpdated reads a "$lastUpdated" string and checks IoT Hub's form:
// UTC with a trailing Z.
func lastUpdated(t *testing.T, what string, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s: $lastUpdated = %#v, want a string", what, v)
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || s[len(s)-1] != 'Z' {
		t.Errorf("%s: $lastUpdated %q is not an RFC 3339 UTC time ending in Z (%v)", what, s, err)
	}
	return ts
}

// checkNewTwin checks the twin of a freshly registered device or module:
// version 1, desired and reported $version 1 with $metadata.$lastUpdated.
func checkNewTwin(t *testing.T, what string, version int, etag string, props *iotservice.Properties, created time.Time) {
	t.Helper()
	if version != 1 {
		t.Errorf("%s: version = %d, want 1", what, version)
	}
	if etag == "" {
		t.Errorf("%s: no etag", what)
	}
	if props == nil {
		t.Fatalf("%s: no properties", what)
	}
	for name, section := range map[string]map[string]any{"desired": props.Desired, "reported": props.Reported} {
		if v := section["$version"]; v != 1.0 {
			t.Errorf("%s: %s $version = %#v, want 1", what, name, v)
		}
		ts := lastUpdated(t, what+" "+name, at(section, "$metadata", "$lastUpdated"))
		if ts.Before(created.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
			t.Errorf("%s: %s $metadata.$lastUpdated %v is not around the creation time %v", what, name, ts, created)
		}
		if len(section) != 2 {
			t.Errorf("%s: %s = %v, want only $version and $metadata", what, name, section)
		}
	}
}

// tutorialTags and tutorialDesired are the patch of Azure's "get started
// with device twins" tutorial.
func tutorialTags() map[string]any {
	return map[string]any{"location": map[string]any{"region": "US", "plant": "Redmond43"}}
}

func tutorialDesired() map[string]any { return map[string]any{"power_level": 1} }

// TestDeviceTwin reads and changes a device twin through GetDeviceTwin and
// UpdateDeviceTwin: a new twin's versions and metadata, the tutorial's
// tags and desired properties, sending back a twin just read (with its
// $metadata, $version, reported properties and etag), removals with null,
// stale etags, invalid patches and missing devices.
func TestDeviceTwin(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.23")
	svc := h.Service(t)
	ctx := testContext(t)
	createdAt := time.Now()
	h.NewDevice(t, svc, "twin-1")

	fresh, err := svc.GetDeviceTwin(ctx, "twin-1")
	if err != nil {
		t.Fatalf("GetDeviceTwin: %v", err)
	}
	t.Run("NewTwin", func(t *testing.T) {
		if fresh.DeviceID != "twin-1" {
			t.Errorf("deviceId = %q", fresh.DeviceID)
		}
		checkNewTwin(t, "new device twin", fresh.Version, fresh.ETag, fresh.Properties, createdAt)
		if fresh.Status != iotservice.Enabled || fresh.ConnectionState != iotservice.Disconnected {
			t.Errorf("status %q connectionState %q, want enabled and Disconnected", fresh.Status, fresh.ConnectionState)
		}
		if fresh.AuthenticationType != "sas" {
			t.Errorf("authenticationType = %q, want sas", fresh.AuthenticationType)
		}
		if len(fresh.Tags) != 0 {
			t.Errorf("tags = %v, want none", fresh.Tags)
		}
	})

	var patched *iotservice.Twin
	t.Run("TutorialPatch", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		patched, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID:   "twin-1",
			ETag:       fresh.ETag,
			Tags:       tutorialTags(),
			Properties: &iotservice.Properties{Desired: tutorialDesired()},
		})
		if err != nil {
			t.Fatalf("UpdateDeviceTwin: %v", err)
		}
		if got := at(patched.Tags, "location", "region"); got != "US" {
			t.Errorf("tags.location.region = %#v, want US", got)
		}
		if got := at(patched.Tags, "location", "plant"); got != "Redmond43" {
			t.Errorf("tags.location.plant = %#v, want Redmond43", got)
		}
		d := patched.Properties.Desired
		if d["power_level"] != 1.0 {
			t.Errorf("desired.power_level = %#v, want 1", d["power_level"])
		}
		if d["$version"] != 2.0 {
			t.Errorf("desired.$version = %#v, want 2 (one more than %v)", d["$version"], fresh.Properties.Desired["$version"])
		}
		if patched.Properties.Reported["$version"] != 1.0 {
			t.Errorf("reported.$version = %#v, want 1 (unchanged)", patched.Properties.Reported["$version"])
		}
		if patched.Version != fresh.Version+1 {
			t.Errorf("version = %d, want %d", patched.Version, fresh.Version+1)
		}
		if patched.ETag == "" || patched.ETag == fresh.ETag {
			t.Errorf("etag %q after update, want a new one (was %q)", patched.ETag, fresh.ETag)
		}
		if v := at(d, "$metadata", "$lastUpdatedVersion"); v != 2.0 {
			t.Errorf("desired.$metadata.$lastUpdatedVersion = %#v, want 2", v)
		}
		if v := at(d, "$metadata", "power_level", "$lastUpdatedVersion"); v != 2.0 {
			t.Errorf("desired.$metadata.power_level.$lastUpdatedVersion = %#v, want 2", v)
		}
		if ts := lastUpdated(t, "desired.$metadata.power_level", at(d, "$metadata", "power_level", "$lastUpdated")); ts.Before(before) {
			t.Errorf("desired.$metadata.power_level.$lastUpdated %v is before the update (%v)", ts, before)
		}

		got, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != patched.ETag || got.Version != patched.Version {
			t.Errorf("GetDeviceTwin after update: etag %q version %d, want %q and %d", got.ETag, got.Version, patched.ETag, patched.Version)
		}
		if !reflect.DeepEqual(got.Tags, patched.Tags) || !reflect.DeepEqual(got.Properties, patched.Properties) {
			t.Errorf("GetDeviceTwin after update differs from the update's reply:\n got %v %v\nwant %v %v", got.Tags, got.Properties, patched.Tags, patched.Properties)
		}
	})
	if patched == nil {
		t.FailNow()
	}

	t.Run("SendBackReadTwin", func(t *testing.T) {
		read, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		// What an application does: change a value in the twin it read
		// and send all of it back, $metadata, $version, reported and etag
		// included.
		read.Properties.Desired["power_level"] = 2
		updated, err := svc.UpdateDeviceTwin(ctx, read)
		if err != nil {
			t.Fatalf("UpdateDeviceTwin with a twin read by GetDeviceTwin: %v", err)
		}
		if updated.Properties.Desired["power_level"] != 2.0 || updated.Properties.Desired["$version"] != 3.0 {
			t.Errorf("desired = %v, want power_level 2 and $version 3", updated.Properties.Desired)
		}
		if updated.Properties.Reported["$version"] != 1.0 {
			t.Errorf("reported.$version = %v, want 1: a back end cannot change reported properties", updated.Properties.Reported["$version"])
		}
		if !reflect.DeepEqual(updated.Tags, tutorialTagsDecoded()) {
			t.Errorf("tags = %v, want the tutorial's unchanged", updated.Tags)
		}
		if updated.ETag == read.ETag {
			t.Errorf("etag unchanged by the update")
		}
	})

	t.Run("StaleETag", func(t *testing.T) {
		current, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID:   "twin-1",
			ETag:       patched.ETag, // stale since SendBackReadTwin
			Properties: &iotservice.Properties{Desired: map[string]any{"power_level": 9}},
		})
		wantStatus(t, "UpdateDeviceTwin with a stale etag", err, http.StatusPreconditionFailed)
		after, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.ETag != current.ETag || after.Properties.Desired["power_level"] != current.Properties.Desired["power_level"] {
			t.Errorf("a refused update changed the twin: etag %q -> %q, power_level %v -> %v",
				current.ETag, after.ETag, current.Properties.Desired["power_level"], after.Properties.Desired["power_level"])
		}
	})

	t.Run("NullRemoves", func(t *testing.T) {
		before, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		// No etag: the SDK sends If-Match: *.
		updated, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID:   "twin-1",
			Tags:       map[string]any{"location": map[string]any{"region": nil}},
			Properties: &iotservice.Properties{Desired: map[string]any{"power_level": nil, "mode": "eco"}},
		})
		if err != nil {
			t.Fatalf("UpdateDeviceTwin with nulls: %v", err)
		}
		if _, ok := updated.Properties.Desired["power_level"]; ok {
			t.Errorf("desired.power_level still present after null: %v", updated.Properties.Desired)
		}
		meta, _ := at(updated.Properties.Desired, "$metadata").(map[string]any)
		if _, ok := meta["power_level"]; ok {
			t.Errorf("desired.$metadata still describes the removed power_level")
		}
		if updated.Properties.Desired["mode"] != "eco" {
			t.Errorf("desired.mode = %v, want eco", updated.Properties.Desired["mode"])
		}
		if want := before.Properties.Desired["$version"].(float64) + 1; updated.Properties.Desired["$version"] != want {
			t.Errorf("desired.$version = %v, want %v", updated.Properties.Desired["$version"], want)
		}
		want := map[string]any{"location": map[string]any{"plant": "Redmond43"}}
		if !reflect.DeepEqual(updated.Tags, want) {
			t.Errorf("tags = %v, want %v", updated.Tags, want)
		}
	})

	t.Run("InvalidPatch", func(t *testing.T) {
		before, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		for name, desired := range map[string]map[string]any{
			"dot in a key":    {"a.b": 1},
			"dollar in a key": {"a$b": 1},
			"space in a key":  {"a b": 1},
		} {
			_, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
				DeviceID:   "twin-1",
				Properties: &iotservice.Properties{Desired: desired},
			})
			wantStatus(t, "UpdateDeviceTwin with a "+name, err, http.StatusBadRequest)
		}
		after, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.ETag != before.ETag {
			t.Errorf("refused patches changed the twin (etag %q -> %q)", before.ETag, after.ETag)
		}
	})

	t.Run("ConcurrentETag", func(t *testing.T) {
		// Ten writers race with the same etag: optimistic concurrency lets
		// exactly one win; the others get 412 and change nothing.
		base, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		const writers = 10
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
					DeviceID:   "twin-1",
					ETag:       base.ETag,
					Properties: &iotservice.Properties{Desired: map[string]any{"winner": i}},
				})
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("writers %d and %d both succeeded with etag %q", winner, i, base.ETag)
			case err == nil:
				winner = i
			default:
				wantStatus(t, fmt.Sprintf("writer %d", i), err, http.StatusPreconditionFailed)
			}
		}
		if winner < 0 {
			t.Fatalf("no writer succeeded")
		}
		after, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.Properties.Desired["winner"] != float64(winner) || after.Version != base.Version+1 ||
			after.Properties.Desired["$version"] != base.Properties.Desired["$version"].(float64)+1 {
			t.Errorf("after the race: winner %v version %d desired $version %v, want %d, %d, %v+1",
				after.Properties.Desired["winner"], after.Version, after.Properties.Desired["$version"], winner, base.Version+1, base.Properties.Desired["$version"])
		}
	})

	t.Run("SizeLimits", func(t *testing.T) {
		before, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		// A string value may be 4 KB long, not longer: 400 ArgumentInvalid.
		ok, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID: "twin-1", Properties: &iotservice.Properties{Desired: map[string]any{"long": strings.Repeat("v", 4096)}},
		})
		if err != nil {
			t.Fatalf("a 4096-byte desired value: %v", err)
		}
		_, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
			DeviceID: "twin-1", Properties: &iotservice.Properties{Desired: map[string]any{"long": strings.Repeat("v", 4097)}},
		})
		wantStatus(t, "UpdateDeviceTwin with a 4097-byte value", err, http.StatusBadRequest)

		// The desired section may hold 32 KB. Azure refuses more with 403
		// ErrorCode:DeviceModelMaxPropertiesExceeded (403100 in
		// iot-hub-troubleshoot-error-codes.md; seen on the wire as
		// "Forbidden: ErrorCode:DeviceModelMaxPropertiesExceeded;'Properties.Desired'
		// size should be less than ..." in Azure/iotedge#1694).
		big := map[string]any{}
		for i := range 9 {
			big[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 4000)
		}
		_, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: "twin-1", Properties: &iotservice.Properties{Desired: big}})
		wantStatus(t, "UpdateDeviceTwin making desired larger than 32 KB", err, http.StatusForbidden)
		if re, isRE := err.(*iotservice.RequestError); !isRE || !strings.Contains(string(re.Body), "DeviceModelMaxPropertiesExceeded") {
			t.Errorf("oversized desired: error %v does not carry ErrorCode:DeviceModelMaxPropertiesExceeded", err)
		}
		// Tags may hold 8 KB; more is refused and nothing is written.
		bigTags := map[string]any{}
		for i := range 3 {
			bigTags[fmt.Sprintf("t%d", i)] = strings.Repeat("y", 3000)
		}
		_, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: "twin-1", Tags: bigTags})
		if err == nil {
			t.Errorf("UpdateDeviceTwin making tags larger than 8 KB: no error")
		}
		after, err := svc.GetDeviceTwin(ctx, "twin-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.ETag != ok.ETag || after.Version != before.Version+1 {
			t.Errorf("refused oversized updates changed the twin: etag %q (want %q), version %d (want %d)", after.ETag, ok.ETag, after.Version, before.Version+1)
		}
	})

	t.Run("MissingDevice", func(t *testing.T) {
		_, err := svc.GetDeviceTwin(ctx, "twin-none")
		wantStatus(t, "GetDeviceTwin of a missing device", err, http.StatusNotFound)
		_, err = svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: "twin-none", Tags: map[string]any{"a": 1}})
		wantStatus(t, "UpdateDeviceTwin of a missing device", err, http.StatusNotFound)
	})
}

// tutorialTagsDecoded is tutorialTags as it comes back from JSON.
func tutorialTagsDecoded() map[string]any {
	return map[string]any{"location": map[string]any{"region": "US", "plant": "Redmond43"}}
}

// TestTwinSurvivesRestart writes identities and twins, restarts the hub
// (SIGTERM, then serve again on the same data folder) and reads back the
// same devices, modules, twins and query results; etags read before the
// restart still work after it.
func TestTwinSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.28")
	svc := h.Service(t)
	ctx := testContext(t)

	dev, _ := h.NewDevice(t, svc, "rs-1")
	h.NewDevice(t, svc, "rs-2")
	if _, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "rs-1", ModuleID: "rs-m"}); err != nil {
		t.Fatal(err)
	}
	twin, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
		DeviceID:   "rs-1",
		Tags:       tutorialTags(),
		Properties: &iotservice.Properties{Desired: tutorialDesired()},
	})
	if err != nil {
		t.Fatal(err)
	}
	mtwin, err := svc.UpdateModuleTwin(ctx, &iotservice.ModuleTwin{
		DeviceID: "rs-1", ModuleID: "rs-m",
		Properties: &iotservice.Properties{Desired: map[string]any{"interval": 30}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mod, err := svc.GetModule(ctx, "rs-1", "rs-m")
	if err != nil {
		t.Fatal(err)
	}

	h.Restart(t)
	svc = h.Service(t)

	gotDev, err := svc.GetDevice(ctx, "rs-1")
	if err != nil {
		t.Fatalf("GetDevice after restart: %v", err)
	}
	if gotDev.ETag != dev.ETag || gotDev.GenerationID != dev.GenerationID || keysOf(gotDev.Authentication) != keysOf(dev.Authentication) {
		t.Errorf("device after restart differs: etag %q/%q generation %q/%q", gotDev.ETag, dev.ETag, gotDev.GenerationID, dev.GenerationID)
	}
	gotTwin, err := svc.GetDeviceTwin(ctx, "rs-1")
	if err != nil {
		t.Fatalf("GetDeviceTwin after restart: %v", err)
	}
	if gotTwin.ETag != twin.ETag || gotTwin.Version != twin.Version ||
		!reflect.DeepEqual(gotTwin.Tags, twin.Tags) || !reflect.DeepEqual(gotTwin.Properties, twin.Properties) {
		t.Errorf("twin after restart differs:\n got etag %q version %d %v %v\nwant etag %q version %d %v %v",
			gotTwin.ETag, gotTwin.Version, gotTwin.Tags, gotTwin.Properties, twin.ETag, twin.Version, twin.Tags, twin.Properties)
	}
	gotMod, err := svc.GetModule(ctx, "rs-1", "rs-m")
	if err != nil {
		t.Fatalf("GetModule after restart: %v", err)
	}
	if gotMod.ETag != mod.ETag || keysOf(gotMod.Authentication) != keysOf(mod.Authentication) {
		t.Errorf("module after restart differs")
	}
	gotMTwin, err := svc.GetModuleTwin(ctx, "rs-1", "rs-m")
	if err != nil {
		t.Fatalf("GetModuleTwin after restart: %v", err)
	}
	if gotMTwin.ETag != mtwin.ETag || !reflect.DeepEqual(gotMTwin.Properties, mtwin.Properties) {
		t.Errorf("module twin after restart differs: %v, want %v", gotMTwin.Properties, mtwin.Properties)
	}

	// The query index is rebuilt from the store.
	var found []string
	if err := svc.QueryDevices(ctx, "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'", func(v map[string]any) error {
		found = append(found, v["deviceId"].(string))
		return nil
	}); err != nil {
		t.Fatalf("QueryDevices after restart: %v", err)
	}
	if len(found) != 1 || found[0] != "rs-1" {
		t.Errorf("query after restart found %v, want [rs-1]", found)
	}
	ds, err := svc.DeviceStats(ctx)
	if err != nil || ds.TotalDeviceCount != 2 {
		t.Errorf("DeviceStats after restart: %+v, %v, want 2 devices", ds, err)
	}

	// An etag read before the restart is still current.
	again, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{
		DeviceID:   "rs-1",
		ETag:       twin.ETag,
		Properties: &iotservice.Properties{Desired: map[string]any{"power_level": 5}},
	})
	if err != nil {
		t.Fatalf("UpdateDeviceTwin with the etag from before the restart: %v", err)
	}
	if again.Properties.Desired["$version"] != 3.0 || again.Version != twin.Version+1 {
		t.Errorf("after restart update: desired $version %v version %d, want 3 and %d", again.Properties.Desired["$version"], again.Version, twin.Version+1)
	}
}
