package twinhub

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func at(sec int) Time { return Time{time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC)} }

func TestTwinMergePatch(t *testing.T) {
	tests := []struct {
		name, start, patch, want string
	}{
		{"add", `{}`, `{"a":1}`, `{"a":1}`},
		{"replace leaf", `{"a":1}`, `{"a":"x"}`, `{"a":"x"}`},
		{"null removes", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"null of a missing key", `{"b":2}`, `{"a":null}`, `{"b":2}`},
		{"nested merge keeps siblings", `{"o":{"x":1,"y":2}}`, `{"o":{"y":3,"z":4}}`, `{"o":{"x":1,"y":3,"z":4}}`},
		{"nested null", `{"o":{"x":1,"y":2}}`, `{"o":{"x":null}}`, `{"o":{"y":2}}`},
		{"object replaces leaf", `{"o":1}`, `{"o":{"x":1}}`, `{"o":{"x":1}}`},
		{"leaf replaces object", `{"o":{"x":1}}`, `{"o":5}`, `{"o":5}`},
		{"nulls inside a new object vanish", `{}`, `{"o":{"x":null,"y":1}}`, `{"o":{"y":1}}`},
		{"arrays are values", `{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := NewTwin(at(0))
			if err := tw.UpdateDesired(mustJSON(t, tc.start), false, at(1)); err != nil {
				t.Fatal(err)
			}
			if err := tw.UpdateDesired(mustJSON(t, tc.patch), false, at(2)); err != nil {
				t.Fatal(err)
			}
			if got, want := tw.Desired.Values, mustJSON(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("desired = %v, want %v", got, want)
			}
			if tw.Desired.Version != 3 {
				t.Errorf("desired $version = %d, want 3 (1 at creation, +1 per patch)", tw.Desired.Version)
			}
			// Tags follow the same merge rules without metadata.
			if err := tw.UpdateTags(mustJSON(t, tc.start), false); err != nil {
				t.Fatal(err)
			}
			if err := tw.UpdateTags(mustJSON(t, tc.patch), false); err != nil {
				t.Fatal(err)
			}
			if got, want := tw.Tags, mustJSON(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("tags = %v, want %v", got, want)
			}
		})
	}
}

func TestTwinMetadata(t *testing.T) {
	tw := NewTwin(at(0))
	if err := tw.UpdateDesired(mustJSON(t, `{"a":1,"o":{"x":1,"y":2}}`), false, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := tw.UpdateDesired(mustJSON(t, `{"o":{"y":3}}`), false, at(2)); err != nil {
		t.Fatal(err)
	}
	if err := tw.UpdateDesired(mustJSON(t, `{"a":null}`), false, at(3)); err != nil {
		t.Fatal(err)
	}
	got := tw.Desired.Wire(true)
	want := mustJSON(t, `{
		"o": {"x": 1, "y": 3},
		"$version": 4,
		"$metadata": {
			"$lastUpdated": "2026-01-01T00:00:03.0000000Z", "$lastUpdatedVersion": 4,
			"o": {
				"$lastUpdated": "2026-01-01T00:00:02.0000000Z", "$lastUpdatedVersion": 3,
				"x": {"$lastUpdated": "2026-01-01T00:00:01.0000000Z", "$lastUpdatedVersion": 2},
				"y": {"$lastUpdated": "2026-01-01T00:00:02.0000000Z", "$lastUpdatedVersion": 3}
			}
		}
	}`)
	if !reflect.DeepEqual(roundTrip(t, got), want) {
		t.Errorf("wire desired =\n%s\nwant\n%s", pretty(got), pretty(want))
	}

	// Reported metadata carries no $lastUpdatedVersion.
	if err := tw.UpdateReported(mustJSON(t, `{"connectivity":"cellular"}`), at(4)); err != nil {
		t.Fatal(err)
	}
	rep := roundTrip(t, tw.Reported.Wire(true))
	wantRep := mustJSON(t, `{"connectivity":"cellular","$version":2,"$metadata":{"$lastUpdated":"2026-01-01T00:00:04.0000000Z","connectivity":{"$lastUpdated":"2026-01-01T00:00:04.0000000Z"}}}`)
	if !reflect.DeepEqual(rep, wantRep) {
		t.Errorf("wire reported = %s, want %s", pretty(rep), pretty(wantRep))
	}
	// Without metadata, as a device reads its twin over MQTT.
	if _, ok := tw.Reported.Wire(false)["$metadata"]; ok {
		t.Error("Wire(false) shows $metadata")
	}
}

func TestTwinApplyCountsVersions(t *testing.T) {
	tw := NewTwin(at(0))
	if tw.Version != 1 || tw.Desired.Version != 1 || tw.Reported.Version != 1 {
		t.Fatalf("a new twin starts at 1: %d %d %d", tw.Version, tw.Desired.Version, tw.Reported.Version)
	}
	u, err := ParseTwinUpdate([]byte(`{"tags":{"location":{"region":"US","plant":"Redmond43"}},"properties":{"desired":{"power_level":1}}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Apply(u, at(1)); err != nil {
		t.Fatal(err)
	}
	if tw.Version != 2 || tw.Desired.Version != 2 || tw.Reported.Version != 1 {
		t.Errorf("versions after one update: twin %d desired %d reported %d, want 2 2 1", tw.Version, tw.Desired.Version, tw.Reported.Version)
	}
	tagsOnly, _ := ParseTwinUpdate([]byte(`{"tags":{"a":1}}`), false)
	tw.Apply(tagsOnly, at(2))
	if tw.Version != 3 || tw.Desired.Version != 2 {
		t.Errorf("a tags-only update: twin %d desired %d, want 3 2", tw.Version, tw.Desired.Version)
	}
	if TwinETag(1) != "AAAAAAAAAAE=" {
		t.Errorf("TwinETag(1) = %s", TwinETag(1))
	}
}

func TestTwinReplace(t *testing.T) {
	tw := NewTwin(at(0))
	u, _ := ParseTwinUpdate([]byte(`{"tags":{"a":1,"b":2},"properties":{"desired":{"x":1,"y":2}}}`), false)
	tw.Apply(u, at(1))
	r, err := ParseTwinUpdate([]byte(`{"tags":{"c":3}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Apply(r, at(2)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tw.Tags, mustJSON(t, `{"c":3}`)) || len(tw.Desired.Values) != 0 {
		t.Errorf("PUT must replace tags and desired: tags %v desired %v", tw.Tags, tw.Desired.Values)
	}
}

// TestTwinClearSections: a PATCH with "tags": null or "properties":
// {"desired": null} empties the section (the other section untouched);
// clearing desired counts as a desired change, resets its metadata, and
// the twin's version goes up once for the update.
func TestTwinClearSections(t *testing.T) {
	tw := NewTwin(at(0))
	u, _ := ParseTwinUpdate([]byte(`{"tags":{"a":1},"properties":{"desired":{"x":1,"y":{"z":2}}}}`), false)
	tw.Apply(u, at(1))
	clearTags, err := ParseTwinUpdate([]byte(`{"tags":null,"properties":{"desired":{"w":3}}}`), false)
	if err != nil || !clearTags.ClearTags || clearTags.ClearDesired {
		t.Fatalf("parse tags null: %+v %v", clearTags, err)
	}
	if err := tw.Apply(clearTags, at(2)); err != nil {
		t.Fatal(err)
	}
	if len(tw.Tags) != 0 || !reflect.DeepEqual(tw.Desired.Values, mustJSON(t, `{"x":1,"y":{"z":2},"w":3}`)) || tw.Version != 3 || tw.Desired.Version != 3 {
		t.Fatalf("after tags null: tags %v desired %v version %d desired version %d", tw.Tags, tw.Desired.Values, tw.Version, tw.Desired.Version)
	}
	clearDesired, err := ParseTwinUpdate([]byte(`{"properties":{"desired":null}}`), false)
	if err != nil || !clearDesired.ClearDesired || clearDesired.ClearTags {
		t.Fatalf("parse desired null: %+v %v", clearDesired, err)
	}
	tw.Tags = map[string]any{"kept": true}
	if err := tw.Apply(clearDesired, at(3)); err != nil {
		t.Fatal(err)
	}
	if len(tw.Desired.Values) != 0 || tw.Desired.Version != 4 || tw.Version != 4 || tw.Tags["kept"] != true {
		t.Errorf("after desired null: desired %v version %d, twin version %d, tags %v", tw.Desired.Values, tw.Desired.Version, tw.Version, tw.Tags)
	}
	if m := tw.Desired.Metadata; m.LastUpdated != at(3) || m.LastUpdatedVersion != 4 || len(m.Children) != 0 {
		t.Errorf("desired metadata after the clear: %+v", m)
	}
	// Absent sections are not cleared.
	if none, _ := ParseTwinUpdate([]byte(`{"properties":{}}`), false); none.ClearTags || none.ClearDesired {
		t.Errorf("absent sections parsed as cleared: %+v", none)
	}
}

func TestParseTwinUpdateIgnoresReadOnlyParts(t *testing.T) {
	body := `{"deviceId":"d","etag":"AAAAAAAAAAE=","version":1,"properties":{
		"desired":{"hw":"1.11","$metadata":{"$lastUpdated":"x"},"$version":1},
		"reported":{"fw":"2","$version":1}}}`
	u, err := ParseTwinUpdate([]byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u.Desired, map[string]any{"hw": "1.11"}) || u.Tags != nil {
		t.Errorf("got desired %v tags %v", u.Desired, u.Tags)
	}
}

func TestTwinLimits(t *testing.T) {
	deep := `{"v":1}`
	for i := 0; i < 11; i++ {
		deep = `{"k":` + deep + `}`
	}
	ok10 := `{"v":1}`
	for i := 0; i < 9; i++ {
		ok10 = `{"k":` + ok10 + `}`
	}
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"depth 10 is allowed", `{"properties":{"desired":` + ok10 + `}}`, true},
		{"depth 11 is refused", `{"properties":{"desired":` + deep + `}}`, false},
		{"key with $", `{"tags":{"a$b":1}}`, false},
		{"key with .", `{"tags":{"a.b":1}}`, false},
		{"key with space", `{"tags":{"a b":1}}`, false},
		{"key with a control character", `{"tags":{"a\u0001":1}}`, false},
		{"key of 1 KB", `{"tags":{"` + strings.Repeat("k", 1024) + `":1}}`, true},
		{"key over 1 KB", `{"tags":{"` + strings.Repeat("k", 1025) + `":1}}`, false},
		{"string of 4 KB", `{"tags":{"s":"` + strings.Repeat("s", 4096) + `"}}`, true},
		{"string over 4 KB", `{"tags":{"s":"` + strings.Repeat("s", 4097) + `"}}`, false},
		{"integer 2^52-1", `{"tags":{"n":4503599627370495}}`, true},
		{"integer -2^52", `{"tags":{"n":-4503599627370496}}`, true},
		{"integer 2^52", `{"tags":{"n":4503599627370496}}`, false},
		{"integer 2^53", `{"tags":{"n":9007199254740992}}`, false},
		{"huge integer", `{"tags":{"n":123456789012345678901234567890}}`, false},
		{"a float is not an integer", `{"tags":{"n":1.5e300}}`, true},
		{"not JSON", `{"tags":`, false},
		{"trailing data", `{"tags":{}} {}`, false},
		{"tags not an object", `{"tags":[1]}`, false},
		{"desired not an object", `{"properties":{"desired":"x"}}`, false},
		{"unknown section", `{"properties":{"other":{}}}`, false},
		{"invalid UTF-8", "{\"tags\":{\"a\":\"\xff\"}}", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTwinUpdate([]byte(tc.body), false)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if e := AsError(err); e.Status != 400 || e.Code != "ArgumentInvalid" {
					t.Errorf("error %v is not a 400 ArgumentInvalid", err)
				}
			}
		})
	}
}

func TestTwinSizeLimitsWriteNothing(t *testing.T) {
	tw := NewTwin(at(0))
	u, _ := ParseTwinUpdate([]byte(`{"tags":{"keep":1},"properties":{"desired":{"keep":1}}}`), false)
	tw.Apply(u, at(1))
	before, _ := json.Marshal(tw)

	big := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	// Three 3,000-byte strings: 9 KB of tags, over the 8 KB limit.
	tags := `{"tags":{"a":` + big(3000) + `,"b":` + big(3000) + `,"c":` + big(3000) + `}}`
	var desired strings.Builder
	desired.WriteString(`{"properties":{"desired":{`)
	for i := 0; i < 9; i++ {
		if i > 0 {
			desired.WriteString(",")
		}
		desired.WriteString(`"k` + string(rune('0'+i)) + `":` + big(4000))
	}
	desired.WriteString(`}}}`)
	for name, body := range map[string]string{"tags over 8 KB": tags, "desired over 32 KB": desired.String()} {
		u, err := ParseTwinUpdate([]byte(body), false)
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		if err := tw.Apply(u, at(2)); AsError(err).Status != 403 || AsError(err).Code != "DeviceModelMaxPropertiesExceeded" {
			t.Errorf("%s: %v, want a 403 DeviceModelMaxPropertiesExceeded", name, err)
		}
		after, _ := json.Marshal(tw)
		if string(after) != string(before) {
			t.Errorf("%s: a refused update changed the twin", name)
		}
	}
	var reported strings.Builder
	reported.WriteString(`{`)
	for i := 0; i < 9; i++ {
		if i > 0 {
			reported.WriteString(",")
		}
		reported.WriteString(`"k` + string(rune('0'+i)) + `":` + big(4000))
	}
	reported.WriteString(`}`)
	p, err := ParsePatch("reported", []byte(reported.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.UpdateReported(p, at(3)); err == nil {
		t.Error("reported over 32 KB accepted")
	}
	if after, _ := json.Marshal(tw); string(after) != string(before) {
		t.Error("a refused reported patch changed the twin")
	}
}

// TestTwinSizeAsIoTHubCountsIt follows the twins doc: keys and string
// values count their characters, numbers 8, booleans 4; JSON punctuation
// counts nothing.
func TestTwinSizeAsIoTHubCountsIt(t *testing.T) {
	tags := map[string]any{}
	for i := range 100 {
		tags[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", 77) // 3 + 77 = 80 each: 8,000 in all
	}
	if got := twinSize(tags); got != 8000 {
		t.Fatalf("twinSize = %d, want 8000", got)
	}
	tw := NewTwin(at(0))
	if err := tw.UpdateTags(tags, false); err != nil {
		t.Errorf("8,000 of tags refused: %v", err)
	}
	if got := twinSize(map[string]any{"n": 1.5, "b": true, "o": map[string]any{"x": []any{"ab", 2.0}}}); got != 1+8+1+4+1+1+2+8 {
		t.Errorf("twinSize of numbers, booleans, objects and arrays = %d, want 26", got)
	}
	tags["one-more"] = strings.Repeat("v", 200)
	if err := tw.UpdateTags(tags, false); AsError(err).Status != 403 {
		t.Errorf("tags over 8 KB: %v, want 403", err)
	}
}

func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, string(b))
}

func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func BenchmarkTwinPatchDesired(b *testing.B) {
	tw := NewTwin(Now())
	base, _ := ParseTwinUpdate([]byte(`{"properties":{"desired":{"a":1,"b":{"c":"x","d":[1,2,3]},"e":true,"f":"some string value"}}}`), false)
	tw.Apply(base, Now())
	body := []byte(`{"properties":{"desired":{"power_level":5,"b":{"c":"y"}}}}`)
	b.ReportAllocs()
	for b.Loop() {
		u, err := ParseTwinUpdate(body, false)
		if err != nil {
			b.Fatal(err)
		}
		if err := tw.Apply(u, Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCloneShallowLeavesTheOriginal: every change a writer makes to a
// shallow copy (CloneShallow) through Twin.Apply or the device's fields
// leaves the record it was copied from as it was: Twin.Apply replaces the
// maps it changes rather than changing them.
func TestCloneShallowLeavesTheOriginal(t *testing.T) {
	now := Now()
	orig := &Record{Device: &Device{DeviceID: "d", ConnectionState: StateDisconnected}, IdentityVersion: 3}
	orig.Twin.Configurations = map[string]string{"c1": "targeted"}
	if err := orig.Twin.Apply(TwinUpdate{
		Tags:     mustJSON(t, `{"location":{"plant":"Redmond43","line":{"n":1}},"a":1}`),
		Desired:  mustJSON(t, `{"telemetry":{"rate":5,"deep":{"x":1}},"b":2}`),
		Reported: mustJSON(t, `{"connectivity":{"type":"wifi","deep":{"y":1}}}`),
	}, now); err != nil {
		t.Fatal(err)
	}
	before, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	updates := []TwinUpdate{
		{Tags: mustJSON(t, `{"location":{"plant":"Other","line":{"n":2}},"a":null}`)},
		{Desired: mustJSON(t, `{"telemetry":{"rate":6,"deep":{"x":null}},"b":null}`)},
		{Reported: mustJSON(t, `{"connectivity":{"type":"cellular","deep":{"y":2}}}`)},
		{Tags: mustJSON(t, `{"z":1}`), Desired: mustJSON(t, `{"z":1}`), Replace: true},
		{ClearTags: true, ClearDesired: true},
		{Configurations: map[string]string{"c1": "", "c2": "applied"}},
	}
	for i, u := range updates {
		c := orig.CloneShallow()
		c.Device.ConnectionState = StateConnected
		c.IdentityVersion = 4
		c.SetETags()
		if err := c.Twin.Apply(u, Time{now.Add(time.Second)}); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if c.Twin.Version == orig.Twin.Version {
			t.Errorf("update %d did not change the copy", i)
		}
		after, err := json.Marshal(orig)
		if err != nil {
			t.Fatal(err)
		}
		if string(after) != string(before) {
			t.Fatalf("update %d of the shallow copy changed the original:\nbefore %s\nafter  %s", i, before, after)
		}
	}
}
