package twinhub

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
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
		rec.stamp()
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
		{Record{}, recordFields}, {Device{}, deviceFields}, {Module{}, moduleFields},
		{Authentication{}, authFields}, {SymmetricKey{}, keyFields}, {X509Thumbprint{}, thumbFields},
		{Capabilities{}, capabilityFields}, {Twin{}, twinFields}, {Properties{}, propertiesFields},
		{Metadata{}, metadataFields},
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
