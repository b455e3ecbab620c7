package recordjson

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/twinhub/twinhub"
)

// jsonEncoder appends JSON to b as encoding/json writes it (HTML-safe
// strings, sorted map keys, ES6 numbers). ok turns false on a value it
// does not handle.
type jsonEncoder struct {
	b  []byte
	ok bool
	// noHTML leaves <, > and & as they are, as an Encoder with
	// SetEscapeHTML(false) does.
	noHTML bool
}

func (e *jsonEncoder) field(name string, first bool) {
	if !first {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// time writes Time as its MarshalJSON does.
func (e *jsonEncoder) time(t twinhub.Time) {
	e.b = append(e.b, '"')
	e.b = t.AppendTo(e.b)
	e.b = append(e.b, '"')
}

func (e *jsonEncoder) optString(s *string) {
	if s == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.string(*s)
}

// strings writes a parentScopes list as twinhub.Scopes marshals it: []
// when nil.
func (e *jsonEncoder) strings(a []string) { writeArray(e, a, e.string) }

// writeArray writes the elements of a between brackets, each by value
// (null for a nil slice is the caller's choice: strings writes []).
func writeArray[V any](e *jsonEncoder, a []V, value func(V)) {
	e.b = append(e.b, '[')
	for i, v := range a {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		value(v)
	}
	e.b = append(e.b, ']')
}

func (e *jsonEncoder) object(m map[string]any) { writeObject(e, m, e.value) }

// writeObject writes m as encoding/json does (keys sorted; null when
// nil), each value by value.
func writeObject[V any](e *jsonEncoder, m map[string]V, value func(V)) {
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.string(k)
		e.b = append(e.b, ':')
		value(m[k])
	}
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) value(v any) {
	switch x := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case bool:
		e.b = strconv.AppendBool(e.b, x)
	case string:
		e.string(x)
	case float64:
		e.float(x)
	case int:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int64:
		e.b = strconv.AppendInt(e.b, x, 10)
	case map[string]any:
		e.object(x)
	case []any:
		if x == nil {
			e.b = append(e.b, "null"...)
			return
		}
		writeArray(e, x, e.value)
	default:
		e.ok = false
	}
}

// float writes a number as encoding/json does (ES6 number to string).
func (e *jsonEncoder) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.ok = false // json.Marshal's error
		return
	}
	abs := math.Abs(f)
	if abs < 1<<53 && f == math.Trunc(f) && (f != 0 || !math.Signbit(f)) {
		// An integer, as most twin numbers are: its digits, which is what
		// AppendFloat's shortest form gives below 2^53 (every integer
		// there is a float64, so no shorter digits round-trip), at a
		// fraction of its cost (5% of the hub's CPU in a bulk load of
		// twins with numeric tags).
		e.b = strconv.AppendInt(e.b, int64(f), 10)
		return
	}
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		n := len(e.b)
		if n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

const hexDigits = "0123456789abcdef"

// string writes s as encoding/json does with HTML escaping.
func (e *jsonEncoder) string(s string) {
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (e.noHTML || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			e.b = append(e.b, s[start:i]...)
			switch c {
			case '\\', '"':
				e.b = append(e.b, '\\', c)
			case '\b':
				e.b = append(e.b, '\\', 'b')
			case '\f':
				e.b = append(e.b, '\\', 'f')
			case '\n':
				e.b = append(e.b, '\\', 'n')
			case '\r':
				e.b = append(e.b, '\\', 'r')
			case '\t':
				e.b = append(e.b, '\\', 't')
			default:
				e.b = append(e.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}
