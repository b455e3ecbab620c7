package wire

import (
	"encoding/binary"
	"math"
	"time"
	"unicode/utf8"
)

// Limits of the decoder, against input made to exhaust the hub: values
// nest at most maxDepth deep (performatives and message sections need 3
// or 4), and an array of elements that take no bytes each (null, true,
// false, uint0, ulong0, list0) holds at most maxEmptyElements of them.
// Any other count is bounded by the bytes the input really has.
const (
	maxDepth         = 32
	maxEmptyElements = 1 << 16
)

// Decoder reads AMQP values from a byte slice.
type Decoder struct {
	b     []byte
	i     int
	depth int
}

// NewDecoder reads b from its start.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Pos is the offset of the next byte to read; Rest the bytes after it
// (the payload that follows a transfer's performative).
func (d *Decoder) Pos() int     { return d.i }
func (d *Decoder) Rest() []byte { return d.b[d.i:] }
func (d *Decoder) Done() bool   { return d.i >= len(d.b) }
func (d *Decoder) left() int    { return len(d.b) - d.i }

// Decode reads one value from the start of b and says how many bytes it
// took.
func Decode(b []byte) (v any, n int, err error) {
	d := Decoder{b: b}
	v, err = d.Value()
	return v, d.i, err
}

func (d *Decoder) take(n int) ([]byte, error) {
	if n < 0 || n > d.left() {
		return nil, malformed("%d bytes needed at offset %d, %d left", n, d.i, d.left())
	}
	b := d.b[d.i : d.i+n]
	d.i += n
	return b, nil
}

