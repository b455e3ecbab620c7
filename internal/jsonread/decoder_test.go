package jsonread

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzValue: whatever Value and ValueNumber read, encoding/json reads
// too, to the same value (into an any, numbers as float64 or, with
// UseNumber, as json.Number); the fast reader may leave input to
// encoding/json, never read it differently.
func FuzzValue(f *testing.F) {
	for _, s := range []string{
		`{"bench":{"seq":123456,"temp":42,"pad":"xxxx"}}`,
		`{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00\n"],"a":{}}`,
		` [ {} , [] , "" , 0 ] `, `"\ud800"`, `1e400`, `-0`, `01`, `{"x":1}}`, `[1,]`,
		`{"k\"ey":"v\\/"}`, strings.Repeat("[", 70) + strings.Repeat("]", 70), "\"\x01\"", `nul`, `"\u00"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(data)
		if v, ok := d.ValueNumber(); ok && d.End() {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			var want any
			if err := dec.Decode(&want); err != nil || dec.More() {
				t.Fatalf("%q: read as %#v; encoding/json: %v", data, v, err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("%q: read as %#v; encoding/json reads %#v", data, v, want)
			}
		}
		d = NewDecoder(data)
		if v, ok := d.Value(); ok && d.End() {
			var want any
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("%q: read as %#v; encoding/json: %v", data, v, err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("%q: read as %#v; encoding/json reads %#v", data, v, want)
			}
		}
	})
}

// TestValueNumber: numbers keep their text, and nesting deeper than
// maxDepth is left to encoding/json.
func TestValueNumber(t *testing.T) {
	d := NewDecoder([]byte(`{"n":9007199254740993,"f":1.50}`))
	v, ok := d.ValueNumber()
	if want := map[string]any{"n": json.Number("9007199254740993"), "f": json.Number("1.50")}; !ok || !reflect.DeepEqual(v, want) {
		t.Errorf("read %#v, %v; want %#v", v, ok, want)
	}
	deep := []byte(strings.Repeat(`{"a":`, maxDepth+2) + "1" + strings.Repeat("}", maxDepth+2))
	d = NewDecoder(deep)
	if _, ok := d.ValueNumber(); ok {
		t.Errorf("read %d levels, deeper than maxDepth (%d)", maxDepth+2, maxDepth)
	}
	shallow := []byte(strings.Repeat(`[`, maxDepth) + strings.Repeat("]", maxDepth))
	d = NewDecoder(shallow)
	if _, ok := d.ValueNumber(); !ok || !d.End() {
		t.Errorf("did not read %d levels", maxDepth)
	}
}

// BenchmarkDecodePatch reads a reported patch of the bench's
// ("reported", 256 bytes) with ValueNumber and with encoding/json as
// the domain did before.
func BenchmarkDecodePatch(b *testing.B) {
	body := []byte(`{"bench":{"seq":123456,"temp":42,"pad":"` + strings.Repeat("x", 190) + `"}}`)
	b.Run("jsonread", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := NewDecoder(body)
			if _, ok := d.ValueNumber(); !ok || !d.End() {
				b.Fatal("not read")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
