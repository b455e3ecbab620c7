// Package recordtest makes records for the tests and benchmarks of the
// packages that store, index and serve them: random twins with the
// oddities stored records may have, and the realistic fleet the
// benchmarks measure.
package recordtest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twinhub/twinhub"
)

// RandomValue makes a JSON value as encoding/json decodes it, nested up to
// depth levels.
func RandomValue(r *rand.Rand, depth int) any {
	switch n := r.IntN(10); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n < 4:
		return float64(r.IntN(41) - 20)
	case n == 4:
		return float64(r.IntN(1000)) / 8
	case n < 7:
		return []string{"a", "b", "EU", "US", "x y", "é", ""}[r.IntN(7)]
	case n == 7 && depth > 0:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = RandomValue(r, depth-1)
		}
		return a
	case depth > 0:
		return RandomObject(r, depth-1)
	}
	return "leaf"
}

func RandomObject(r *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for range r.IntN(5) {
		m[[]string{"a", "b", "c", "temp", "mode", "loc", "list"}[r.IntN(7)]] = RandomValue(r, depth)
	}
	return m
}

// Epoch is the instant RandomRecord's twins are stamped around.
var Epoch = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// RandomRecord makes a device or module record whose twin went through a
// few random updates, as the hub would make them, plus some oddities that
// stored records may have.
func RandomRecord(r *rand.Rand, k twinhub.Key) *twinhub.Record {
	now := twinhub.Time{Time: Epoch.Add(time.Duration(r.IntN(1000)) * time.Second)}
	rec := &twinhub.Record{IdentityVersion: int64(1 + r.IntN(5)), Twin: twinhub.NewTwin(now)}
	auth := twinhub.Authentication{Type: twinhub.AuthSAS, SymmetricKey: twinhub.SymmetricKey{PrimaryKey: "p", SecondaryKey: "s"}}
	if r.IntN(5) == 0 {
		tp := "ABCD"
		auth = twinhub.Authentication{Type: twinhub.AuthSelfSigned, X509Thumbprint: twinhub.X509Thumbprint{PrimaryThumbprint: &tp}}
	}
	conn := []string{twinhub.StateConnected, twinhub.StateDisconnected}[r.IntN(2)]
	if k.ModuleID != "" {
		rec.Module = &twinhub.Module{DeviceID: k.DeviceID, ModuleID: k.ModuleID, ConnectionState: conn,
			CloudToDeviceMessageCount: r.IntN(3), Authentication: auth, LastActivityTime: now}
	} else {
		rec.Device = &twinhub.Device{DeviceID: k.DeviceID, Status: []string{twinhub.StatusEnabled, twinhub.StatusDisabled}[r.IntN(2)],
			ConnectionState: conn, StatusUpdatedTime: now, Authentication: auth,
			Capabilities: twinhub.Capabilities{IoTEdge: r.IntN(4) == 0}}
		if r.IntN(3) == 0 {
			rec.Device.LastActivityTime = now
		}
		d := rec.Device
		if d.Capabilities.IoTEdge {
			own := twinhub.EdgeScope(d.DeviceID, "637002575398722524")
			d.DeviceScope = &own
		}
		if r.IntN(3) == 0 {
			parent := twinhub.EdgeScope("gateway", "123456789012345678")
			d.ParentScopes = twinhub.Scopes{parent}
			if !d.Capabilities.IoTEdge {
				d.DeviceScope = &parent
			}
		}
	}
	for range r.IntN(4) {
		now = twinhub.Time{Time: now.Add(time.Duration(r.IntN(100)+1) * time.Millisecond)}
		u := twinhub.TwinUpdate{}
		if r.IntN(2) == 0 {
			u.Tags = RandomObject(r, 2)
		}
		if r.IntN(2) == 0 {
			u.Desired = RandomObject(r, 2)
		}
		u.Replace = r.IntN(5) == 0
		_ = rec.Twin.Apply(u, now)
		if r.IntN(2) == 0 {
			_ = rec.Twin.UpdateReported(RandomObject(r, 3), now)
		}
	}
	switch r.IntN(12) {
	case 0:
		rec.Twin.Tags = nil
	case 1:
		rec.Twin.Desired.Metadata = nil
	case 2: // metadata of a property that has no value any more
		if rec.Twin.Reported.Metadata.Children == nil {
			rec.Twin.Reported.Metadata.Children = map[string]*twinhub.Metadata{}
		}
		rec.Twin.Reported.Metadata.Children["gone"] = &twinhub.Metadata{LastUpdated: now, LastUpdatedVersion: 3}
	case 3:
		rec.Twin.Tags["nilmap"] = map[string]any(nil)
		rec.Twin.Tags["int"] = 7
	case 4:
		rec.Twin.ModelID = "dtmi:x;1"
	case 5:
		rec.Twin.Configurations = map[string]string{"fw-2.0": twinhub.ConfigurationApplied, "a\"b": twinhub.ConfigurationTargeted}
	}
	return rec
}

// The values of the benchmark fleet's tags and properties.
var (
	Regions  = []string{"westus", "eastus", "northeurope", "westeurope", "southeastasia", "japaneast", "brazilsouth", "australiaeast"}
	models   = []string{"TH-100", "TH-200", "TH-300", "PM-10", "PM-25", "GW-1", "GW-2", "CAM-4K", "CAM-HD", "VALVE-3", "PUMP-7", "METER-E", "METER-W", "LOCK-2", "SENSE-X", "SENSE-Y", "HVAC-1", "HVAC-2", "LIGHT-1", "DOOR-1"}
	firmware = []string{"1.0.0", "1.0.3", "1.1.0", "1.1.2", "1.2.0", "1.2.1", "2.0.0-rc1", "2.0.0", "2.0.1", "2.1.0", "2.1.1", "3.0.0"}
	statuses = []string{"ok", "ok", "ok", "ok", "warn", "error", "maintenance"}
)

