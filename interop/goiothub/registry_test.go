package goiothub

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/amenzhinsky/iothub/iotdevice"
	"github.com/amenzhinsky/iothub/iotservice"
)

// checkGeneratedKeys checks what IoT Hub fills in when a device or module
// is registered without keys: type sas and two distinct 32-byte keys.
func checkGeneratedKeys(t *testing.T, what string, a *iotservice.Authentication) {
	t.Helper()
	if a == nil {
		t.Fatalf("%s: no authentication in the reply", what)
	}
	if a.Type != iotservice.AuthSAS {
		t.Errorf("%s: authentication.type = %q, want %q", what, a.Type, iotservice.AuthSAS)
	}
	if a.SymmetricKey == nil {
		t.Fatalf("%s: no authentication.symmetricKey in the reply", what)
	}
	for name, k := range map[string]string{"primaryKey": a.SymmetricKey.PrimaryKey, "secondaryKey": a.SymmetricKey.SecondaryKey} {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 32 {
			t.Errorf("%s: %s %q is not base64 of 32 bytes (err %v)", what, name, k, err)
		}
	}
	if a.SymmetricKey.PrimaryKey == a.SymmetricKey.SecondaryKey {
		t.Errorf("%s: primary and secondary keys are equal", what)
	}
}

// keysOf is the symmetric key pair of an authentication, zero when absent.
func keysOf(a *iotservice.Authentication) iotservice.SymmetricKey {
	if a == nil || a.SymmetricKey == nil {
		return iotservice.SymmetricKey{}
	}
	return *a.SymmetricKey
}

func deviceIDs(devices []*iotservice.Device) []string {
	ids := make([]string, 0, len(devices))
	for _, d := range devices {
		ids = append(ids, d.DeviceID)
	}
	sort.Strings(ids)
	return ids
}

