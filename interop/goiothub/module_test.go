package goiothub

import (
	"encoding/base64"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
)

func moduleIDs(mods []*iotservice.Module) []string {
	ids := make([]string, 0, len(mods))
	for _, m := range mods {
		ids = append(ids, m.ModuleID)
	}
	sort.Strings(ids)
	return ids
}

// TestModules drives module identities and module twins: CreateModule
// (generated keys, connection string), GetModule, ListModules,
// UpdateModule with current and stale etags, GetModuleTwin,
// UpdateModuleTwin, DeleteModule, and the removal of a device's modules
// with the device.
func TestModules(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.25")
	svc := h.Service(t)
	ctx := testContext(t)
	createdAt := time.Now()
	h.NewDevice(t, svc, "mod-dev")

	created, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "mod-dev", ModuleID: "m1"})
	if err != nil {
		t.Fatalf("CreateModule: %v", err)
	}
	t.Run("CreateModule", func(t *testing.T) {
		if created.DeviceID != "mod-dev" || created.ModuleID != "m1" {
			t.Errorf("ids = %q/%q", created.DeviceID, created.ModuleID)
		}
		checkGeneratedKeys(t, "CreateModule", created.Authentication)
		if created.ETag == "" || created.GenerationID == "" {
			t.Errorf("etag %q generationId %q, want both", created.ETag, created.GenerationID)
		}
		if created.ConnectionState != iotservice.Disconnected {
			t.Errorf("connectionState = %q", created.ConnectionState)
		}
		cs, err := svc.ModuleConnectionString(created, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := "HostName=" + h.Addr + ";DeviceId=mod-dev;ModuleId=m1;SharedAccessKey=" + keysOf(created.Authentication).PrimaryKey; cs != want {
			t.Errorf("ModuleConnectionString = %q, want %q", cs, want)
		}
		device, err := svc.GetDevice(ctx, "mod-dev")
		if err != nil {
			t.Fatal(err)
		}
		if keysOf(device.Authentication) == keysOf(created.Authentication) {
			t.Errorf("the module got its device's keys")
		}

		_, err = svc.CreateModule(ctx, &iotservice.Module{DeviceID: "mod-dev", ModuleID: "m1"})
		wantStatus(t, "CreateModule of an existing module", err, http.StatusConflict)
		_, err = svc.CreateModule(ctx, &iotservice.Module{DeviceID: "mod-none", ModuleID: "m1"})
		wantStatus(t, "CreateModule on a missing device", err, http.StatusNotFound)
	})

	t.Run("GetModule", func(t *testing.T) {
		got, err := svc.GetModule(ctx, "mod-dev", "m1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != created.ETag || got.GenerationID != created.GenerationID || keysOf(got.Authentication) != keysOf(created.Authentication) {
			t.Errorf("GetModule = %+v, want what CreateModule returned", got)
		}
		_, err = svc.GetModule(ctx, "mod-dev", "m-none")
		wantStatus(t, "GetModule of a missing module", err, http.StatusNotFound)
	})

	t.Run("ListModules", func(t *testing.T) {
		if _, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "mod-dev", ModuleID: "m2"}); err != nil {
			t.Fatal(err)
		}
		h.NewDevice(t, svc, "mod-other")
		if _, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "mod-other", ModuleID: "m9"}); err != nil {
			t.Fatal(err)
		}
		mods, err := svc.ListModules(ctx, "mod-dev")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := moduleIDs(mods), []string{"m1", "m2"}; !slices.Equal(got, want) {
			t.Errorf("ListModules(mod-dev) = %v, want %v", got, want)
		}
		for _, m := range mods {
			if m.DeviceID != "mod-dev" || m.ETag == "" || keysOf(m.Authentication).PrimaryKey == "" {
				t.Errorf("listed module %+v lacks deviceId, etag or keys", m)
			}
		}
		// Modules are not devices.
		devices, err := svc.ListDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := deviceIDs(devices), []string{"mod-dev", "mod-other"}; !slices.Equal(got, want) {
			t.Errorf("ListDevices = %v, want %v", got, want)
		}
	})

	t.Run("UpdateModule", func(t *testing.T) {
		before, err := svc.GetModule(ctx, "mod-dev", "m1")
		if err != nil {
			t.Fatal(err)
		}
		keys := iotservice.SymmetricKey{
			PrimaryKey:   base64.StdEncoding.EncodeToString([]byte("module-primary-key-of-32-bytes!!")),
			SecondaryKey: base64.StdEncoding.EncodeToString([]byte("module-secondary-key-32-bytes!!!")),
		}
		change := *before
		change.Authentication = &iotservice.Authentication{Type: iotservice.AuthSAS, SymmetricKey: &keys}
		updated, err := svc.UpdateModule(ctx, &change)
		if err != nil {
			t.Fatalf("UpdateModule with the current etag: %v", err)
		}
		if keysOf(updated.Authentication) != keys {
			t.Errorf("keys after UpdateModule = %+v, want %+v", keysOf(updated.Authentication), keys)
		}
		if updated.ETag == "" || updated.ETag == before.ETag {
			t.Errorf("etag %q after update, want a new one (was %q)", updated.ETag, before.ETag)
		}
		got, err := svc.GetModule(ctx, "mod-dev", "m1")
		if err != nil {
			t.Fatal(err)
		}
		if keysOf(got.Authentication) != keys || got.ETag != updated.ETag {
			t.Errorf("GetModule after update: etag %q keys %+v", got.ETag, keysOf(got.Authentication))
		}
		_, err = svc.UpdateModule(ctx, before) // stale etag
		wantStatus(t, "UpdateModule with a stale etag", err, http.StatusPreconditionFailed)
		if got, err := svc.GetModule(ctx, "mod-dev", "m1"); err != nil || keysOf(got.Authentication) != keys {
			t.Errorf("a refused module update changed the module (%v)", err)
		}
	})

	t.Run("ModuleTwin", func(t *testing.T) {
		fresh, err := svc.GetModuleTwin(ctx, "mod-dev", "m2")
		if err != nil {
			t.Fatalf("GetModuleTwin: %v", err)
		}
		if fresh.DeviceID != "mod-dev" || fresh.ModuleID != "m2" {
			t.Errorf("module twin ids %q/%q", fresh.DeviceID, fresh.ModuleID)
		}
		checkNewTwin(t, "new module twin", int(fresh.Version), fresh.ETag, fresh.Properties, createdAt)

		updated, err := svc.UpdateModuleTwin(ctx, &iotservice.ModuleTwin{
			DeviceID:   "mod-dev",
			ModuleID:   "m2",
			ETag:       fresh.ETag,
			Tags:       map[string]any{"role": "filter"},
			Properties: &iotservice.Properties{Desired: map[string]any{"threshold": 42, "window": map[string]any{"seconds": 10}}},
		})
		if err != nil {
			t.Fatalf("UpdateModuleTwin: %v", err)
		}
		if updated.DeviceID != "mod-dev" || updated.ModuleID != "m2" {
			t.Errorf("updated module twin ids %q/%q", updated.DeviceID, updated.ModuleID)
		}
		d := updated.Properties.Desired
		if d["threshold"] != 42.0 || at(d, "window", "seconds") != 10.0 || d["$version"] != 2.0 {
			t.Errorf("desired = %v, want threshold 42, window.seconds 10, $version 2", d)
		}
		if at(d, "$metadata", "window", "seconds", "$lastUpdatedVersion") != 2.0 {
			t.Errorf("desired.$metadata.window.seconds = %v, want $lastUpdatedVersion 2", at(d, "$metadata", "window", "seconds"))
		}
		if updated.Tags["role"] != "filter" || updated.Version != fresh.Version+1 || updated.ETag == fresh.ETag {
			t.Errorf("tags %v version %d etag %q after update", updated.Tags, updated.Version, updated.ETag)
		}
		got, err := svc.GetModuleTwin(ctx, "mod-dev", "m2")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != updated.ETag || !reflect.DeepEqual(got.Properties, updated.Properties) || !reflect.DeepEqual(got.Tags, updated.Tags) {
			t.Errorf("GetModuleTwin after update differs from the update's reply")
		}
		// The module twin is not the device twin.
		dt, err := svc.GetDeviceTwin(ctx, "mod-dev")
		if err != nil {
			t.Fatal(err)
		}
		if dt.Properties.Desired["threshold"] != nil || dt.Version != 1 {
			t.Errorf("the device twin changed with its module's: version %d desired %v", dt.Version, dt.Properties.Desired)
		}
		// A twin read and sent back whole works, as for devices.
		got.Properties.Desired["threshold"] = 7
		again, err := svc.UpdateModuleTwin(ctx, got)
		if err != nil {
			t.Fatalf("UpdateModuleTwin with a twin read by GetModuleTwin: %v", err)
		}
		if again.Properties.Desired["threshold"] != 7.0 || again.Properties.Desired["$version"] != 3.0 {
			t.Errorf("desired after send-back = %v", again.Properties.Desired)
		}
		// Module twins are queried from devices.modules.
		items, err := query(t, svc, "SELECT * FROM devices.modules WHERE properties.desired.threshold = 7")
		if err != nil {
			t.Fatalf("query over devices.modules: %v", err)
		}
		if len(items) != 1 || items[0]["deviceId"] != "mod-dev" || items[0]["moduleId"] != "m2" || at(items[0], "tags", "role") != "filter" {
			t.Errorf("devices.modules query = %v, want the twin of mod-dev/m2", items)
		}
		if items, err := query(t, svc, "SELECT * FROM devices WHERE properties.desired.threshold = 7"); err != nil || len(items) != 0 {
			t.Errorf("a devices query matched module twins: %v, %v", items, err)
		}
		_, err = svc.UpdateModuleTwin(ctx, &iotservice.ModuleTwin{
			DeviceID: "mod-dev", ModuleID: "m2", ETag: fresh.ETag,
			Properties: &iotservice.Properties{Desired: map[string]any{"threshold": 1}},
		})
		wantStatus(t, "UpdateModuleTwin with a stale etag", err, http.StatusPreconditionFailed)
		_, err = svc.GetModuleTwin(ctx, "mod-dev", "m-none")
		wantStatus(t, "GetModuleTwin of a missing module", err, http.StatusNotFound)
	})

	t.Run("DeleteModule", func(t *testing.T) {
		m1, err := svc.GetModule(ctx, "mod-dev", "m1")
		if err != nil {
			t.Fatal(err)
		}
		stale := *m1
		stale.ETag = created.ETag // changed by UpdateModule
		wantStatus(t, "DeleteModule with a stale etag", svc.DeleteModule(ctx, &stale), http.StatusPreconditionFailed)
		if err := svc.DeleteModule(ctx, m1); err != nil {
			t.Fatalf("DeleteModule: %v", err)
		}
		_, err = svc.GetModule(ctx, "mod-dev", "m1")
		wantStatus(t, "GetModule after DeleteModule", err, http.StatusNotFound)
		_, err = svc.GetModuleTwin(ctx, "mod-dev", "m1")
		wantStatus(t, "GetModuleTwin after DeleteModule", err, http.StatusNotFound)
		wantStatus(t, "DeleteModule of a deleted module", svc.DeleteModule(ctx, m1), http.StatusNotFound)
		mods, err := svc.ListModules(ctx, "mod-dev")
		if err != nil {
			t.Fatal(err)
		}
		if got := moduleIDs(mods); !slices.Equal(got, []string{"m2"}) {
			t.Errorf("ListModules after delete = %v, want [m2]", got)
		}
		if _, err := svc.GetDevice(ctx, "mod-dev"); err != nil {
			t.Errorf("deleting a module affected its device: %v", err)
		}

		// Deleting a device deletes its modules.
		if err := svc.DeleteDevice(ctx, &iotservice.Device{DeviceID: "mod-dev"}); err != nil {
			t.Fatal(err)
		}
		_, err = svc.GetModule(ctx, "mod-dev", "m2")
		wantStatus(t, "GetModule of a deleted device's module", err, http.StatusNotFound)
		_, err = svc.ListModules(ctx, "mod-dev")
		wantStatus(t, "ListModules of a deleted device", err, http.StatusNotFound)
		if _, err := svc.GetModule(ctx, "mod-other", "m9"); err != nil {
			t.Errorf("another device's module is gone: %v", err)
		}
	})
}
