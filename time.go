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

// String formats t as IoT Hub does.
func (t Time) String() string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(timeLayout)
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
