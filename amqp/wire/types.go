// Package wire is the AMQP 1.0 wire format that twinhub's AMQP endpoint
// speaks: the type system (OASIS AMQP 1.0, part 1) and frames (part 2).
//
// It is written here because no Go AMQP 1.0 server library exists:
// github.com/Azure/go-amqp is a client whose type and frame codec are
// internal to it, and Qpid Proton's Go binding needs cgo. Tests check this
// codec against go-amqp's exported message encoding, and fuzz the
// decoder: it reads what any peer sends, so it must refuse malformed
// input with an error, never panic, and never allocate more than the
// input can justify.
//
// Decoded values are plain Go values: nil, bool, the sized integers
// (uint8 ... uint64, int8 ... int64), float32, float64, Char, time.Time
// (timestamps, UTC, millisecond precision), UUID, []byte (binary), string,
// Symbol, List, Map, Array, Described and the decimals (kept as their
// bytes). The encoder takes the same values.
package wire

import (
	"errors"
	"fmt"
	"time"
)

// Symbol is an AMQP symbol: an ASCII name such as "amqp:not-found".
type Symbol string

// UUID is an AMQP uuid, in network byte order.
type UUID [16]byte

// Char is an AMQP char, a Unicode code point.
type Char rune

// Decimal32, Decimal64 and Decimal128 are IEEE 754 decimals, kept as
// their encoding: nothing in IoT Hub's use of AMQP computes with them.
type (
	Decimal32  [4]byte
	Decimal64  [8]byte
	Decimal128 [16]byte
)

// List is an AMQP list: a sequence of values of any types.
type List []any

// Map is an AMQP map, its entries in wire order. Keys may be of any type
// (message annotations use symbols, application properties strings).
type Map []MapEntry

// MapEntry is one key and value of a Map.
type MapEntry struct {
	Key, Value any
}

// Get returns the value of the first entry whose key equals key (keys
// compared as Go values: a Symbol key is not a string key).
func (m Map) Get(key any) (any, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// Array is an AMQP array: values of one type, encoded with one
// constructor. Decoding gives the values; encoding needs them all of one
// of the Go types Append takes in arrays (Symbol, string, bool, the sized
// integers, UUID, time.Time).
type Array []any

// Described is a value with a descriptor: performatives, message sections
// and errors are described lists whose descriptor is a ulong code (or the
// symbol of its name).
type Described struct {
	Descriptor any
	Value      any
}

// ErrMalformed is the error of input that is not AMQP; the endpoint
// answers it with amqp:decode-error and closes the connection.
var ErrMalformed = errors.New("amqp: malformed input")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Format codes of part 1, section 1.6.
const (
	codeDescribed = 0x00

	codeNull       = 0x40
	codeTrue       = 0x41
	codeFalse      = 0x42
	codeUint0      = 0x43
	codeUlong0     = 0x44
	codeList0      = 0x45
	codeUbyte      = 0x50
	codeByte       = 0x51
	codeSmallUint  = 0x52
	codeSmallUlong = 0x53
	codeSmallInt   = 0x54
	codeSmallLong  = 0x55
	codeBool       = 0x56
	codeUshort     = 0x60
	codeShort      = 0x61
	codeUint       = 0x70
	codeInt        = 0x71
	codeFloat      = 0x72
	codeChar       = 0x73
	codeDecimal32  = 0x74
	codeUlong      = 0x80
	codeLong       = 0x81
	codeDouble     = 0x82
	codeTimestamp  = 0x83
	codeDecimal64  = 0x84
	codeDecimal128 = 0x94
	codeUUID       = 0x98
	codeVbin8      = 0xa0
	codeStr8       = 0xa1
	codeSym8       = 0xa3
	codeVbin32     = 0xb0
	codeStr32      = 0xb1
	codeSym32      = 0xb3
	codeList8      = 0xc0
	codeMap8       = 0xc1
	codeList32     = 0xd0
	codeMap32      = 0xd1
	codeArray8     = 0xe0
	codeArray32    = 0xf0
)

// toTime is an AMQP timestamp (milliseconds since the Unix epoch) as a
// time.Time in UTC.
func toTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
