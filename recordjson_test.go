package twinhub

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sameAsJSON checks that decodeRecord agrees with json.Unmarshal on data.
func sameAsJSON(t *testing.T, data []byte) {
	t.Helper()
	var want Record
	wantErr := json.Unmarshal(data, &want)
	got, err := decodeRecord(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: error %v, json.Unmarshal says %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(*got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", data, *got, want)
	}
}

// TestDecodeRecord decodes random records the way the store writes them:
// the fast path must take them all, and agree with json.Unmarshal.
func TestDecodeRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for i := range 3000 {
		k := DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := randomRecord(r, k)
		if i%5 == 0 {
			reason := "maintenance \"window\" <&> é \u2028"
			if rec.Device != nil {
				rec.Device.StatusReason = &reason
			}
			rec.Twin.Tags = map[string]any{"k<>": "a\tb\\c/é😀", "n": -1.5e-7, "big": 4.5e15, "arr": []any{1.0, nil, true, "x", map[string]any{}}}
		}
		rec.SetETags()
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeRecordFast(data); !ok {
			t.Fatalf("the fast path refused %s", data)
		}
		sameAsJSON(t, data)
	}
}

// TestDecodeRecordOddities checks inputs the fast path refuses or reads
// in its own way: the result must still be json.Unmarshal's.
func TestDecodeRecordOddities(t *testing.T) {
	base := `{"device":{"deviceId":"d","status":"enabled","statusUpdatedTime":"2024-01-02T03:04:05.1234567Z"},"identityVersion":1,"twin":{"version":2,"tags":{"a":1},"desired":{"values":{},"version":1,"metadata":{"t":"2024-01-02T03:04:05Z"}},"reported":{"values":{"x":[1,{"y":null}]},"version":1,"metadata":{"t":"0001-01-01T00:00:00Z","c":{"x":{"t":"2024-02-29T23:59:59.9Z","v":3}}}}}}`
	for _, s := range []string{
		base,
		" \n" + base + "\t ",
		base + "x",
		base[:len(base)-1],
		"",
		"null",
		"{}",
		"[]",
		`{"device":null,"module":{"moduleId":"m","deviceId":"d","managedBy":"x","authentication":{"type":"sas","symmetricKey":{"primaryKey":"p","secondaryKey":"s"},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":"T"}}},"twin":{"tags":null}}`,
		`{"Device":{"deviceId":"d"}}`,
		`{"device":{"deviceId":"d","DeviceId":"e"}}`,
		`{"device":{"deviceId":"d","deviceId":"e"}}`,
		`{"device":{"deviceId":"d","unknown":1}}`,
		`{"device":{"deviceId":"d\u0041\ud83d\ude00\n"}}`,
		`{"device":{"deviceId":"d\ud83d"}}`,
		`{"device":{"deviceId":"d\udc00x"}}`,
		`{"device":{"deviceId":"\xff"}}`,
		`{"device":{"deviceId":"a` + "\x01" + `"}}`,
		`{"device":{"deviceId":"d","cloudToDeviceMessageCount":1.0}}`,
		`{"device":{"deviceId":"d","cloudToDeviceMessageCount":1e2}}`,
		`{"device":{"deviceId":"d","cloudToDeviceMessageCount":99999999999999999999}}`,
		`{"device":{"deviceId":"d","cloudToDeviceMessageCount":-0}}`,
		`{"device":{"deviceId":"d","cloudToDeviceMessageCount":null,"statusReason":null}}`,
		`{"device":{"deviceId":"d","statusReason":"r","status":null}}`,
		`{"device":{"deviceId":"d","lastActivityTime":null}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-02-30T00:00:00Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-01-01T24:00:00Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-01-01T00:00:60Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-01-01T00:00:00+02:00"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-01-01T00:00:00.1234567891Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"2024-01-01t00:00:00Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":"0000-01-01T00:00:00Z"}}`,
		`{"device":{"deviceId":"d","lastActivityTime":5}}`,
		`{"device":{"deviceId":"d","capabilities":{"iotEdge":true}},"twin":null}`,
		`{"device":{"deviceId":"d","capabilities":{"iotEdge":1}}}`,
		`{"device":{"deviceId":5}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":01}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":1.}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":-}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":1e999}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":1E+2,"b":-0.5e-3,"a":"again"}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":[1,]}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"a":tru}}}`,
		`{"device":{"deviceId":"d"},"twin":{"tags":{"k\u0041":1}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"metadata":null,"values":null}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"metadata":{"c":{"a":null,"b":{"c":null}}}}}}`,
		`{"device":{"deviceId":"d"},"twin":{"desired":{"metadata":{"v":1.5}}}}`,
		`{"device":{"deviceId":"d"},"identityVersion":-3,"twin":{"version":9223372036854775807,"modelId":"m"}}`,
		`{"device":{"deviceId":"d"},"identityVersion":9223372036854775808}`,
	} {
		sameAsJSON(t, []byte(s))
	}
}