// BenchDeviceID is the id of twin i of the benchmark fleet.
func BenchDeviceID(i int) string { return fmt.Sprintf("dev-%07d", i) }

// BenchRecord makes twin i of a fleet of n: tags region, plant (n/100 of
// them, so one matches ~100 twins) and model; three desired properties,
// one an object; 10 to 20 reported properties of every JSON type, two of
// them objects, among them a "batch" with n/100 values; metadata as the
// hub stamps it.
func BenchRecord(r *rand.Rand, i, n int) *twinhub.Record {
	plants := max(n/100, 1)
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	created := twinhub.Time{Time: base.Add(time.Duration(r.IntN(86400)) * time.Second)}
	desiredAt := twinhub.Time{Time: created.Add(time.Duration(r.IntN(3600)) * time.Second)}
	reportedAt := twinhub.Time{Time: desiredAt.Add(time.Duration(r.IntN(3600)) * time.Second)}
	tags := map[string]any{
		"region": Regions[r.IntN(len(Regions))],
		"plant":  fmt.Sprintf("plant-%05d", r.IntN(plants)),
		"model":  models[r.IntN(len(models))],
	}
	desired := map[string]any{
		"telemetryInterval": float64([]int{15, 30, 60, 300}[r.IntN(4)]),
		"firmwareTarget":    firmware[len(firmware)-1-r.IntN(2)],
		"config":            map[string]any{"mode": []string{"eco", "normal", "performance"}[r.IntN(3)], "sampling": float64(r.IntN(10) + 1)},
	}
	reported := map[string]any{
		"temperature":     float64(r.IntN(10000)) / 100,
		"humidity":        float64(r.IntN(1000)) / 10,
		"battery":         float64(r.IntN(101)),
		"rssi":            float64(-30 - r.IntN(90)),
		"firmwareVersion": firmware[r.IntN(len(firmware))],
		"status":          statuses[r.IntN(len(statuses))],
		"serialNumber":    fmt.Sprintf("SN-%08d", i),
		"batch":           fmt.Sprintf("b-%05d", r.IntN(plants)),
		"online":          r.IntN(10) > 0,
		"telemetryConfig": map[string]any{"sendFrequencyInSecs": desired["telemetryInterval"], "status": "Success"},
	}
	extra := []func(){
		func() { reported["pressure"] = 950 + float64(r.IntN(1000))/10 },
		func() { reported["uptime"] = float64(r.IntN(10_000_000)) },
		func() { reported["errors"] = float64(r.IntN(6)) },
		func() { reported["ipAddress"] = fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)) },
		func() { reported["lastBoot"] = created.String() },
		func() {
			reported["location"] = map[string]any{"lat": float64(r.IntN(18000))/100 - 90, "lon": float64(r.IntN(36000))/100 - 180}
		},
		func() { reported["mode"] = desired["config"].(map[string]any)["mode"] },
		func() { reported["co2"] = float64(400 + r.IntN(1600)) },
		func() { reported["voltage"] = float64(r.IntN(2400)) / 10 },
		func() { reported["lastError"] = nil },
	}
	for _, k := range r.Perm(len(extra))[:r.IntN(len(extra)+1)] {
		extra[k]()
	}
	rec := &twinhub.Record{
		Device: &twinhub.Device{
			DeviceID:          BenchDeviceID(i),
			GenerationID:      "638" + strconv.Itoa(100000000+i),
			ConnectionState:   []string{twinhub.StateConnected, twinhub.StateDisconnected}[r.IntN(2)],
			Status:            twinhub.StatusEnabled,
			StatusUpdatedTime: created,
			LastActivityTime:  reportedAt,
			Authentication: twinhub.Authentication{Type: twinhub.AuthSAS, SymmetricKey: twinhub.SymmetricKey{
				PrimaryKey:   "aGVsbG8gd29ybGQgdGhpcyBpcyBhIGZha2Uga2V5IQ==",
				SecondaryKey: "c2Vjb25kYXJ5IGtleSBvZiBhIGJlbmNoIGRldmljZQ==",
			}},
		},
		IdentityVersion: 1,
		Twin: twinhub.Twin{
			Version:  3,
			Tags:     tags,
			Desired:  twinhub.Properties{Values: desired, Version: 2, Metadata: stampTree(desired, desiredAt, 2)},
			Reported: twinhub.Properties{Values: reported, Version: 2, Metadata: stampTree(reported, reportedAt, 0)},
		},
	}
	if r.IntN(20) == 0 {
		rec.Device.Status = twinhub.StatusDisabled
	}
	return rec
}

// stampTree is the metadata the hub writes for values set at once.
func stampTree(values map[string]any, at twinhub.Time, version int64) *twinhub.Metadata {
	m := &twinhub.Metadata{LastUpdated: at, LastUpdatedVersion: version, Children: map[string]*twinhub.Metadata{}}
	for k, v := range values {
		if sub, ok := v.(map[string]any); ok {
			m.Children[k] = stampTree(sub, at, version)
		} else {
			m.Children[k] = &twinhub.Metadata{LastUpdated: at, LastUpdatedVersion: version}
		}
	}
	return m
}
