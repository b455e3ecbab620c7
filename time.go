package twinhub

import (
	"bytes"
	"time"
)

// timeLayout is how IoT Hub writes instants: UTC with seven fractional
// digits (.NET's tick precision). The SDKs of every language parse it.
const timeLayout = "2006-01-02T15:04:05.0000000Z"

// zeroTime is how IoT Hub writes an instant that never happened, such as
// the last activity of a device that never connected.
const zeroTime = "0001-01-01T00:00:00Z"

// Time is an instant that marshals the way IoT Hub writes it.
type Time struct{ time.Time }

// Now returns the current instant at IoT Hub's precision (100 ns).
func Now() Time { return Time{time.Now().UTC().Truncate(100 * time.Nanosecond)} }

// String formats t as IoT Hub does (see AppendTo).
func (t Time) String() string {
	var buf [32]byte
	return string(t.AppendTo(buf[:0]))
}

// AppendTo appends t in timeLayout (zeroTime for the zero instant) by its
// own formatting, several times faster than time.Format, which interprets
// the layout on every call: the record codec writes every instant of a
// twin with it.
func (t Time) AppendTo(b []byte) []byte {
	if t.IsZero() {
		return append(b, zeroTime...)
	}
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return u.AppendFormat(b, timeLayout)
	}
	hour, minute, sec := u.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, u.Nanosecond()/100, 7)
	return append(b, 'Z')
}

// appendDigits appends the n last decimal digits of v >= 0, zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	var buf [8]byte
	for i := n - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:n]...)
}

func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.String() + `"`), nil
}

func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	return t.Time.UnmarshalJSON(b)
}
