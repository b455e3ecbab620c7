package jsonread

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Decoder reads JSON from b at i, without reflection: several times
// faster than encoding/json into an any or a struct. Its methods return
// false when the input is not what they handle (nor valid JSON, nor a
// form encoding/json would read differently, nor nested deeper than
// maxDepth); the caller then gives up on the fast way and asks
// encoding/json. recordjson reads stored records with it, the query
// index reads them straight into its own layout (Fields, Object and the
// value readers), and the domain reads patches with it (ValueNumber).
type Decoder struct {
	b []byte
	i int
}

// NewDecoder reads data from its start.
func NewDecoder(data []byte) Decoder { return Decoder{b: data} }

// Pos is the offset of the next byte to read.
func (d *Decoder) Pos() int { return d.i }

// SetPos moves back (or on) to offset i, to read a value again.
func (d *Decoder) SetPos(i int) { d.i = i }

// Since returns the bytes read from offset at to the position.
func (d *Decoder) Since(at int) []byte { return d.b[at:d.i] }

// Rest returns the bytes not read yet.
func (d *Decoder) Rest() []byte { return d.b[d.i:] }

func (d *Decoder) SkipSpace() {
	if d.i < len(d.b) && d.b[d.i] > ' ' {
		return // encoding/json writes no white space
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// Peek returns the next byte that is not white space, or 0 at the end.
func (d *Decoder) Peek() byte {
	d.SkipSpace()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *Decoder) End() bool {
	d.SkipSpace()
	return d.i == len(d.b)
}

// Null consumes a Null if one comes next.
func (d *Decoder) Null() bool {
	if d.Peek() == 'n' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// Object reads an Object, calling member for each key with the decoder
// at the value, which member must consume. Repeated keys are refused:
// encoding/json merges them into structs in ways not worth copying.
func (d *Decoder) Object(member func(key []byte) bool) bool {
	if d.Peek() != '{' {
		return false
	}
	d.i++
	if d.Peek() == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.key()
		if !ok || d.Peek() != ':' {
			return false
		}
		d.i++
		if !member(key) {
			return false
		}
		switch d.Peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// Fields reads the object of a struct: member is called with the index
// of the key in names; unknown and repeated keys are refused.
func (d *Decoder) Fields(names []string, member func(int) bool) bool {
	var seen uint64
	return d.Object(func(key []byte) bool {
		for k, n := range names {
			if string(key) == n {
				if seen&(1<<k) != 0 {
					return false
				}
				seen |= 1 << k
				return member(k)
			}
		}
		return false
	})
}

// key reads a member name: the bytes of the input when it has no escapes.
func (d *Decoder) key() ([]byte, bool) {
	save := d.i
	if k, ok := d.RawString(); ok {
		return k, true
	}
	d.i = save
	s, ok := d.String()
	return []byte(s), ok
}

// RawString reads a string without escapes, valid UTF-8, and returns its
// bytes within the input.
func (d *Decoder) RawString() ([]byte, bool) {
	if d.Peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	var high byte
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		high |= c
		switch {
		case c == '"':
			d.i = j + 1
			s := d.b[start:j]
			return s, high < utf8.RuneSelf || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// String reads a String, escapes included.
func (d *Decoder) String() (string, bool) {
	save := d.i
	if s, ok := d.RawString(); ok {
		return string(s), true
	}
	d.i = save
	if d.Peek() != '"' {
		return "", false
	}
	d.i++
	var out []byte
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", false
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// Only a proper pair; encoding/json's handling of the
				// rest is left to it.
				if d.i+1 >= len(d.b) || d.b[d.i] != '\\' || d.b[d.i+1] != 'u' {
					return "", false
				}
				d.i += 2
				r2, ok := d.hex4()
				if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
					return "", false
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (d *Decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

// Number reads a Number in JSON's grammar and returns its text.
func (d *Decoder) Number() ([]byte, bool) {
	d.SkipSpace()
	b, i := d.b, d.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	d.i = i
	return b[start:i], true
}

func (d *Decoder) Int64(v *int64) bool {
	s, ok := d.Number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	*v = n
	return err == nil
}

// Int reads a Number that is an int.
func (d *Decoder) Int(v *int) bool {
	var n int64
	if !d.Int64(&n) || n != int64(int(n)) {
		return false
	}
	*v = int(n)
	return true
}

func (d *Decoder) Bool(v *bool) bool {
	switch {
	case d.Peek() == 't' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "true":
		*v = true
		d.i += 4
	case d.Peek() == 'f' && d.i+5 <= len(d.b) && string(d.b[d.i:d.i+5]) == "false":
		*v = false
		d.i += 5
	default:
		return false
	}
	return true
}

// Str reads a string field; null leaves it as it is, as in encoding/json.
func (d *Decoder) Str(v *string) bool {
	if d.Null() {
		return true
	}
	s, ok := d.String()
	*v = s
	return ok
}

// OptStr reads an optional string field: null makes it nil.
func (d *Decoder) OptStr(v **string) bool {
	if d.Null() {
		*v = nil
		return true
	}
	s, ok := d.String()
	*v = &s
	return ok
}

// Strings reads an array of strings; null makes it nil, as in
// encoding/json.
func (d *Decoder) Strings(v *[]string) bool {
	if d.Null() {
		*v = nil
		return true
	}
	if d.Peek() != '[' {
		return false
	}
	d.i++
	a := []string{}
	if d.Peek() == ']' {
		d.i++
		*v = a
		return true
	}
	for {
		s, ok := d.String()
		if !ok {
			return false
		}
		a = append(a, s)
		switch d.Peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			*v = a
			return true
		default:
			return false
		}
	}
}

// Value reads any JSON Value as encoding/json decodes it into an any
// (numbers as float64).
func (d *Decoder) Value() (any, bool) { return d.value(false, 0) }

// ValueNumber reads any JSON Value as encoding/json decodes it into an
// any with UseNumber: numbers as json.Number, their text, so that an
// integer can be range-checked before it becomes a float64.
func (d *Decoder) ValueNumber() (any, bool) { return d.value(true, 0) }

// maxDepth bounds the nesting Value reads (encoding/json's is 10000):
// twins nest at most 10 deep, and deeper input is left to encoding/json
// rather than to this reader's recursion.
const maxDepth = 64

func (d *Decoder) value(numbers bool, depth int) (any, bool) {
	if depth > maxDepth {
		return nil, false
	}
	switch c := d.Peek(); {
	case c == '{':
		return d.objectValue(numbers, depth)
	case c == '[':
		d.i++
		a := []any{}
		if d.Peek() == ']' {
			d.i++
			return a, true
		}
		for {
			v, ok := d.value(numbers, depth+1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			switch d.Peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return a, true
			default:
				return nil, false
			}
		}
	case c == '"':
		return d.String()
	case c == 't' || c == 'f':
		var b bool
		return b, d.Bool(&b)
	case c == 'n':
		return nil, d.Null()
	}
	s, ok := d.Number()
	if !ok {
		return nil, false
	}
	if numbers {
		return json.Number(s), true
	}
	f, err := strconv.ParseFloat(string(s), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

func (d *Decoder) objectValue(numbers bool, depth int) (map[string]any, bool) {
	m := map[string]any{}
	ok := d.Object(func(key []byte) bool {
		v, ok := d.value(numbers, depth+1)
		m[string(key)] = v
		return ok
	})
	return m, ok
}

// Map reads a map[string]any field (numbers as float64): null makes it
// nil.
func (d *Decoder) Map(v *map[string]any) bool {
	if d.Null() {
		*v = nil
		return true
	}
	m, ok := d.objectValue(false, 0)
	*v = m
	return ok
}

// StringMap reads an object of strings into a new map at *v, or null as
// nil.
func (d *Decoder) StringMap(v *map[string]string) bool {
	if d.Null() {
		*v = nil
		return true
	}
	m := map[string]string{}
	*v = m
	return d.Object(func(key []byte) bool {
		if _, repeated := m[string(key)]; repeated {
			return false
		}
		var s string
		if !d.Str(&s) {
			return false
		}
		m[string(key)] = s
		return true
	})
}
