package twinhub

import (
	"encoding/json"
	"testing"
)

// FuzzTwinUpdate feeds arbitrary bodies to the twin PATCH/PUT decoder and
// applies what it accepts: nothing may panic, an accepted update must keep
// the twin within every limit, and only size limits may refuse it then.
func FuzzTwinUpdate(f *testing.F) {
	for _, seed := range []string{
		`{"tags":{"location":{"region":"US","plant":"Redmond43"}},"properties":{"desired":{"power_level":1}}}`,
		`{"properties":{"desired":{"a":null,"b":{"c":[1,2,{"d":true}]}}}}`,
		`{"tags":{"n":4503599627370496}}`,
		`{"tags":{"a.b":1}}`,
		`{"properties":{"desired":{"$metadata":{},"$version":3,"x":"y"},"reported":{"r":1}}}`,
		`{"tags":[]}`,
		`null`,
		`{"tags":{"k":"\ud800"}}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, replace bool) {
		tw := NewTwin(Now())
		u, err := ParseTwinUpdate(body, replace)
		if err != nil {
			if AsError(err).Status != 400 {
				t.Fatalf("a refused body must be a 400: %v", err)
			}
			return
		}
		if err := tw.Apply(u, Now()); err != nil {
			if AsError(err).Status != 403 {
				t.Fatalf("only size limits may refuse a parsed update: %v", err)
			}
			return
		}
		if twinSize(tw.Tags) > MaxTagsSize || twinSize(tw.Desired.Values) > MaxDesiredSize {
			t.Fatalf("an accepted update broke a size limit")
		}
		if _, err := json.Marshal(tw.Desired.Wire(true)); err != nil {
			t.Fatalf("the result does not marshal: %v", err)
		}
	})
}

// FuzzReportedPatch does the same for a device's reported patch.
func FuzzReportedPatch(f *testing.F) {
	for _, seed := range []string{`{"connectivity":"cellular"}`, `{"a":{"b":null}}`, `[1]`, `{"$x":1}`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tw := NewTwin(Now())
		p, err := ParsePatch("reported", body)
		if err != nil {
			return
		}
		if err := tw.UpdateReported(p, Now()); err == nil && twinSize(tw.Reported.Values) > MaxReportedSize {
			t.Fatal("an accepted patch broke the size limit")
		}
	})
}
