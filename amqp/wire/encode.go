package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"time"
)

// Append appends the encoding of v to b, in the smallest form the type
// system allows (uint0, smalluint, str8, list8 ...), as peers must accept
// any form. v is one of the Go values the package decodes to (see the
// package comment); an unsigned or signed int is encoded as a ulong or a
// long.
func Append(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, codeNull), nil
	case bool:
		return appendBool(b, x), nil
	case uint8:
		return append(b, codeUbyte, x), nil
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, codeUshort), x), nil
	case uint32:
		return appendUint(b, x), nil
	case uint64:
		return appendUlong(b, x), nil
	case uint:
		return appendUlong(b, uint64(x)), nil
	case int8:
		return append(b, codeByte, byte(x)), nil
	case int16:
		return binary.BigEndian.AppendUint16(append(b, codeShort), uint16(x)), nil
	case int32:
		if x >= -128 && x <= 127 {
			return append(b, codeSmallInt, byte(int8(x))), nil
		}
		return binary.BigEndian.AppendUint32(append(b, codeInt), uint32(x)), nil
	case int64:
		return appendLong(b, x), nil
	case int:
		return appendLong(b, int64(x)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, codeFloat), math.Float32bits(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, codeDouble), math.Float64bits(x)), nil
	case Char:
		return binary.BigEndian.AppendUint32(append(b, codeChar), uint32(x)), nil
	case time.Time:
		return binary.BigEndian.AppendUint64(append(b, codeTimestamp), uint64(x.UnixMilli())), nil
	case UUID:
		return append(append(b, codeUUID), x[:]...), nil
	case Decimal32:
		return append(append(b, codeDecimal32), x[:]...), nil
	case Decimal64:
		return append(append(b, codeDecimal64), x[:]...), nil
	case Decimal128:
		return append(append(b, codeDecimal128), x[:]...), nil
	case []byte:
		return appendVariable(b, codeVbin8, codeVbin32, x), nil
	case string:
		return appendVariable(b, codeStr8, codeStr32, []byte(x)), nil
	case Symbol:
		return appendVariable(b, codeSym8, codeSym32, []byte(x)), nil
	case Described:
		b = append(b, codeDescribed)
		b, err := Append(b, x.Descriptor)
		if err != nil {
			return nil, err
		}
		return Append(b, x.Value)
	case List:
		if len(x) == 0 {
			return append(b, codeList0), nil
		}
		return appendCompound(b, codeList8, codeList32, len(x), func(b []byte) ([]byte, error) {
			var err error
			for _, e := range x {
				if b, err = Append(b, e); err != nil {
					return nil, err
				}
			}
			return b, nil
		})
	case Map:
		return appendCompound(b, codeMap8, codeMap32, 2*len(x), func(b []byte) ([]byte, error) {
			var err error
			for _, e := range x {
				if b, err = Append(b, e.Key); err != nil {
					return nil, err
				}
				if b, err = Append(b, e.Value); err != nil {
					return nil, err
				}
			}
			return b, nil
		})
	case Array:
		return appendArray(b, x)
	}
	return nil, fmt.Errorf("amqp: no AMQP encoding for %T", v)
}

func appendUint(b []byte, x uint32) []byte {
	switch {
	case x == 0:
		return append(b, codeUint0)
	case x < 256:
		return append(b, codeSmallUint, byte(x))
	}
	return binary.BigEndian.AppendUint32(append(b, codeUint), x)
}

func appendBool(b []byte, x bool) []byte {
	if x {
		return append(b, codeTrue)
	}
	return append(b, codeFalse)
}

func appendUlong(b []byte, x uint64) []byte {
	switch {
	case x == 0:
		return append(b, codeUlong0)
	case x < 256:
		return append(b, codeSmallUlong, byte(x))
	}
	return binary.BigEndian.AppendUint64(append(b, codeUlong), x)
}

func appendLong(b []byte, x int64) []byte {
	if x >= -128 && x <= 127 {
		return append(b, codeSmallLong, byte(int8(x)))
	}
	return binary.BigEndian.AppendUint64(append(b, codeLong), uint64(x))
}

func appendVariable(b []byte, code8, code32 byte, data []byte) []byte {
	if len(data) < 256 {
		b = append(b, code8, byte(len(data)))
	} else {
		b = binary.BigEndian.AppendUint32(append(b, code32), uint32(len(data)))
	}
	return append(b, data...)
}

// appendCompound writes a list, map or array: the elements first, in the
// 8-bit form, then the 32-bit one if they did not fit.
func appendCompound(b []byte, code8, code32 byte, count int, elements func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(b)
	b = append(b, code8, 0, byte(count))
	b, err := elements(b)
	if err != nil {
		return nil, err
	}
	size := len(b) - start - 2 // the count byte and the elements
	if size < 256 && count < 256 {
		b[start+1] = byte(size)
		return b, nil
	}
	// Move the elements 6 bytes on to make room for 32-bit size and count.
	elems := len(b) - start - 3
	b = append(b, make([]byte, 6)...)
	copy(b[start+9:], b[start+3:start+3+elems])
	b[start] = code32
	binary.BigEndian.PutUint32(b[start+1:], uint32(elems+4))
	binary.BigEndian.PutUint32(b[start+5:], uint32(count))
	return b, nil
}

// appendArray writes an array of values of one Go type, each with the
// data of that type's one constructor.
func appendArray(b []byte, a Array) ([]byte, error) {
	if len(a) == 0 {
		return append(b, codeArray8, 2, 0, codeNull), nil
	}
	var code byte
	var data func(b []byte, v any) []byte
	switch first := a[0].(type) {
	case Symbol, string:
		code = codeSym32
		if _, ok := first.(string); ok {
			code = codeStr32
		}
		data = func(b []byte, v any) []byte {
			var s string
			switch x := v.(type) {
			case Symbol:
				s = string(x)
			case string:
				s = x
			}
			return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
		}
	case bool:
		code = codeBool
		data = func(b []byte, v any) []byte {
			if v.(bool) {
				return append(b, 1)
			}
			return append(b, 0)
		}
	case uint32:
		code = codeUint
		data = func(b []byte, v any) []byte { return binary.BigEndian.AppendUint32(b, v.(uint32)) }
	case uint64:
		code = codeUlong
		data = func(b []byte, v any) []byte { return binary.BigEndian.AppendUint64(b, v.(uint64)) }
	case int32:
		code = codeInt
		data = func(b []byte, v any) []byte { return binary.BigEndian.AppendUint32(b, uint32(v.(int32))) }
	case int64:
		code = codeLong
		data = func(b []byte, v any) []byte { return binary.BigEndian.AppendUint64(b, uint64(v.(int64))) }
	case UUID:
		code = codeUUID
		data = func(b []byte, v any) []byte { u := v.(UUID); return append(b, u[:]...) }
	case time.Time:
		code = codeTimestamp
		data = func(b []byte, v any) []byte {
			return binary.BigEndian.AppendUint64(b, uint64(v.(time.Time).UnixMilli()))
		}
	default:
		return nil, fmt.Errorf("amqp: no AMQP array of %T", first)
	}
	for _, v := range a {
		if reflect.TypeOf(v) != reflect.TypeOf(a[0]) {
			return nil, fmt.Errorf("amqp: an array holds %T and %T", a[0], v)
		}
	}
	return appendCompound(b, codeArray8, codeArray32, len(a), func(b []byte) ([]byte, error) {
		b = append(b, code)
		for _, v := range a {
			b = data(b, v)
		}
		return b, nil
	})
}