// TestDeviceRegistry drives the identity registry through iotservice:
// create (generated keys; a connection string with which the SDK's MQTT
// device client connects), get, update with and without a current etag,
// list, delete; special-character and maximum-length ids, selfSigned and
// Edge devices, the rights of each shared access policy, and the errors
// IoT Hub gives for duplicates, stale etags, missing devices and invalid ids.
func TestDeviceRegistry(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.21")
	svc := h.Service(t)
	ctx := testContext(t)

	created, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-1"})
	if err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}

	t.Run("CreateDevice", func(t *testing.T) {
		if created.DeviceID != "reg-1" {
			t.Errorf("deviceId = %q, want reg-1", created.DeviceID)
		}
		checkGeneratedKeys(t, "CreateDevice", created.Authentication)
		if created.ETag == "" || created.GenerationID == "" {
			t.Errorf("etag %q, generationId %q: want both set", created.ETag, created.GenerationID)
		}
		if created.Status != iotservice.Enabled {
			t.Errorf("status = %q, want enabled", created.Status)
		}
		if created.ConnectionState != iotservice.Disconnected {
			t.Errorf("connectionState = %q, want Disconnected", created.ConnectionState)
		}
		if created.CloudToDeviceMessageCount != 0 {
			t.Errorf("cloudToDeviceMessageCount = %d, want 0", created.CloudToDeviceMessageCount)
		}
	})

	t.Run("DeviceConnectionString", func(t *testing.T) {
		cs, err := svc.DeviceConnectionString(created, false)
		if err != nil {
			t.Fatal(err)
		}
		want := "HostName=" + h.Addr + ";DeviceId=reg-1;SharedAccessKey=" + created.Authentication.SymmetricKey.PrimaryKey
		if cs != want {
			t.Errorf("DeviceConnectionString = %q, want %q", cs, want)
		}
		creds, err := iotdevice.ParseConnectionString(cs)
		if err != nil {
			t.Fatalf("iotdevice.ParseConnectionString: %v", err)
		}
		if creds.DeviceID != "reg-1" || creds.HostName != h.Addr {
			t.Errorf("parsed connection string: device %q host %q", creds.DeviceID, creds.HostName)
		}
		secondary, err := svc.DeviceConnectionString(created, true)
		if err != nil || !strings.HasSuffix(secondary, created.Authentication.SymmetricKey.SecondaryKey) {
			t.Errorf("secondary connection string %q, %v", secondary, err)
		}
		// The generated keys authenticate a device: with either key, the
		// SDK's MQTT device client connects and reads its twin. One client
		// at a time: a second connection of the identity takes over the
		// first (as on IoT Hub), and the first one's automatic reconnect
		// would take it back, again and again.
		for _, c := range []string{cs, secondary} {
			dev := h.DeviceClient(t, c)
			desired, reported, err := dev.RetrieveTwinState(ctx)
			if err != nil {
				t.Fatalf("device with %s: RetrieveTwinState: %v", c, err)
			}
			if desired.Version() != 1 || reported.Version() != 1 {
				t.Errorf("device twin versions desired %d reported %d, want 1 and 1", desired.Version(), reported.Version())
			}
			if err := dev.Close(); err != nil {
				t.Errorf("closing the device client: %v", err)
			}
		}
	})

	t.Run("GetDevice", func(t *testing.T) {
		got, err := svc.GetDevice(ctx, "reg-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != created.ETag || got.GenerationID != created.GenerationID {
			t.Errorf("etag/generationId %q/%q, want %q/%q as created", got.ETag, got.GenerationID, created.ETag, created.GenerationID)
		}
		if keysOf(got.Authentication) != keysOf(created.Authentication) {
			t.Errorf("keys differ from those CreateDevice returned")
		}
		if got.StatusUpdatedTime == nil || got.StatusUpdatedTime.IsZero() {
			t.Errorf("statusUpdatedTime not set")
		}
	})

	t.Run("CreateTwice", func(t *testing.T) {
		_, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-1"})
		wantStatus(t, "CreateDevice of an existing id", err, http.StatusConflict)
		got, err := svc.GetDevice(ctx, "reg-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != created.ETag {
			t.Errorf("after the refused create: etag %q, want %q unchanged", got.ETag, created.ETag)
		}
	})

	t.Run("CreateWithKeys", func(t *testing.T) {
		keys := &iotservice.SymmetricKey{
			PrimaryKey:   base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
			SecondaryKey: base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")),
		}
		d, err := svc.CreateDevice(ctx, &iotservice.Device{
			DeviceID:       "reg-keys",
			Authentication: &iotservice.Authentication{Type: iotservice.AuthSAS, SymmetricKey: keys},
		})
		if err != nil {
			t.Fatal(err)
		}
		if keysOf(d.Authentication) != *keys {
			t.Errorf("keys given at creation were not kept: %+v", d.Authentication)
		}
	})

	t.Run("InvalidID", func(t *testing.T) {
		// As upstream's TestRegistryError expects from Azure: a 400 whose
		// body has Message and ExceptionMessage.
		_, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "!@#$%^&"})
		bre, ok := err.(*iotservice.BadRequestError)
		if !ok {
			t.Fatalf("CreateDevice(\"!@#$%%^&\") = %v, want *iotservice.BadRequestError", err)
		}
		if bre.Message == "" || bre.ExceptionMessage == "" {
			t.Errorf("bad request error with empty Message or ExceptionMessage: %+v", bre)
		}
	})

	t.Run("SpecialIDs", func(t *testing.T) {
		// Every character IoT Hub allows in ids; the SDK escapes ids with
		// url.PathEscape, which leaves $ & + = : @ literal, so the hub must
		// decode each path segment once and never turn + into a space.
		ids := []string{"dev#1", "a:b@c$d", "x+y=z", "p%20q", "it's(1)!", "star*?,", "dot.dash-under_", strings.Repeat("L", 128)}
		for _, id := range ids {
			d, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id})
			if err != nil {
				t.Errorf("CreateDevice(%q): %v", id, err)
				continue
			}
			if d.DeviceID != id {
				t.Errorf("CreateDevice(%q) returned deviceId %q", id, d.DeviceID)
			}
			if got, err := svc.GetDevice(ctx, id); err != nil || got.DeviceID != id || got.ETag != d.ETag {
				t.Errorf("GetDevice(%q): %v, %+v", id, err, got)
			}
			tw, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: id, Tags: map[string]any{"id": id}})
			if err != nil || tw.DeviceID != id || tw.Tags["id"] != id {
				t.Errorf("UpdateDeviceTwin(%q): %v, %+v", id, err, tw)
			}
			m, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: id, ModuleID: "m#1+" + id[:1]})
			if err != nil || m.DeviceID != id || m.ModuleID != "m#1+"+id[:1] {
				t.Errorf("CreateModule on %q: %v, %+v", id, err, m)
			} else if mt, err := svc.GetModuleTwin(ctx, id, m.ModuleID); err != nil || mt.DeviceID != id || mt.ModuleID != m.ModuleID {
				t.Errorf("GetModuleTwin(%q, %q): %v, %+v", id, m.ModuleID, err, mt)
			}
		}
		// Ids are case-sensitive, and the one that looks URL-encoded is not decoded twice.
		for _, id := range []string{"DEV#1", "P%20Q"} {
			_, err := svc.GetDevice(ctx, id)
			wantStatus(t, fmt.Sprintf("GetDevice(%q)", id), err, http.StatusNotFound)
		}
		items, err := query(t, svc, "SELECT deviceId FROM devices WHERE deviceId = 'x+y=z' OR deviceId = 'dev#1'")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 {
			t.Errorf("query by special ids = %v, want dev#1 and x+y=z", items)
		}
		for _, id := range ids {
			if err := svc.DeleteDevice(ctx, &iotservice.Device{DeviceID: id}); err != nil {
				t.Errorf("DeleteDevice(%q): %v", id, err)
			}
			_, err := svc.GetDevice(ctx, id)
			wantStatus(t, fmt.Sprintf("GetDevice(%q) after delete", id), err, http.StatusNotFound)
		}
		_, err = svc.CreateDevice(ctx, &iotservice.Device{DeviceID: strings.Repeat("L", 129)})
		wantStatus(t, "CreateDevice with a 129-character id", err, http.StatusBadRequest)
	})

	t.Run("SelfSigned", func(t *testing.T) {
		primary, secondary := strings.Repeat("AB", 20), strings.Repeat("CD", 32) // SHA-1 and SHA-256
		d, err := svc.CreateDevice(ctx, &iotservice.Device{
			DeviceID: "reg-x509",
			Authentication: &iotservice.Authentication{
				Type:           iotservice.AuthSelfSigned,
				X509Thumbprint: &iotservice.X509Thumbprint{PrimaryThumbprint: primary, SecondaryThumbprint: secondary},
			},
		})
		if err != nil {
			t.Fatalf("CreateDevice with thumbprints: %v", err)
		}
		if d.Authentication == nil || d.Authentication.Type != iotservice.AuthSelfSigned || d.Authentication.X509Thumbprint == nil ||
			!strings.EqualFold(d.Authentication.X509Thumbprint.PrimaryThumbprint, primary) ||
			!strings.EqualFold(d.Authentication.X509Thumbprint.SecondaryThumbprint, secondary) {
			t.Errorf("authentication = %+v, want selfSigned with the thumbprints", d.Authentication)
		}
		if k := keysOf(d.Authentication); k.PrimaryKey != "" || k.SecondaryKey != "" {
			t.Errorf("a selfSigned device got symmetric keys %+v", k)
		}
		if _, err := svc.DeviceConnectionString(d, false); err == nil {
			t.Errorf("DeviceConnectionString of a selfSigned device: no error")
		}
		tw, err := svc.GetDeviceTwin(ctx, "reg-x509")
		if err != nil {
			t.Fatal(err)
		}
		if tw.AuthenticationType != "selfSigned" || tw.X509Thumbprint == nil || !strings.EqualFold(tw.X509Thumbprint.PrimaryThumbprint, primary) {
			t.Errorf("twin authenticationType %q x509Thumbprint %+v", tw.AuthenticationType, tw.X509Thumbprint)
		}
		_, err = svc.CreateDevice(ctx, &iotservice.Device{
			DeviceID:       "reg-x509-bad",
			Authentication: &iotservice.Authentication{Type: iotservice.AuthSelfSigned},
		})
		wantStatus(t, "CreateDevice selfSigned without thumbprints", err, http.StatusBadRequest)
		svc.DeleteDevice(ctx, d)
	})

	t.Run("EdgeCapability", func(t *testing.T) {
		d, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-edge", Capabilities: map[string]any{"iotEdge": true}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Capabilities["iotEdge"] != true {
			t.Errorf("capabilities = %v, want iotEdge true", d.Capabilities)
		}
		tw, err := svc.GetDeviceTwin(ctx, "reg-edge")
		if err != nil {
			t.Fatal(err)
		}
		if tw.Capabilities["iotEdge"] != true {
			t.Errorf("twin capabilities = %v, want iotEdge true", tw.Capabilities)
		}
		svc.DeleteDevice(ctx, d)
	})

	t.Run("Policies", func(t *testing.T) {
		// registryRead reads the registry and cannot write it; the service
		// policy (ServiceConnect only) cannot read it; registryReadWrite can
		// do both; a wrong key is refused.
		ro := h.ServiceFor(t, h.PolicyConnectionString(t, "registryRead"))
		if _, err := ro.GetDevice(ctx, "reg-1"); err != nil {
			t.Errorf("registryRead GetDevice: %v", err)
		}
		if _, err := ro.ListDevices(ctx); err != nil {
			t.Errorf("registryRead ListDevices: %v", err)
		}
		_, err := ro.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-ro"})
		wantStatus(t, "registryRead CreateDevice", err, http.StatusUnauthorized)
		wantStatus(t, "registryRead DeleteDevice", ro.DeleteDevice(ctx, &iotservice.Device{DeviceID: "reg-1"}), http.StatusUnauthorized)

		rw := h.ServiceFor(t, h.PolicyConnectionString(t, "registryReadWrite"))
		if _, err := rw.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-rw"}); err != nil {
			t.Errorf("registryReadWrite CreateDevice: %v", err)
		} else if err := rw.DeleteDevice(ctx, &iotservice.Device{DeviceID: "reg-rw"}); err != nil {
			t.Errorf("registryReadWrite DeleteDevice: %v", err)
		}

		sc := h.ServiceFor(t, h.PolicyConnectionString(t, "service"))
		_, err = sc.GetDevice(ctx, "reg-1")
		wantStatus(t, "service policy GetDevice", err, http.StatusUnauthorized)
		_, err = sc.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-sc"})
		wantStatus(t, "service policy CreateDevice", err, http.StatusUnauthorized)

		dc := h.ServiceFor(t, h.PolicyConnectionString(t, "device"))
		_, err = dc.GetDevice(ctx, "reg-1")
		wantStatus(t, "device policy GetDevice", err, http.StatusUnauthorized)

		i := strings.Index(h.ConnectionString, "SharedAccessKey=")
		wrong := h.ConnectionString[:i] + "SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("not the key of iothubowner!!!!!!"))
		_, err = h.ServiceFor(t, wrong).GetDevice(ctx, "reg-1")
		wantStatus(t, "GetDevice with a wrong key", err, http.StatusUnauthorized)
	})

	t.Run("UpdateDevice", func(t *testing.T) {
		before, err := svc.GetDevice(ctx, "reg-1")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // statusUpdatedTime must move
		change := *before
		change.Status = iotservice.Disabled
		change.StatusReason = "maintenance"
		updated, err := svc.UpdateDevice(ctx, &change)
		if err != nil {
			t.Fatalf("UpdateDevice with the current etag: %v", err)
		}
		if updated.Status != iotservice.Disabled {
			t.Errorf("status = %q, want disabled", updated.Status)
		}
		if updated.StatusReason != "maintenance" {
			t.Errorf("statusReason = %q, want maintenance", updated.StatusReason)
		}
		if updated.ETag == "" || updated.ETag == before.ETag {
			t.Errorf("etag %q after update, want a new one (was %q)", updated.ETag, before.ETag)
		}
		if updated.GenerationID != before.GenerationID {
			t.Errorf("generationId changed on update: %q -> %q", before.GenerationID, updated.GenerationID)
		}
		if keysOf(updated.Authentication) != keysOf(before.Authentication) {
			t.Errorf("keys changed on a status update")
		}
		if updated.StatusUpdatedTime == nil || !updated.StatusUpdatedTime.After(before.StatusUpdatedTime.Time) {
			t.Errorf("statusUpdatedTime %v, want later than %v", updated.StatusUpdatedTime, before.StatusUpdatedTime)
		}
		got, err := svc.GetDevice(ctx, "reg-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != iotservice.Disabled || got.ETag != updated.ETag {
			t.Errorf("GetDevice after update: status %q etag %q, want disabled and %q", got.Status, got.ETag, updated.ETag)
		}

		// The etag read before the update is stale now.
		stale := *before
		stale.Status = iotservice.Enabled
		_, err = svc.UpdateDevice(ctx, &stale)
		wantStatus(t, "UpdateDevice with a stale etag", err, http.StatusPreconditionFailed)
		if got, _ := svc.GetDevice(ctx, "reg-1"); got == nil || got.Status != iotservice.Disabled {
			t.Errorf("a refused update changed the device")
		}

		// No etag: the SDK sends If-Match: * and the update applies.
		force := *got
		force.ETag = ""
		force.Status = iotservice.Enabled
		again, err := svc.UpdateDevice(ctx, &force)
		if err != nil {
			t.Fatalf("UpdateDevice with If-Match *: %v", err)
		}
		if again.Status != iotservice.Enabled || again.ETag == updated.ETag {
			t.Errorf("after forced update: status %q etag %q", again.Status, again.ETag)
		}

		_, err = svc.UpdateDevice(ctx, &iotservice.Device{DeviceID: "reg-missing", Status: iotservice.Enabled})
		wantStatus(t, "UpdateDevice of a missing device", err, http.StatusNotFound)
	})

	t.Run("ListDevices", func(t *testing.T) {
		for _, id := range []string{"reg-list-a", "reg-list-b"} {
			if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := svc.ListDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"reg-1", "reg-keys", "reg-list-a", "reg-list-b"}
		if got := deviceIDs(list); !slices.Equal(got, want) {
			t.Errorf("ListDevices = %v, want %v", got, want)
		}
		for _, d := range list {
			if d.ETag == "" || d.Authentication == nil || d.Authentication.SymmetricKey == nil || d.Authentication.SymmetricKey.PrimaryKey == "" {
				t.Errorf("listed device %s lacks etag or keys", d.DeviceID)
			}
		}
	})

	t.Run("DeleteDevice", func(t *testing.T) {
		d, err := svc.GetDevice(ctx, "reg-list-a")
		if err != nil {
			t.Fatal(err)
		}
		stale := *d
		stale.ETag = created.ETag + "x"
		wantStatus(t, "DeleteDevice with a wrong etag", svc.DeleteDevice(ctx, &stale), http.StatusPreconditionFailed)
		if err := svc.DeleteDevice(ctx, d); err != nil {
			t.Fatalf("DeleteDevice with the current etag: %v", err)
		}
		_, err = svc.GetDevice(ctx, "reg-list-a")
		wantStatus(t, "GetDevice after DeleteDevice", err, http.StatusNotFound)
		_, err = svc.GetDeviceTwin(ctx, "reg-list-a")
		wantStatus(t, "GetDeviceTwin after DeleteDevice", err, http.StatusNotFound)
		wantStatus(t, "DeleteDevice of a deleted device", svc.DeleteDevice(ctx, d), http.StatusNotFound)
		if err := svc.DeleteDevice(ctx, &iotservice.Device{DeviceID: "reg-list-b"}); err != nil {
			t.Fatalf("DeleteDevice with If-Match *: %v", err)
		}
		list, err := svc.ListDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := deviceIDs(list), []string{"reg-1", "reg-keys"}; !slices.Equal(got, want) {
			t.Errorf("ListDevices after deletes = %v, want %v", got, want)
		}
		// The id is free again, with a new generation.
		re, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: "reg-list-a"})
		if err != nil {
			t.Fatalf("re-creating a deleted id: %v", err)
		}
		if re.GenerationID == d.GenerationID {
			t.Errorf("re-created device kept generationId %q", re.GenerationID)
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		_, err := svc.GetDevice(ctx, "reg-never")
		wantStatus(t, "GetDevice of a missing device", err, http.StatusNotFound)
		if re, ok := err.(*iotservice.RequestError); ok && !strings.Contains(string(re.Body), "DeviceNotFound") {
			t.Errorf("404 body %q does not name DeviceNotFound", re.Body)
		}
	})
}

