package index

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
)

// TestIdentityRoundTrip: every field of a device and of a module comes
// back from the index's compact identity as it went in (the etag as the
// identity's version gives it), nil and empty told apart, values outside
// the enumerations, strings past a one-byte length and several parent
// scopes included; an instant in another zone comes back in UTC and says
// so (exact false).
func TestIdentityRoundTrip(t *testing.T) {
	seed := 0
	filled, mod := &twinhub.Device{}, &twinhub.Module{}
	fillFields(t, reflect.ValueOf(filled).Elem(), &seed) // its status and types are none of the constants
	fillFields(t, reflect.ValueOf(mod).Elem(), &seed)
	long := strings.Repeat("k", 70_000)
	enabled := &twinhub.Device{DeviceID: "enabled", Status: twinhub.StatusEnabled, ConnectionState: twinhub.StateConnected,
		Authentication: twinhub.Authentication{Type: twinhub.AuthSAS, SymmetricKey: twinhub.SymmetricKey{PrimaryKey: long, SecondaryKey: "s"}},
		StatusReason:   new(string), DeviceScope: new(string), ParentScopes: twinhub.Scopes{},
		LastActivityTime:  twinhub.Time{Time: time.Date(1, 1, 1, 0, 0, 1, 100, time.UTC)},
		StatusUpdatedTime: twinhub.Time{Time: time.Date(9999, 12, 31, 23, 59, 59, 999_999_900, time.UTC)}}
	devices := []*twinhub.Device{filled, enabled, {DeviceID: "bare"}}
	for v, d := range devices {
		version := int64(v * 40) // past the shared etags too
		d.ETag = twinhub.IdentityETag(version)
		id, data, exact := appendIdentity([]byte("values"), d, nil, version)
		id.text = string(data[len("values"):])
		if got := id.device(); !exact || !reflect.DeepEqual(got, d) {
			t.Errorf("device read back as (exact %v)\n%+v\nwritten\n%+v", exact, got, d)
		}
		if id.module() != nil || id.key != d.DeviceID {
			t.Errorf("device %s: a module, or the key %q", d.DeviceID, id.key)
		}
	}
	for _, m := range []*twinhub.Module{mod, {DeviceID: "d", ModuleID: "bare", Authentication: twinhub.Authentication{Type: twinhub.AuthNone}}} {
		m.ETag = twinhub.IdentityETag(7)
		id, data, exact := appendIdentity(nil, nil, m, 7)
		id.text = string(data)
		if got := id.module(); !exact || !reflect.DeepEqual(got, m) {
			t.Errorf("module read back as (exact %v)\n%+v\nwritten\n%+v", exact, got, m)
		}
		if id.device() != nil || id.key != m.DeviceID+"\x00"+m.ModuleID {
			t.Errorf("module %s: a device, or the key %q", m.ModuleID, id.key)
		}
	}

	zoned := &twinhub.Device{DeviceID: "zoned",
		LastActivityTime: twinhub.Time{Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("", 3600))}}
	id, data, exact := appendIdentity(nil, zoned, nil, 1)
	id.text = string(data)
	got := id.device()
	if exact || !got.LastActivityTime.Equal(zoned.LastActivityTime.Time) || got.LastActivityTime.Location() != time.UTC {
		t.Errorf("an instant in another zone: exact %v, read back as %v", exact, got.LastActivityTime)
	}
	fine := &twinhub.Device{DeviceID: "fine", LastActivityTime: twinhub.Time{Time: time.Date(2026, 5, 6, 7, 8, 9, 1, time.UTC)}}
	if _, _, exact := appendIdentity(nil, fine, nil, 1); exact {
		t.Error("an instant finer than 100 ns was called exact")
	}
}