func (d *Decoder) byte() (byte, error) {
	b, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *Decoder) uint32() (uint32, error) {
	b, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

// enter goes one level deeper into nested values, refusing past
// maxDepth; leave comes back out. (Not a closure returned by enter: that
// was an allocation for every list and described value of every frame.)
func (d *Decoder) enter() error {
	if d.depth >= maxDepth {
		return malformed("values nest deeper than %d", maxDepth)
	}
	d.depth++
	return nil
}

func (d *Decoder) leave() { d.depth-- }

// Value reads the next value, described or not.
func (d *Decoder) Value() (any, error) {
	code, err := d.byte()
	if err != nil {
		return nil, err
	}
	if code == codeDescribed {
		if err := d.enter(); err != nil {
			return nil, err
		}
		defer d.leave()
		desc, err := d.Value()
		if err != nil {
			return nil, err
		}
		v, err := d.Value()
		if err != nil {
			return nil, err
		}
		return Described{Descriptor: desc, Value: v}, nil
	}
	return d.valueOf(code)
}

// valueOf reads the data of a value whose constructor is code.
func (d *Decoder) valueOf(code byte) (any, error) {
	switch code {
	case codeNull:
		return nil, nil
	case codeTrue:
		return true, nil
	case codeFalse:
		return false, nil
	case codeUint0:
		return uint32(0), nil
	case codeUlong0:
		return uint64(0), nil
	case codeList0:
		return List{}, nil
	}
	switch code {
	case codeList8, codeList32, codeMap8, codeMap32, codeArray8, codeArray32:
		if err := d.enter(); err != nil {
			return nil, err
		}
		defer d.leave()
		return d.compound(code)
	}
	width := fixedWidth(code)
	if width < 0 {
		return d.variable(code)
	}
	b, err := d.take(width)
	if err != nil {
		return nil, err
	}
	return fixedValue(code, b)
}

// fixedWidth is the size of the data of a fixed-width constructor, or -1.
func fixedWidth(code byte) int {
	switch code {
	case codeNull, codeTrue, codeFalse, codeUint0, codeUlong0, codeList0:
		return 0
	case codeUbyte, codeByte, codeSmallUint, codeSmallUlong, codeSmallInt, codeSmallLong, codeBool:
		return 1
	case codeUshort, codeShort:
		return 2
	case codeUint, codeInt, codeFloat, codeChar, codeDecimal32:
		return 4
	case codeUlong, codeLong, codeDouble, codeTimestamp, codeDecimal64:
		return 8
	case codeDecimal128, codeUUID:
		return 16
	}
	return -1
}

// fixedValue is the value of the data b of a fixed-width constructor
// (those of no data are valueOf's).
func fixedValue(code byte, b []byte) (any, error) {
	switch code {
	case codeUbyte:
		return b[0], nil
	case codeByte:
		return int8(b[0]), nil
	case codeSmallUint:
		return uint32(b[0]), nil
	case codeSmallUlong:
		return uint64(b[0]), nil
	case codeSmallInt:
		return int32(int8(b[0])), nil
	case codeSmallLong:
		return int64(int8(b[0])), nil
	case codeBool:
		switch b[0] {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
		return nil, malformed("boolean byte %#x", b[0])
	case codeUshort:
		return binary.BigEndian.Uint16(b), nil
	case codeShort:
		return int16(binary.BigEndian.Uint16(b)), nil
	case codeUint:
		return binary.BigEndian.Uint32(b), nil
	case codeInt:
		return int32(binary.BigEndian.Uint32(b)), nil
	case codeFloat:
		return math.Float32frombits(binary.BigEndian.Uint32(b)), nil
	case codeChar:
		r := rune(binary.BigEndian.Uint32(b))
		if !utf8.ValidRune(r) {
			return nil, malformed("char %#x is not a code point", uint32(r))
		}
		return Char(r), nil
	case codeDecimal32:
		return Decimal32(b), nil
	case codeUlong:
		return binary.BigEndian.Uint64(b), nil
	case codeLong:
		return int64(binary.BigEndian.Uint64(b)), nil
	case codeDouble:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case codeTimestamp:
		return toTime(int64(binary.BigEndian.Uint64(b))), nil
	case codeDecimal64:
		return Decimal64(b), nil
	case codeDecimal128:
		return Decimal128(b), nil
	case codeUUID:
		return UUID(b), nil
	}
	return nil, malformed("no fixed-width type has code %#x", code)
}

// variable reads binary, string and symbol data.
func (d *Decoder) variable(code byte) (any, error) {
	b, err := d.variableBytes(code)
	if err != nil {
		return nil, err
	}
	switch code {
	case codeVbin8, codeVbin32:
		v := make([]byte, len(b)) // empty, not nil: binary is never null
		copy(v, b)
		return v, nil
	case codeStr8, codeStr32:
		return string(b), nil
	}
	return Symbol(b), nil
}

// variableBytes reads the data of a binary, string or symbol whose
// constructor is code, checked (strings UTF-8, symbols ASCII), in place.
func (d *Decoder) variableBytes(code byte) ([]byte, error) {
	var n int
	switch code {
	case codeVbin8, codeStr8, codeSym8:
		b, err := d.byte()
		if err != nil {
			return nil, err
		}
		n = int(b)
	case codeVbin32, codeStr32, codeSym32:
		u, err := d.uint32()
		if err != nil {
			return nil, err
		}
		if int64(u) > int64(d.left()) {
			return nil, malformed("%d bytes announced at offset %d, %d left", u, d.i, d.left())
		}
		n = int(u)
	default:
		return nil, malformed("unknown type code %#x", code)
	}
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	switch code {
	case codeStr8, codeStr32:
		if !utf8.Valid(b) {
			return nil, malformed("string is not UTF-8")
		}
	case codeSym8, codeSym32:
		for _, c := range b {
			if c >= 0x80 {
				return nil, malformed("symbol is not ASCII")
			}
		}
	}
	return b, nil
}

// compound reads a list, map or array: its size and count, then its
// elements, which must fill the size exactly.
func (d *Decoder) compound(code byte) (any, error) {
	sub, count, err := d.compoundBody(code)
	if err != nil {
		return nil, err
	}
	var v any
	switch code {
	case codeList8, codeList32:
		v, err = sub.list(count)
	case codeMap8, codeMap32:
		v, err = sub.mapOf(count)
	default:
		v, err = sub.array(count)
	}
	if err != nil {
		return nil, err
	}
	return v, sub.end()
}

// end says whether a compound value's elements, read by d, filled its
// size exactly.
func (d *Decoder) end() error {
	if !d.Done() {
		return malformed("%d bytes left over in a compound value", d.left())
	}
	return nil
}

// fieldList reads the size and count of a list whose constructor is
// code (list8 or list32), for its fields to be read one by one from sub.
func (d *Decoder) fieldList(code byte) (sub Decoder, count int, err error) {
	sub, count, err = d.compoundBody(code)
	if err == nil && count > sub.left() { // every element takes at least its constructor
		err = malformed("list of %d elements in %d bytes", count, sub.left())
	}
	return sub, count, err
}

// compoundBody reads the size and count of a list, map or array whose
// constructor is code, and gives a decoder of its elements.
func (d *Decoder) compoundBody(code byte) (sub Decoder, count int, err error) {
	var size int
	var head int // the bytes of the count, part of the size
	switch code {
	case codeList8, codeMap8, codeArray8:
		s, err := d.byte()
		if err != nil {
			return Decoder{}, 0, err
		}
		size, head = int(s), 1
	default:
		s, err := d.uint32()
		if err != nil {
			return Decoder{}, 0, err
		}
		if int64(s) > int64(d.left()) {
			return Decoder{}, 0, malformed("%d bytes announced at offset %d, %d left", s, d.i, d.left())
		}
		size, head = int(s), 4
	}
	if size < head || size > d.left() {
		return Decoder{}, 0, malformed("compound size %d at offset %d, %d left", size, d.i, d.left())
	}
	body := d.b[d.i+head : d.i+size]
	if head == 1 {
		count = int(d.b[d.i])
	} else {
		count = int(binary.BigEndian.Uint32(d.b[d.i:]))
	}
	d.i += size
	return Decoder{b: body, depth: d.depth}, count, nil
}

func (d *Decoder) list(count int) (List, error) {
	if count > d.left() { // every element takes at least its constructor
		return nil, malformed("list of %d elements in %d bytes", count, d.left())
	}
	l := make(List, 0, count)
	for range count {
		v, err := d.Value()
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	return l, nil
}

func (d *Decoder) mapOf(count int) (Map, error) {
	if count%2 != 0 {
		return nil, malformed("map of %d elements, an odd number", count)
	}
	if count > d.left() {
		return nil, malformed("map of %d elements in %d bytes", count, d.left())
	}
	m := make(Map, 0, count/2)
	for range count / 2 {
		k, err := d.Value()
		if err != nil {
			return nil, err
		}
		v, err := d.Value()
		if err != nil {
			return nil, err
		}
		m = append(m, MapEntry{k, v})
	}
	return m, nil
}

// array reads count elements that share one constructor (described
// arrays keep their descriptor in each element's Described).
func (d *Decoder) array(count int) (Array, error) {
	if count == 0 && d.Done() {
		return Array{}, nil // no constructor: tolerated for empty arrays
	}
	code, err := d.byte()
	if err != nil {
		return nil, err
	}
	var desc any
	described := code == codeDescribed
	if described {
		if desc, err = d.Value(); err != nil {
			return nil, err
		}
		if code, err = d.byte(); err != nil {
			return nil, err
		}
		if code == codeDescribed {
			return nil, malformed("array element constructor described twice")
		}
	}
	if fixedWidth(code) == 0 {
		if count > maxEmptyElements {
			return nil, malformed("array of %d empty elements", count)
		}
	} else if count > d.left() {
		return nil, malformed("array of %d elements in %d bytes", count, d.left())
	}
	a := make(Array, 0, count)
	for range count {
		v, err := d.valueOf(code)
		if err != nil {
			return nil, err
		}
		if described {
			v = Described{Descriptor: desc, Value: v}
		}
		a = append(a, v)
	}
	return a, nil
}

// Typed field readers: each reads field i of list name (a performative
// or message section) when it is null or of the type the field takes,
// without boxing it in an interface as Value does, and reads anything
// else as Value would, to refuse it as malformed (or malformed anyway).
// DecodeMessage and DecodeTransfer read the frames of every device
// message with them.

// variableField reads a binary, string or symbol of one of codes, its
// checked bytes in place; nil for null.
func (d *Decoder) variableField(name string, i int, want string, codes ...byte) ([]byte, error) {
	if !d.Done() {
		c := d.b[d.i]
		if c == codeNull {
			d.i++
			return nil, nil
		}
		for _, code := range codes {
			if c != code {
				continue
			}
			d.i++
			v, err := d.variableBytes(c)
			if err == nil && v == nil {
				v = []byte{} // present and empty
			}
			return v, err
		}
	}
	return nil, d.notA(name, i, want)
}

// timestampField reads a timestamp; the zero time for null.
func (d *Decoder) timestampField(name string, i int) (time.Time, error) {
	if !d.Done() {
		switch d.b[d.i] {
		case codeNull:
			d.i++
			return time.Time{}, nil
		case codeTimestamp:
			d.i++
			b, err := d.take(8)
			if err != nil {
				return time.Time{}, err
			}
			return toTime(int64(binary.BigEndian.Uint64(b))), nil
		}
	}
	return time.Time{}, d.notA(name, i, "timestamp")
}

// uintField reads a uint; present is false for null.
func (d *Decoder) uintField(name string, i int) (v uint32, present bool, err error) {
	if !d.Done() {
		switch d.b[d.i] {
		case codeNull:
			d.i++
			return 0, false, nil
		case codeUint0:
			d.i++
			return 0, true, nil
		case codeSmallUint:
			d.i++
			b, err := d.take(1)
			if err != nil {
				return 0, false, err
			}
			return uint32(b[0]), true, nil
		case codeUint:
			d.i++
			b, err := d.take(4)
			if err != nil {
				return 0, false, err
			}
			return binary.BigEndian.Uint32(b), true, nil
		}
	}
	return 0, false, d.notA(name, i, "uint")
}

// boolField reads a boolean; present is false for null.
func (d *Decoder) boolField(name string, i int) (v, present bool, err error) {
	if !d.Done() {
		switch d.b[d.i] {
		case codeNull:
			d.i++
			return false, false, nil
		case codeTrue, codeFalse:
			d.i++
			return d.b[d.i-1] == codeTrue, true, nil
		case codeBool:
			if d.i+1 < len(d.b) && d.b[d.i+1] <= 1 {
				d.i += 2
				return d.b[d.i-1] == 1, true, nil
			}
		}
	}
	return false, false, d.notA(name, i, "boolean")
}

// notA reads the next value, which is not of the type field i of name
// takes: the error says what it is, or why it is not even a value.
func (d *Decoder) notA(name string, i int, want string) error {
	v, err := d.Value()
	if err != nil {
		return err
	}
	return malformed("%s field %d is a %T, not a %s", name, i, v, want)
}