// TestBulkRegistry drives POST /devices through CreateDevices,
// UpdateDevices and DeleteDevices, including the partial failure that
// upstream's TestBulkErrors expects from Azure: no Go error, isSuccessful
// false, and the failing device listed in errors.
func TestBulkRegistry(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.22")
	svc := h.Service(t)
	ctx := testContext(t)

	batch := []*iotservice.Device{{DeviceID: "bulk-0"}, {DeviceID: "bulk-1"}, {DeviceID: "bulk-2"}}
	t.Run("CreateDevices", func(t *testing.T) {
		res, err := svc.CreateDevices(ctx, batch)
		if err != nil {
			t.Fatalf("CreateDevices: %v", err)
		}
		if !res.IsSuccessful || len(res.Errors) != 0 {
			t.Errorf("CreateDevices = %+v, want isSuccessful and no errors", res)
		}
		for _, d := range batch {
			got, err := svc.GetDevice(ctx, d.DeviceID)
			if err != nil {
				t.Errorf("GetDevice(%s) after bulk create: %v", d.DeviceID, err)
				continue
			}
			checkGeneratedKeys(t, d.DeviceID, got.Authentication)
			if got.Status != iotservice.Enabled {
				t.Errorf("%s: status %q, want enabled", got.DeviceID, got.Status)
			}
		}
	})

	t.Run("CreateDevicesWithDuplicate", func(t *testing.T) {
		res, err := svc.CreateDevices(ctx, []*iotservice.Device{{DeviceID: "bulk-3"}, {DeviceID: "bulk-1"}})
		if err != nil {
			t.Fatalf("CreateDevices with one existing id: %v, want a BulkResult and no error", err)
		}
		if res.IsSuccessful {
			t.Errorf("isSuccessful = true, want false")
		}
		if len(res.Errors) != 1 {
			t.Fatalf("errors = %+v, want one entry", res.Errors)
		}
		e := res.Errors[0]
		if e.DeviceID != "bulk-1" || e.ErrorCode != 409001 || e.ErrorStatus == "" {
			t.Errorf("error entry %+v, want deviceId bulk-1, errorCode 409001 (DeviceAlreadyExists) and a status text", e)
		}
	})

	t.Run("UpdateDevices", func(t *testing.T) {
		var current []*iotservice.Device
		for _, id := range []string{"bulk-0", "bulk-1"} {
			d, err := svc.GetDevice(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			current = append(current, d)
		}
		var change []*iotservice.Device
		for _, d := range current {
			c := *d
			c.Status = iotservice.Disabled
			change = append(change, &c)
		}
		// force=false: importMode UpdateIfMatchETag with the etags read.
		res, err := svc.UpdateDevices(ctx, change, false)
		if err != nil {
			t.Fatalf("UpdateDevices(UpdateIfMatchETag): %v", err)
		}
		if !res.IsSuccessful || len(res.Errors) != 0 {
			t.Errorf("UpdateDevices(UpdateIfMatchETag) = %+v, want success", res)
		}
		for _, d := range current {
			got, err := svc.GetDevice(ctx, d.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != iotservice.Disabled || got.ETag == d.ETag {
				t.Errorf("%s after bulk update: status %q etag %q (was %q)", d.DeviceID, got.Status, got.ETag, d.ETag)
			}
			if keysOf(got.Authentication) != keysOf(d.Authentication) {
				t.Errorf("%s: keys changed by a status update", d.DeviceID)
			}
		}
		// The same etags are stale now.
		res, err = svc.UpdateDevices(ctx, change[:1], false)
		if err != nil {
			t.Fatalf("UpdateDevices with a stale etag: %v, want a BulkResult", err)
		}
		if res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].DeviceID != "bulk-0" || res.Errors[0].ErrorCode != 412001 {
			t.Errorf("UpdateDevices with a stale etag = %+v (errors %+v), want one error for bulk-0 with errorCode 412001", res, res.Errors)
		}
		// force=true: importMode Update, etags ignored.
		for _, c := range change {
			c.Status = iotservice.Enabled
		}
		res, err = svc.UpdateDevices(ctx, change, true)
		if err != nil {
			t.Fatalf("UpdateDevices(Update): %v", err)
		}
		if !res.IsSuccessful || len(res.Errors) != 0 {
			t.Errorf("UpdateDevices(Update) = %+v, errors %+v, want success", res, res.Errors)
		}
		for _, c := range change {
			got, err := svc.GetDevice(ctx, c.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != iotservice.Enabled {
				t.Errorf("%s after forced bulk update: status %q, want enabled", c.DeviceID, got.Status)
			}
		}
	})

	t.Run("UpdateDevicesMissing", func(t *testing.T) {
		// importMode Update: "If the device does not exist, an error is
		// written to the log file" (ImportMode in the C# service SDK).
		res, err := svc.UpdateDevices(ctx, []*iotservice.Device{{DeviceID: "bulk-absent", Status: iotservice.Enabled}}, true)
		if err != nil {
			t.Fatalf("UpdateDevices(Update) of a missing device: %v, want a BulkResult", err)
		}
		if res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].DeviceID != "bulk-absent" || res.Errors[0].ErrorCode != 404001 {
			t.Errorf("UpdateDevices(Update) of a missing device = %+v (errors %+v), want one error for bulk-absent with errorCode 404001 (DeviceNotFound)", res, res.Errors)
		}
		if _, err := svc.GetDevice(ctx, "bulk-absent"); err == nil {
			t.Errorf("importMode Update created the missing device bulk-absent")
		}
	})

	t.Run("UpdateDeviceTwins", func(t *testing.T) {
		// force=true: importMode UpdateTwin with tags and desired
		// properties. (force=false sends UpdateTwinIfMatchETag, but the
		// SDK's Device has no twinETag field to send with it.)
		res, err := svc.UpdateDeviceTwins(ctx, []*iotservice.Device{
			{DeviceID: "bulk-0", Tags: tutorialTags(), Properties: &iotservice.Properties{Desired: tutorialDesired()}},
			{DeviceID: "bulk-1", Tags: map[string]any{"location": map[string]any{"plant": "Dublin1"}}},
		}, true)
		if err != nil {
			t.Fatalf("UpdateDeviceTwins(UpdateTwin): %v", err)
		}
		if !res.IsSuccessful || len(res.Errors) != 0 {
			t.Errorf("UpdateDeviceTwins(UpdateTwin) = %+v, errors %+v, want success", res, res.Errors)
		}
		t0, err := svc.GetDeviceTwin(ctx, "bulk-0")
		if err != nil {
			t.Fatal(err)
		}
		if at(t0.Tags, "location", "plant") != "Redmond43" || t0.Properties.Desired["power_level"] != 1.0 || t0.Properties.Desired["$version"] != 2.0 {
			t.Errorf("bulk-0 twin after UpdateTwin: tags %v desired %v", t0.Tags, t0.Properties.Desired)
		}
		t1, err := svc.GetDeviceTwin(ctx, "bulk-1")
		if err != nil {
			t.Fatal(err)
		}
		if at(t1.Tags, "location", "plant") != "Dublin1" || t1.Properties.Desired["$version"] != 1.0 {
			t.Errorf("bulk-1 twin after UpdateTwin: tags %v desired %v", t1.Tags, t1.Properties.Desired)
		}
	})

	t.Run("TooMany", func(t *testing.T) {
		// At most 100 identities a request.
		many := make([]*iotservice.Device, 101)
		for i := range many {
			many[i] = &iotservice.Device{DeviceID: fmt.Sprintf("bulk-many-%03d", i)}
		}
		_, err := svc.CreateDevices(ctx, many)
		wantStatus(t, "CreateDevices of 101 devices", err, http.StatusBadRequest)
		if _, err := svc.GetDevice(ctx, "bulk-many-000"); err == nil {
			t.Errorf("a refused bulk request of 101 created devices")
		}
	})

	t.Run("DeleteDevices", func(t *testing.T) {
		d2, err := svc.GetDevice(ctx, "bulk-2")
		if err != nil {
			t.Fatal(err)
		}
		// force=false: DeleteIfMatchETag; a wrong etag is refused.
		wrong := *d2
		wrong.ETag = "d3Jvbmc="
		res, err := svc.DeleteDevices(ctx, []*iotservice.Device{&wrong}, false)
		if err != nil {
			t.Fatalf("DeleteDevices with a wrong etag: %v, want a BulkResult", err)
		}
		if res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].DeviceID != "bulk-2" {
			t.Errorf("DeleteDevices with a wrong etag = %+v (errors %+v), want one error for bulk-2", res, res.Errors)
		}
		res, err = svc.DeleteDevices(ctx, []*iotservice.Device{d2}, false)
		if err != nil {
			t.Fatalf("DeleteDevices(DeleteIfMatchETag): %v", err)
		}
		if !res.IsSuccessful {
			t.Errorf("DeleteDevices(DeleteIfMatchETag) = %+v, errors %+v", res, res.Errors)
		}
		// force=true: Delete.
		res, err = svc.DeleteDevices(ctx, []*iotservice.Device{{DeviceID: "bulk-0"}, {DeviceID: "bulk-1"}}, true)
		if err != nil {
			t.Fatalf("DeleteDevices(Delete): %v", err)
		}
		if !res.IsSuccessful {
			t.Errorf("DeleteDevices(Delete) = %+v, errors %+v", res, res.Errors)
		}
		for _, id := range []string{"bulk-0", "bulk-1", "bulk-2"} {
			_, err := svc.GetDevice(ctx, id)
			wantStatus(t, "GetDevice("+id+") after bulk delete", err, http.StatusNotFound)
		}
	})

	// Import and export jobs through iotservice's CreateJob, GetJob,
	// ListJobs and CancelJob (interop/node runs them against a storage
	// account, Azurite): here the container cannot be reached, so the
	// export is created, then fails with the reason.
	t.Run("ImportExportJobs", func(t *testing.T) {
		const unreachable = "https://127.0.0.1:9/none?sv=2021-08-06&sr=c&sp=rwdl&sig=x"
		_, err := svc.CreateJob(ctx, &iotservice.Job{Type: iotservice.JobImport, OutputBlobContainerURI: unreachable})
		wantStatus(t, "an import without an input container", err, http.StatusBadRequest)
		created, err := svc.CreateJob(ctx, &iotservice.Job{Type: iotservice.JobExport, OutputBlobContainerURI: unreachable, ExcludeKeysInExport: true})
		if err != nil {
			t.Fatalf("CreateJob: %v", err)
		}
		id, _ := created["jobId"].(string)
		if id == "" || created["status"] != "enqueued" || created["type"] != "export" || created["excludeKeysInExport"] != true {
			t.Fatalf("CreateJob answered %v", created)
		}
		var job map[string]interface{}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			if job, err = svc.GetJob(ctx, id); err != nil {
				t.Fatalf("GetJob: %v", err)
			}
			if job["status"] == "failed" || job["status"] == "completed" || time.Now().After(deadline) {
				break
			}
		}
		reason, _ := job["failureReason"].(string)
		if job["status"] != "failed" || !strings.Contains(reason, "storage account") || strings.Contains(reason, "sig=x") {
			t.Errorf("the export to an unreachable container ended %v", job)
		}
		all, err := svc.ListJobs(ctx)
		if err != nil || len(all) == 0 || all[len(all)-1]["jobId"] != id {
			t.Errorf("ListJobs = %v, %v", all, err)
		}
		if got, err := svc.CancelJob(ctx, id); err != nil || got["status"] != "failed" {
			t.Errorf("CancelJob of an ended job = %v, %v (answered as it is)", got, err)
		}
		_, err = svc.GetJob(ctx, "no-such-job")
		wantStatus(t, "GetJob of an unknown job", err, http.StatusNotFound)
	})
}

