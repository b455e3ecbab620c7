package recordjson

import (
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/jsonread"
)

// Decoder is jsonread's, with the readers of the record's own types
// (Time here; Device, Module and the record's schema in record.go).
type Decoder struct{ jsonread.Decoder }

// NewDecoder reads data from its start.
func NewDecoder(data []byte) Decoder { return Decoder{jsonread.NewDecoder(data)} }

// Time reads an instant as Time.UnmarshalJSON would: the usual form
// (UTC, up to nine fractional digits) here, others through it.
func (d *Decoder) Time(t *twinhub.Time) bool {
	if d.Null() {
		t.Time = time.Time{}
		return true
	}
	start := d.Peek()
	at := d.Pos()
	s, ok := d.RawString()
	if !ok || start != '"' {
		return false
	}
	if v, ok := parseUTC(s); ok {
		t.Time = v
		return true
	}
	return t.UnmarshalJSON(d.Since(at)) == nil
}

// parseUTC parses YYYY-MM-DDTHH:MM:SS[.fraction]Z, refusing what
// time.Parse would refuse or read differently.
func parseUTC(s []byte) (time.Time, bool) {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(b []byte) int {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(s[0:4]), num(s[5:7]), num(s[8:10])
	hour, min, sec := num(s[11:13]), num(s[14:16]), num(s[17:19])
	nsec := 0
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		if nsec = num(frac[1:]); nsec < 0 {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // February 30th and the like
	}
	return t, true
}