// TestDecodeRecordKnowsEveryField checks that the fast path knows every
// field the record's types have, so that new ones do not send every
// record to json.Unmarshal.
func TestDecodeRecordKnowsEveryField(t *testing.T) {
	for _, c := range []struct {
		v     any
		names []string
	}{
		{Record{}, RecordFields}, {Device{}, deviceFields}, {Module{}, moduleFields},
		{Authentication{}, authFields}, {SymmetricKey{}, keyFields}, {X509Thumbprint{}, thumbFields},
		{Capabilities{}, capabilityFields}, {Twin{}, TwinFields}, {Properties{}, PropertiesFields},
		{Metadata{}, MetadataFields},
	} {
		typ := reflect.TypeOf(c.v)
		var names []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		if strings.Join(names, " ") != strings.Join(c.names, " ") {
			t.Errorf("%s has the JSON fields %q; recordjson.go knows %q", typ, names, c.names)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(8, 8))
	for i := range 20 {
		rec := randomRecord(r, DeviceKey(fmt.Sprint(i)))
		data, _ := json.Marshal(rec)
		f.Add(data)
	}
	f.Add([]byte(`{"device":{"deviceId":"d\ud83d\ude00"},"twin":{"tags":{"a":[1,{"b":-0.5e3}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsJSON(t, data)
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	data, _ := json.Marshal(benchRecord(r, 5, 1_000_000))
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRecord(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var rec Record
			if err := json.Unmarshal(data, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sameAsMarshal checks that EncodeRecord writes what json.Marshal writes.
func sameAsMarshal(t *testing.T, rec *Record) {
	t.Helper()
	want, wantErr := json.Marshal(rec)
	got, err := EncodeRecord(rec)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, json.Marshal says %v", err, wantErr)
	}
	if string(got) != string(want) {
		t.Fatalf("EncodeRecord differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
}

// sameTwinDoc checks that AppendTwinDoc and AppendDeviceTwin write what
// json.Marshal writes of TwinDoc and of the device's twin, and that they
// take the fast way if fast is set.
func sameTwinDoc(t *testing.T, rec *Record, fast bool) {
	t.Helper()
	want, wantErr := json.Marshal(rec.TwinDoc())
	got, ok := AppendTwinDoc(nil, rec)
	if fast && !ok {
		t.Fatalf("AppendTwinDoc refused %s", want)
	}
	if ok && (wantErr != nil || string(got) != string(want)) {
		t.Fatalf("AppendTwinDoc differs from json.Marshal(TwinDoc()) (%v):\n got %s\nwant %s", wantErr, got, want)
	}
	want, wantErr = MarshalNoHTML(rec.DeviceTwinDoc())
	got, ok = AppendDeviceTwin(nil, rec)
	if fast && !ok {
		t.Fatalf("AppendDeviceTwin refused %s", want)
	}
	if ok && (wantErr != nil || string(got) != string(want)) {
		t.Fatalf("AppendDeviceTwin differs from the MQTT encoding (%v):\n got %s\nwant %s", wantErr, got, want)
	}
}

// TestEncodeRecord encodes random records, records with every field set
// and values that need escaping or exponents: byte for byte json.Marshal.
func TestEncodeRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 3000 {
		k := DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := randomRecord(r, k)
		rec.SetETags()
		e := jsonEncoder{}
		if e.record(rec); !e.ok {
			t.Fatalf("the fast path refused %+v", rec)
		}
		sameAsMarshal(t, rec)
		sameTwinDoc(t, rec, true)
	}
	odd := "q\"b\\s/<>&\x00\x01\x1f\x7f\b\f\n\r\t é😀\u2028\u2029\xff\xc3"
	full := func() *Record {
		rec := &Record{}
		fillEvery(reflect.ValueOf(rec).Elem(), odd)
		return rec
	}
	rec := full()
	rec.Twin.Tags = map[string]any{odd: odd, "i": []any{7, int64(-8)}, "n": []any{0.0, -0.0, 1e-7, 1e-6, 123456789.0, 1e20, 1e21, -2.5e-300, 4.5e15, 1.0 / 3}, "nil": []any(nil), "e": []any{}, "m": map[string]any{}, "z": nil, "t": true}
	sameAsMarshal(t, rec)
	rec.Module = nil
	sameAsMarshal(t, rec)
	rec.Twin.Reported.Values = map[string]any{odd: map[string]any{"<a>": 1.0}, "y": map[string]any(nil), "z": []any{1.0}}
	rec.Twin.Reported.Metadata.Children = map[string]*Metadata{odd: {LastUpdatedVersion: 3, Children: map[string]*Metadata{"<a>": {}, "gone": {LastUpdatedVersion: 2}}}, "y": {}, "z": {}, "!": {}}
	sameTwinDoc(t, rec, true)
	rec.Device.Authentication.X509Thumbprint.PrimaryThumbprint = new(string)
	sameTwinDoc(t, rec, true)
	rec.Twin.Reported.Values["$version"] = 1.0
	sameTwinDoc(t, rec, false)
	rec = full()
	rec.Device = nil
	sameTwinDoc(t, rec, false)
	rec.Twin.Desired.Metadata.Children = map[string]*Metadata{"x": nil, "y": {}}
	sameAsMarshal(t, rec)
	// What the fast path leaves to json.Marshal, errors included.
	for _, v := range []any{math.NaN(), math.Inf(-1), float32(1.5), uint(3), json.Number("5"), map[string]string{"a": "b"}} {
		rec.Twin.Tags = map[string]any{"v": v}
		sameAsMarshal(t, rec)
	}
}

// fillEvery sets every field of v, recursively, to something that is not
// its zero value, so that a field the encoder forgets shows.
func fillEvery(v reflect.Value, s string) { fillDepth(v, s, 0) }

func fillDepth(v reflect.Value, s string, depth int) {
	if depth > 6 {
		return // Metadata nests itself
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[Time]() {
			v.Set(reflect.ValueOf(Time{time.Date(2026, 2, 3, 4, 5, 6, 700, time.FixedZone("x", 3600))}))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillDepth(v.Field(i), s, depth+1)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillDepth(v.Elem(), s, depth+1)
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		v.SetInt(-42)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range []string{"b", "a", s} {
			e := reflect.New(v.Type().Elem()).Elem()
			if e.Kind() == reflect.Interface {
				e.Set(reflect.ValueOf(s))
			} else {
				fillDepth(e, s, depth+1)
			}
			m.SetMapIndex(reflect.ValueOf(k), e)
		}
		v.Set(m)
	}
}

// FuzzEncodeRecord: whatever record json.Unmarshal makes of the input,
// EncodeRecord encodes it as json.Marshal does.
func FuzzEncodeRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 9))
	for i := range 20 {
		data, _ := json.Marshal(randomRecord(r, DeviceKey(fmt.Sprint(i))))
		f.Add(data)
	}
	f.Add([]byte(`{"module":{"moduleId":"m\u2028<","deviceId":"d","managedBy":"x"},"twin":{"tags":{"a":[1e-7,{"b":-0.5e3}],"c":null},"desired":{"metadata":{"t":"2024-01-01T00:00:00+02:00","c":{"x":null}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec Record
		if json.Unmarshal(data, &rec) != nil {
			return
		}
		sameAsMarshal(t, &rec)
		if (rec.Device == nil) == (rec.Module == nil) {
			return
		}
		func() {
			defer func() {
				if recover() != nil {
					// TwinDoc fails on some records no store holds (a nil
					// metadata node); AppendTwinDoc must then refuse them.
					if _, ok := AppendTwinDoc(nil, &rec); ok {
						t.Fatal("AppendTwinDoc took a record TwinDoc fails on")
					}
				}
			}()
			sameTwinDoc(t, &rec, false)
		}()
	})
}

func BenchmarkEncodeRecord(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	rec := benchRecord(r, 5, 1_000_000)
	data, _ := json.Marshal(rec)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := EncodeRecord(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestAppendTime(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	check := func(tm time.Time) {
		t.Helper()
		if got, want := string(appendTime(nil, Time{tm})), (Time{tm}).String(); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
	check(time.Time{})
	for _, y := range []int{-1, 0, 1, 9, 999, 1000, 1969, 2026, 9999, 10000} {
		check(time.Date(y, 12, 31, 23, 59, 59, 999_999_999, time.UTC))
		check(time.Date(y, 1, 1, 0, 0, 0, 0, time.FixedZone("x", -7200)))
	}
	for range 10000 {
		check(time.Unix(r.Int64N(300_000_000_000)-62_000_000_000, r.Int64N(1_000_000_000)))
	}
}

// randomValue makes a JSON value as encoding/json decodes it, nested up to
// depth levels.
func randomValue(r *rand.Rand, depth int) any {
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
			a[i] = randomValue(r, depth-1)
		}
		return a
	case depth > 0:
		return randomObject(r, depth-1)
	}
	return "leaf"
}

func randomObject(r *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for range r.IntN(5) {
		m[[]string{"a", "b", "c", "temp", "mode", "loc", "list"}[r.IntN(7)]] = randomValue(r, depth)
	}
	return m
}

var testEpoch = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// randomRecord makes a device or module record whose twin went through a
// few random updates, as the hub would make them, plus some oddities that
// stored records may have.
func randomRecord(r *rand.Rand, k Key) *Record {
	now := Time{testEpoch.Add(time.Duration(r.IntN(1000)) * time.Second)}
	rec := &Record{IdentityVersion: int64(1 + r.IntN(5)), Twin: NewTwin(now)}
	auth := Authentication{Type: AuthSAS, SymmetricKey: SymmetricKey{PrimaryKey: "p", SecondaryKey: "s"}}
	if r.IntN(5) == 0 {
		tp := "ABCD"
		auth = Authentication{Type: AuthSelfSigned, X509Thumbprint: X509Thumbprint{PrimaryThumbprint: &tp}}
	}
	conn := []string{StateConnected, StateDisconnected}[r.IntN(2)]
	if k.ModuleID != "" {
		rec.Module = &Module{DeviceID: k.DeviceID, ModuleID: k.ModuleID, ConnectionState: conn,
			CloudToDeviceMessageCount: r.IntN(3), Authentication: auth, LastActivityTime: now}
	} else {
		rec.Device = &Device{DeviceID: k.DeviceID, Status: []string{StatusEnabled, StatusDisabled}[r.IntN(2)],
			ConnectionState: conn, StatusUpdatedTime: now, Authentication: auth,
			Capabilities: Capabilities{IoTEdge: r.IntN(4) == 0}}
		if r.IntN(3) == 0 {
			rec.Device.LastActivityTime = now
		}
	}
	for range r.IntN(4) {
		now = Time{now.Add(time.Duration(r.IntN(100)+1) * time.Millisecond)}
		u := TwinUpdate{}
		if r.IntN(2) == 0 {
			u.Tags = randomObject(r, 2)
		}
		if r.IntN(2) == 0 {
			u.Desired = randomObject(r, 2)
		}
		_ = rec.Twin.Apply(u, r.IntN(5) == 0, now)
		if r.IntN(2) == 0 {
			_ = rec.Twin.UpdateReported(randomObject(r, 3), now)
		}
	}
	switch r.IntN(12) {
	case 0:
		rec.Twin.Tags = nil
	case 1:
		rec.Twin.Desired.Metadata = nil
	case 2: // metadata of a property that has no value any more
		if rec.Twin.Reported.Metadata.Children == nil {
			rec.Twin.Reported.Metadata.Children = map[string]*Metadata{}
		}
		rec.Twin.Reported.Metadata.Children["gone"] = &Metadata{LastUpdated: now, LastUpdatedVersion: 3}
	case 3:
		rec.Twin.Tags["nilmap"] = map[string]any(nil)
		rec.Twin.Tags["int"] = 7
	case 4:
		rec.Twin.ModelID = "dtmi:x;1"
	}
	return rec
}

var (
	regions  = []string{"westus", "eastus", "northeurope", "westeurope", "southeastasia", "japaneast", "brazilsouth", "australiaeast"}
	models   = []string{"TH-100", "TH-200", "TH-300", "PM-10", "PM-25", "GW-1", "GW-2", "CAM-4K", "CAM-HD", "VALVE-3", "PUMP-7", "METER-E", "METER-W", "LOCK-2", "SENSE-X", "SENSE-Y", "HVAC-1", "HVAC-2", "LIGHT-1", "DOOR-1"}
	firmware = []string{"1.0.0", "1.0.3", "1.1.0", "1.1.2", "1.2.0", "1.2.1", "2.0.0-rc1", "2.0.0", "2.0.1", "2.1.0", "2.1.1", "3.0.0"}
	statuses = []string{"ok", "ok", "ok", "ok", "warn", "error", "maintenance"}
)

// BenchDeviceID is the id of twin i of the benchmark fleet.
func benchDeviceID(i int) string { return fmt.Sprintf("dev-%07d", i) }

// benchRecord makes twin i of a fleet of n: tags region, plant (n/100 of
// them, so one matches ~100 twins) and model; three desired properties,
// one an object; 10 to 20 reported properties of every JSON type, two of
// them objects, among them a "batch" with n/100 values; metadata as the
// hub stamps it.
func benchRecord(r *rand.Rand, i, n int) *Record {
	plants := max(n/100, 1)
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	created := Time{base.Add(time.Duration(r.IntN(86400)) * time.Second)}
	desiredAt := Time{created.Add(time.Duration(r.IntN(3600)) * time.Second)}
	reportedAt := Time{desiredAt.Add(time.Duration(r.IntN(3600)) * time.Second)}
	tags := map[string]any{
		"region": regions[r.IntN(len(regions))],
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
	rec := &Record{
		Device: &Device{
			DeviceID:          benchDeviceID(i),
			GenerationID:      "638" + strconv.Itoa(100000000+i),
			ConnectionState:   []string{StateConnected, StateDisconnected}[r.IntN(2)],
			Status:            StatusEnabled,
			StatusUpdatedTime: created,
			LastActivityTime:  reportedAt,
			Authentication: Authentication{Type: AuthSAS, SymmetricKey: SymmetricKey{
				PrimaryKey:   "aGVsbG8gd29ybGQgdGhpcyBpcyBhIGZha2Uga2V5IQ==",
				SecondaryKey: "c2Vjb25kYXJ5IGtleSBvZiBhIGJlbmNoIGRldmljZQ==",
			}},
		},
		IdentityVersion: 1,
		Twin: Twin{
			Version:  3,
			Tags:     tags,
			Desired:  Properties{Values: desired, Version: 2, Metadata: stampTree(desired, desiredAt, 2)},
			Reported: Properties{Values: reported, Version: 2, Metadata: stampTree(reported, reportedAt, 0)},
		},
	}
	if r.IntN(20) == 0 {
		rec.Device.Status = StatusDisabled
	}
	return rec
}

// stampTree is the metadata the hub writes for values set at once.
func stampTree(values map[string]any, at Time, version int64) *Metadata {
	m := &Metadata{LastUpdated: at, LastUpdatedVersion: version, Children: map[string]*Metadata{}}
	for k, v := range values {
		if sub, ok := v.(map[string]any); ok {
			m.Children[k] = stampTree(sub, at, version)
		} else {
			m.Children[k] = &Metadata{LastUpdated: at, LastUpdatedVersion: version}
		}
	}
	return m
}
