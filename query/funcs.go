package query

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// function is a built-in scalar function. Fixed-arity functions take their
// arguments as values (up to three, n of them given) so that a call
// allocates nothing; variadic ones (CONCAT) take a slice.
type function struct {
	name     string
	min, max int // max -1: no limit
	f        func(a, b, c Value, n int) Value
	fv       func(args []Value) Value
}

func (f *function) arity() string {
	switch {
	case f.min == f.max && f.min == 1:
		return "1 argument"
	case f.min == f.max:
		return strconv.Itoa(f.min) + " arguments"
	case f.max < 0:
		return "at least " + strconv.Itoa(f.min) + " arguments"
	}
	return strconv.Itoa(f.min) + " to " + strconv.Itoa(f.max) + " arguments"
}

var aggregates = map[string]AggKind{
	"COUNT": AggCount, "SUM": AggSum, "AVG": AggAvg, "MIN": AggMin, "MAX": AggMax,
}

var functions = map[string]*function{}

func def(name string, min, max int, f func(a, b, c Value, n int) Value, aliases ...string) {
	fn := &function{name: name, min: min, max: max, f: f}
	functions[name] = fn
	for _, a := range aliases {
		functions[a] = fn
	}
}

func typeCheck(k Kind) func(a, b, c Value, n int) Value {
	return func(a, _, _ Value, _ int) Value { return boolValue(a.Kind == k) }
}

func math1(op func(float64) float64) func(a, b, c Value, n int) Value {
	return func(a, _, _ Value, _ int) Value {
		if a.Kind != Number {
			return undefined
		}
		return numValue(op(a.Num))
	}
}

func str2(op func(s, t string) bool) func(a, b, c Value, n int) Value {
	return func(a, b, _ Value, _ int) Value {
		if a.Kind != String || b.Kind != String {
			return undefined
		}
		return boolValue(op(a.Str, b.Str))
	}
}

func init() {
	def("IS_DEFINED", 1, 1, func(a, _, _ Value, _ int) Value { return boolValue(a.Kind != Undefined) })
	def("IS_NULL", 1, 1, typeCheck(Null))
	def("IS_BOOL", 1, 1, typeCheck(Bool), "IS_BOOLEAN")
	def("IS_NUMBER", 1, 1, typeCheck(Number))
	def("IS_STRING", 1, 1, typeCheck(String))
	def("IS_OBJECT", 1, 1, typeCheck(Object))
	def("IS_ARRAY", 1, 1, typeCheck(Array))
	def("IS_PRIMITIVE", 1, 1, func(a, _, _ Value, _ int) Value { return boolValue(a.isPrimitive()) })
	def("AS_NUMBER", 1, 1, asNumber)

	def("STARTS_WITH", 2, 2, str2(strings.HasPrefix), "STARTSWITH")
	def("ENDS_WITH", 2, 2, str2(strings.HasSuffix), "ENDSWITH")
	def("CONTAINS", 2, 2, str2(strings.Contains))
	def("LENGTH", 1, 1, func(a, _, _ Value, _ int) Value {
		if a.Kind != String {
			return undefined
		}
		return numValue(float64(utf8.RuneCountInString(a.Str)))
	})
	def("LOWER", 1, 1, func(a, _, _ Value, _ int) Value {
		if a.Kind != String {
			return undefined
		}
		return strValue(strings.ToLower(a.Str))
	})
	def("UPPER", 1, 1, func(a, _, _ Value, _ int) Value {
		if a.Kind != String {
			return undefined
		}
		return strValue(strings.ToUpper(a.Str))
	})
	def("SUBSTRING", 2, 3, substring)
	def("INDEX_OF", 2, 2, indexOf)
	def("ARRAY_CONTAINS", 2, 3, arrayContains)
	functions["CONCAT"] = &function{name: "CONCAT", min: 2, max: -1, fv: concat}

	def("ABS", 1, 1, math1(math.Abs))
	def("CEILING", 1, 1, math1(math.Ceil))
	def("FLOOR", 1, 1, math1(math.Floor))
	def("EXP", 1, 1, math1(math.Exp))
	def("SQRT", 1, 1, math1(math.Sqrt))
	def("SQUARE", 1, 1, math1(func(x float64) float64 { return x * x }))
	def("SIGN", 1, 1, math1(func(x float64) float64 {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	}))
	def("POWER", 2, 2, func(a, b, _ Value, _ int) Value {
		if a.Kind != Number || b.Kind != Number {
			return undefined
		}
		return numValue(math.Pow(a.Num, b.Num))
	})
}

// asNumber converts a string holding a decimal number to that number; a
// number stays as it is; anything else is Undefined.
func asNumber(a, _, _ Value, _ int) Value {
	switch a.Kind {
	case Number:
		return a
	case String:
		s := strings.TrimSpace(a.Str)
		// Only decimal notation: ParseFloat would also take "Inf", "NaN",
		// hexadecimal floats and underscores.
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(isDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
				return undefined
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return undefined
		}
		return numValue(f)
	}
	return undefined
}

// runeOffset returns the byte offset of the k-th character of s (len(s)
// when s is shorter).
func runeOffset(s string, k int) int {
	for i := range s {
		if k == 0 {
			return i
		}
		k--
	}
	return len(s)
}

// substring is SUBSTRING(s, start[, length]), counting characters from 0.
// A start past the end gives ""; a negative start counts as 0; fractions
// are truncated.
func substring(a, b, c Value, n int) Value {
	if a.Kind != String || b.Kind != Number || n == 3 && c.Kind != Number {
		return undefined
	}
	start := clampInt(b.Num)
	if start < 0 {
		start = 0
	}
	i := runeOffset(a.Str, start)
	if n == 2 {
		return strValue(a.Str[i:])
	}
	length := clampInt(c.Num)
	if length <= 0 {
		return strValue("")
	}
	j := i + runeOffset(a.Str[i:], length)
	return strValue(a.Str[i:j])
}

func clampInt(f float64) int {
	switch {
	case f > math.MaxInt32:
		return math.MaxInt32
	case f < math.MinInt32:
		return math.MinInt32
	}
	return int(f)
}

// indexOf is INDEX_OF(s, fragment): the character position of the first
// occurrence, or -1.
func indexOf(a, b, _ Value, _ int) Value {
	if a.Kind != String || b.Kind != String {
		return undefined
	}
	i := strings.Index(a.Str, b.Str)
	if i < 0 {
		return numValue(-1)
	}
	return numValue(float64(utf8.RuneCountInString(a.Str[:i])))
}

// arrayContains is ARRAY_CONTAINS(array, value[, partial]): whether an
// element is deep-equal to value or, with partial true and an object value,
// whether an element object has all of value's members.
func arrayContains(a, b, c Value, n int) Value {
	if a.Kind != Array || b.Kind == Undefined {
		return undefined
	}
	want, _ := b.Any()
	partial := n == 3 && c.IsTrue()
	for _, x := range a.Array() {
		if partial && partialMatch(x, want) || !partial && deepEqual(x, want) {
			return trueValue
		}
	}
	return falseVal
}

// concat is CONCAT(s1, s2, ...): Undefined unless all arguments are strings.
func concat(args []Value) Value {
	n := 0
	for _, a := range args {
		if a.Kind != String {
			return undefined
		}
		n += len(a.Str)
	}
	var b strings.Builder
	b.Grow(n)
	for _, a := range args {
		b.WriteString(a.Str)
	}
	return strValue(b.String())
}