// TestStatistics checks the counts of GET /statistics/devices and
// /statistics/service as devices come, change and go; modules are not
// devices and are not counted.
func TestStatistics(t *testing.T) {
	t.Parallel()
	h := startHub(t, "127.0.0.26")
	svc := h.Service(t)
	ctx := testContext(t)

	check := func(when string, total, enabled, disabled uint) {
		t.Helper()
		ds, err := svc.DeviceStats(ctx)
		if err != nil {
			t.Fatalf("DeviceStats %s: %v", when, err)
		}
		want := iotservice.DeviceStats{TotalDeviceCount: total, EnabledDeviceCount: enabled, DisabledDeviceCount: disabled}
		if *ds != want {
			t.Errorf("DeviceStats %s = %+v, want %+v", when, *ds, want)
		}
		ss, err := svc.ServiceStats(ctx)
		if err != nil {
			t.Fatalf("ServiceStats %s: %v", when, err)
		}
		if ss.ConnectedDeviceCount != 0 {
			t.Errorf("ServiceStats %s: connectedDeviceCount = %d, want 0", when, ss.ConnectedDeviceCount)
		}
	}
	check("of an empty hub", 0, 0, 0)
	for _, id := range []string{"st-1", "st-2", "st-3"} {
		if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"st-4", "st-5"} {
		if _, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id, Status: iotservice.Disabled}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: "st-1", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	check("with 3 enabled and 2 disabled devices", 5, 3, 2)

	d, err := svc.GetDevice(ctx, "st-1")
	if err != nil {
		t.Fatal(err)
	}
	d.Status = iotservice.Disabled
	if _, err := svc.UpdateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteDevice(ctx, &iotservice.Device{DeviceID: "st-5"}); err != nil {
		t.Fatal(err)
	}
	check("after disabling st-1 and deleting st-5", 4, 2, 2)
}
