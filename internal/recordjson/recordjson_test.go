package recordjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordtest"
)

// sameAsJSON checks that Decode agrees with json.Unmarshal on data.
func sameAsJSON(t *testing.T, data []byte) {
	t.Helper()
	var want twinhub.Record
	wantErr := json.Unmarshal(data, &want)
	got, err := Decode(data)
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
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
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
		{twinhub.Record{}, recordSchema.names}, {twinhub.Device{}, deviceSchema.names}, {twinhub.Module{}, moduleSchema.names},
		{twinhub.Authentication{}, authSchema.names}, {twinhub.SymmetricKey{}, keySchema.names}, {twinhub.X509Thumbprint{}, thumbprintSchema.names},
		{twinhub.Capabilities{}, capabilitiesSchema.names}, {twinhub.Twin{}, twinSchema.names}, {twinhub.Properties{}, propertiesSchema.names},
		{twinhub.Metadata{}, MetadataFields},
	} {
		typ := reflect.TypeOf(c.v)
		var names []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		if strings.Join(names, " ") != strings.Join(c.names, " ") {
			t.Errorf("%s has the JSON fields %q; the codec knows %q", typ, names, c.names)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(8, 8))
	for i := range 20 {
		rec := recordtest.RandomRecord(r, twinhub.DeviceKey(fmt.Sprint(i)))
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
	data, _ := json.Marshal(recordtest.BenchRecord(r, 5, 1_000_000))
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var rec twinhub.Record
			if err := json.Unmarshal(data, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sameAsMarshal checks that EncodeRecord writes what json.Marshal writes.
func sameAsMarshal(t *testing.T, rec *twinhub.Record) {
	t.Helper()
	full, wantErr := json.Marshal(rec)
	got, err := Encode(rec)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, json.Marshal says %v", err, wantErr)
	}
	if err != nil {
		return
	}
	want := full // what the fast path refuses, json.Marshal writes
	if e := (jsonEncoder{ok: true}); func() bool { recordSchema.write(&e, rec); return e.ok }() {
		want = marshalStored(t, full, rec.Device != nil && rec.Device.ParentScopes == nil)
	}
	if string(got) != string(want) {
		t.Fatalf("EncodeRecord differs from json.Marshal less the zeros stored records leave out:\n got %s\nwant %s", got, want)
	}
	// What is left out reads back as what was written.
	var back, written twinhub.Record
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(full, &written); err != nil {
		t.Fatal(err)
	}
	if rec.Device != nil && rec.Device.ParentScopes == nil {
		written.Device.ParentScopes = nil // [] when written, absent when stored
	}
	if !reflect.DeepEqual(back, written) {
		t.Fatalf("the stored record reads back as\n%+v\nnot as json.Marshal's\n%+v", back, written)
	}
}

// marshalStored is full, json.Marshal's bytes of a record, without the
// members that storedOmits leaves out of a stored record when zero (and
// parentScopes when nilScopes). The identities hold no map, and a string
// value holds no unescaped quote, so the members' text is found only
// where it is the member.
func marshalStored(t *testing.T, full []byte, nilScopes bool) []byte {
	t.Helper()
	var top struct {
		Device          json.RawMessage `json:"device,omitempty"`
		Module          json.RawMessage `json:"module,omitempty"`
		IdentityVersion int64           `json:"identityVersion"`
		Twin            json.RawMessage `json:"twin"`
	}
	if err := json.Unmarshal(full, &top); err != nil {
		t.Fatal(err)
	}
	zeros := []string{`,"statusReason":null`, `,"connectionStateUpdatedTime":"0001-01-01T00:00:00Z"`,
		`,"lastActivityTime":"0001-01-01T00:00:00Z"`, `,"cloudToDeviceMessageCount":0`,
		`,"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null}`,
		`,"capabilities":{"iotEdge":false}`, `,"deviceScope":null`}
	if nilScopes {
		zeros = append(zeros, `,"parentScopes":[]`)
	}
	for _, identity := range []*json.RawMessage{&top.Device, &top.Module} {
		for _, z := range zeros {
			*identity = bytes.Replace(*identity, []byte(z), nil, 1)
		}
	}
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTwinDoc checks that AppendTwinDoc and AppendDeviceTwin write what
// json.Marshal writes of TwinDoc and of the device's twin, and that they
// take the fast way if fast is set.
func sameTwinDoc(t *testing.T, rec *twinhub.Record, fast bool) {
	t.Helper()
	want, wantErr := json.Marshal(rec.TwinDoc())
	got, ok := AppendTwinDoc(nil, rec)
	if fast && !ok {
		t.Fatalf("AppendTwinDoc refused %s", want)
	}
	if ok && (wantErr != nil || string(got) != string(want)) {
		t.Fatalf("AppendTwinDoc differs from json.Marshal(TwinDoc()) (%v):\n got %s\nwant %s", wantErr, got, want)
	}
	want, wantErr = twinhub.MarshalNoHTML(rec.DeviceTwinDoc())
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
		k := twinhub.DeviceKey(fmt.Sprintf("d%d", i))
		if i%3 == 0 {
			k.ModuleID = "m"
		}
		rec := recordtest.RandomRecord(r, k)
		rec.SetETags()
		e := jsonEncoder{ok: true}
		if recordSchema.write(&e, rec); !e.ok {
			t.Fatalf("the fast path refused %+v", rec)
		}
		sameAsMarshal(t, rec)
		sameTwinDoc(t, rec, true)
	}
	odd := "q\"b\\s/<>&\x00\x01\x1f\x7f\b\f\n\r\t é😀\u2028\u2029\xff\xc3"
	full := func() *twinhub.Record {
		rec := &twinhub.Record{}
		fillEvery(reflect.ValueOf(rec).Elem(), odd)
		return rec
	}
	rec := full()
	rec.Twin.Tags = map[string]any{odd: odd, "i": []any{7, int64(-8)}, "n": []any{0.0, -0.0, 1e-7, 1e-6, 123456789.0, 1e20, 1e21, -2.5e-300, 4.5e15, 1.0 / 3, 7.0, -42.0, 1e15, 1<<53 - 1.0, -(1<<53 - 1.0), 1 << 53, 1<<53 + 2.0, -(1 << 53), 0.5, -1e-300, math.Copysign(0, -1)}, "nil": []any(nil), "e": []any{}, "m": map[string]any{}, "z": nil, "t": true}
	sameAsMarshal(t, rec)
	rec.Module = nil
	sameAsMarshal(t, rec)
	rec.Twin.Reported.Values = map[string]any{odd: map[string]any{"<a>": 1.0}, "y": map[string]any(nil), "z": []any{1.0}}
	rec.Twin.Reported.Metadata.Children = map[string]*twinhub.Metadata{odd: {LastUpdatedVersion: 3, Children: map[string]*twinhub.Metadata{"<a>": {}, "gone": {LastUpdatedVersion: 2}}}, "y": {}, "z": {}, "!": {}}
	sameTwinDoc(t, rec, true)
	rec.Device.Authentication.X509Thumbprint.PrimaryThumbprint = new(string)
	sameTwinDoc(t, rec, true)
	rec.Twin.Reported.Values["$version"] = 1.0
	sameTwinDoc(t, rec, false)
	rec = full()
	rec.Device = nil
	sameTwinDoc(t, rec, false)
	rec.Twin.Desired.Metadata.Children = map[string]*twinhub.Metadata{"x": nil, "y": {}}
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
		if v.Type() == reflect.TypeFor[twinhub.Time]() {
			v.Set(reflect.ValueOf(twinhub.Time{Time: time.Date(2026, 2, 3, 4, 5, 6, 700, time.FixedZone("x", 3600))}))
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
		data, _ := json.Marshal(recordtest.RandomRecord(r, twinhub.DeviceKey(fmt.Sprint(i))))
		f.Add(data)
	}
	f.Add([]byte(`{"module":{"moduleId":"m\u2028<","deviceId":"d","managedBy":"x"},"twin":{"tags":{"a":[1e-7,{"b":-0.5e3}],"c":null},"desired":{"metadata":{"t":"2024-01-01T00:00:00+02:00","c":{"x":null}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec twinhub.Record
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
	rec := recordtest.BenchRecord(r, 5, 1_000_000)
	data, _ := json.Marshal(rec)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(rec); err != nil {
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

// TestAppendValue: AppendValue writes what json.Marshal does for the
// values JSON decodes to, odd strings and numbers included, and refuses
// (leaving b as it was) what it does not take.
func TestAppendValue(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	odd := "q\"b\\s/<>&\x00\x01\x1f\x7f\b\f\n\r\t é😀\u2028\u2029\xff\xc3"
	values := []any{nil, true, "", odd, 0.0, -0.0, 1e-7, 1e21, 1.0 / 3, 7, int64(-8), []any(nil), []any{}, map[string]any(nil), map[string]any{},
		map[string]any{odd: []any{odd, map[string]any{"<a>": 1.5}}, "z": nil}}
	for range 2000 {
		values = append(values, recordtest.RandomValue(r, 4), recordtest.RandomObject(r, 4))
	}
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := AppendValue([]byte("x"), v)
		if !ok || string(got) != "x"+string(want) {
			t.Fatalf("AppendValue(%#v) = %q %v, want %q", v, got, ok, want)
		}
	}
	for _, v := range []any{math.NaN(), float32(1.5), json.Number("5"), map[string]string{"a": "b"}, []any{1.0, uint(3)}} {
		if got, ok := AppendValue([]byte("x"), v); ok || string(got) != "x" {
			t.Errorf("AppendValue(%#v) = %q %v, want a refusal", v, got, ok)
		}
	}
}
