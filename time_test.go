package twinhub

import (
	"math/rand/v2"
	"testing"
	"time"
)

// formatReference is how IoT Hub writes an instant, by time.Format.
func formatReference(tm time.Time) string {
	if tm.IsZero() {
		return zeroTime
	}
	return tm.UTC().Format(timeLayout)
}

func TestTimeAppendTo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	check := func(tm time.Time) {
		t.Helper()
		if got, want := string(Time{tm}.AppendTo(nil)), formatReference(tm); got != want {
			t.Fatalf("AppendTo(%v) = %s, want %s", tm, got, want)
		}
	}
	check(time.Time{})
	for _, y := range []int{-1, 0, 1, 9, 999, 1000, 1969, 2026, 9999, 10000} {
		check(time.Date(y, 12, 31, 23, 59, 59, 999_999_999, time.UTC))
		check(time.Date(y, 1, 1, 0, 0, 0, 0, time.FixedZone("x", -7200)))
	}
	for range 10000 {
		check(time.Unix(r.Int64N(300_000_000_000)-62_000_000_000, r.Int64N(1_000_000_000)))
	}
}
