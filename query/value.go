package query

import (
	"encoding/json"
	"math"
	"strings"
)

// Kind is the JSON type of a Value, plus Undefined for a property that does
// not exist (or an expression that has no value, such as 1 + 'a').
type Kind uint8

// The kinds, in the order MIN and MAX rank values of different types.
const (
	Undefined Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

var kindNames = [...]string{"undefined", "null", "boolean", "number", "string", "array", "object"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// Value is the result of evaluating an expression. It is a small struct
// passed by value so that evaluation allocates nothing for primitives: a
// property read from a document only classifies the interface value it finds.
// Arrays and objects keep a reference to the document's own []any or
// map[string]any.
type Value struct {
	Kind Kind
	Bool bool
	Num  float64
	Str  string
	ref  any // []any for Array, map[string]any for Object
}

var (
	undefined = Value{}
	nullValue = Value{Kind: Null}
	trueValue = Value{Kind: Bool, Bool: true}
	falseVal  = Value{Kind: Bool}
)

func boolValue(b bool) Value {
	if b {
		return trueValue
	}
	return falseVal
}

func numValue(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// JSON has no NaN or infinity; the result of such arithmetic has
		// no value, like 1/0.
		return undefined
	}
	return Value{Kind: Number, Num: f}
}

func strValue(s string) Value { return Value{Kind: String, Str: s} }

// ValueOf classifies a JSON value as decoded by encoding/json (float64,
// string, bool, nil, []any, map[string]any). A few other Go numeric types
// are accepted for the convenience of callers that build documents by hand;
// anything else is Undefined.
func ValueOf(x any) Value {
	switch t := x.(type) {
	case string:
		return Value{Kind: String, Str: t}
	case float64:
		return Value{Kind: Number, Num: t}
	case map[string]any:
		return Value{Kind: Object, ref: t}
	case bool:
		return boolValue(t)
	case nil:
		return nullValue
	case []any:
		return Value{Kind: Array, ref: t}
	case int:
		return Value{Kind: Number, Num: float64(t)}
	case int64:
		return Value{Kind: Number, Num: float64(t)}
	case int32:
		return Value{Kind: Number, Num: float64(t)}
	case uint64:
		return Value{Kind: Number, Num: float64(t)}
	case float32:
		return Value{Kind: Number, Num: float64(t)}
	case json.Number:
		if f, err := t.Float64(); err == nil {
			return Value{Kind: Number, Num: f}
		}
	}
	return undefined
}

// Any returns the value as encoding/json would decode it; ok is false for
// Undefined. Arrays and objects are the documents' own, not copies.
func (v Value) Any() (x any, ok bool) {
	switch v.Kind {
	case Null:
		return nil, true
	case Bool:
		return v.Bool, true
	case Number:
		return v.Num, true
	case String:
		return v.Str, true
	case Array, Object:
		return v.ref, true
	}
	return nil, false
}

// Array returns the elements of an Array value, or nil.
func (v Value) Array() []any {
	a, _ := v.ref.([]any)
	return a
}

// Object returns the members of an Object value, or nil.
func (v Value) Object() map[string]any {
	m, _ := v.ref.(map[string]any)
	return m
}

// IsDefined reports whether v has a value (null included).
func (v Value) IsDefined() bool { return v.Kind != Undefined }

// IsTrue reports whether v is the Boolean true: the only value that lets a
// condition pass.
func (v Value) IsTrue() bool { return v.Kind == Bool && v.Bool }

func (v Value) isPrimitive() bool { return v.Kind >= Null && v.Kind <= String }

// String formats v for error messages and tests.
func (v Value) String() string {
	if v.Kind == Undefined {
		return "undefined"
	}
	x, _ := v.Any()
	b, err := json.Marshal(x)
	if err != nil {
		return v.Kind.String()
	}
	return string(b)
}

// equal implements = between two values. The result is Undefined when
// either side is Undefined, or when either side is an array or object (IoT
// Hub compares primitives only). Primitives of different types are not equal.
func equal(a, b Value) Value {
	if a.Kind == Undefined || b.Kind == Undefined {
		return undefined
	}
	if !a.isPrimitive() || !b.isPrimitive() {
		return undefined
	}
	if a.Kind != b.Kind {
		return falseVal
	}
	switch a.Kind {
	case Null:
		return trueValue
	case Bool:
		return boolValue(a.Bool == b.Bool)
	case Number:
		return boolValue(a.Num == b.Num)
	default:
		return boolValue(a.Str == b.Str)
	}
}

// notEqual implements != and <>: the negation of equal, Undefined staying
// Undefined.
func notEqual(a, b Value) Value {
	r := equal(a, b)
	if r.Kind == Bool {
		r.Bool = !r.Bool
	}
	return r
}

// order compares two values for < <= > >=. ok is false (the comparison is
// Undefined) unless both are numbers, both strings or both Booleans. Strings
// compare by bytes, which for UTF-8 is Unicode code point order.
func order(a, b Value) (c int, ok bool) {
	if a.Kind != b.Kind {
		return 0, false
	}
	switch a.Kind {
	case Number:
		switch {
		case a.Num < b.Num:
			return -1, true
		case a.Num > b.Num:
			return 1, true
		}
		return 0, true
	case String:
		return strings.Compare(a.Str, b.Str), true
	case Bool:
		switch {
		case a.Bool == b.Bool:
			return 0, true
		case !a.Bool:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

// rank is a total order over defined primitive values of any type, used by
// MIN and MAX: null < false < true < numbers < strings.
func rank(a, b Value) int {
	if a.Kind != b.Kind {
		if a.Kind < b.Kind {
			return -1
		}
		return 1
	}
	c, _ := order(a, b)
	return c
}

// deepEqual compares any two JSON values structurally; ARRAY_CONTAINS uses it.
func deepEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !deepEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !deepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	va, vb := ValueOf(a), ValueOf(b)
	if va.Kind == Undefined || vb.Kind == Undefined || va.Kind != vb.Kind {
		return false
	}
	return equal(va, vb).IsTrue()
}

// partialMatch reports whether every member of pattern is deep-equal to the
// same member of x (ARRAY_CONTAINS with its third argument true).
func partialMatch(x, pattern any) bool {
	p, ok := pattern.(map[string]any)
	if !ok {
		return deepEqual(x, pattern)
	}
	m, ok := x.(map[string]any)
	if !ok {
		return false
	}
	for k, v := range p {
		w, ok := m[k]
		if !ok || !deepEqual(w, v) {
			return false
		}
	}
	return true
}
