package twinhub

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeRecord decodes a record from the JSON that encoding/json makes of
// it, as the store keeps it, into what json.Unmarshal would give, about
// three times faster. The index's start-up reads records with the same
// decoder (indexjson.go), and falls back on this for the records it does
// not flatten directly. Anything it does not expect (an unknown or
// repeated field, a key in another case, a string that is not valid UTF-8,
// a number in an odd form, malformed JSON) makes it leave the work to
// json.Unmarshal, errors included.
func decodeRecord(data []byte) (*Record, error) {
	if r, ok := decodeRecordFast(data); ok {
		return r, nil
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func decodeRecordFast(data []byte) (*Record, bool) {
	var r Record
	d := jsonDecoder{b: data}
	return &r, d.record(&r) && d.end()
}

// jsonDecoder reads JSON from b at i. Its methods return false when the
// input is not what they handle; the caller then gives up on the fast way.
type jsonDecoder struct {
	b []byte
	i int
}

func (d *jsonDecoder) ws() {
	if d.i < len(d.b) && d.b[d.i] > ' ' {
		return // encoding/json writes no white space
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next byte that is not white space, or 0 at the end.
func (d *jsonDecoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jsonDecoder) end() bool {
	d.ws()
	return d.i == len(d.b)
}

// null consumes a null if one comes next.
func (d *jsonDecoder) null() bool {
	if d.peek() == 'n' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// object reads an object, calling member for each key with the decoder
// at the value, which member must consume. Repeated keys are refused:
// encoding/json merges them into structs in ways not worth copying.
func (d *jsonDecoder) object(member func(key []byte) bool) bool {
	if d.peek() != '{' {
		return false
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.key()
		if !ok || d.peek() != ':' {
			return false
		}
		d.i++
		if !member(key) {
			return false
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// fields reads the object of a struct: member is called with the index
// of the key in names; unknown and repeated keys are refused.
func (d *jsonDecoder) fields(names []string, member func(int) bool) bool {
	var seen uint64
	return d.object(func(key []byte) bool {
		for k, n := range names {
			if string(key) == n {
				if seen&(1<<k) != 0 {
					return false
				}
				seen |= 1 << k
				return member(k)
			}
		}
		return false
	})
}

// key reads a member name: the bytes of the input when it has no escapes.
func (d *jsonDecoder) key() ([]byte, bool) {
	save := d.i
	if k, ok := d.rawString(); ok {
		return k, true
	}
	d.i = save
	s, ok := d.string()
	return []byte(s), ok
}

// rawString reads a string without escapes, valid UTF-8, and returns its
// bytes within the input.
func (d *jsonDecoder) rawString() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	var high byte
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		high |= c
		switch {
		case c == '"':
			d.i = j + 1
			s := d.b[start:j]
			return s, high < utf8.RuneSelf || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// string reads a string, escapes included.
func (d *jsonDecoder) string() (string, bool) {
	save := d.i
	if s, ok := d.rawString(); ok {
		return string(s), true
	}
	d.i = save
	if d.peek() != '"' {
		return "", false
	}
	d.i++
	var out []byte
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", false
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// Only a proper pair; encoding/json's handling of the
				// rest is left to it.
				if d.i+1 >= len(d.b) || d.b[d.i] != '\\' || d.b[d.i+1] != 'u' {
					return "", false
				}
				d.i += 2
				r2, ok := d.hex4()
				if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
					return "", false
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

// number reads a number in JSON's grammar and returns its text.
func (d *jsonDecoder) number() ([]byte, bool) {
	d.ws()
	b, i := d.b, d.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	d.i = i
	return b[start:i], true
}

func (d *jsonDecoder) int64(v *int64) bool {
	s, ok := d.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	*v = n
	return err == nil
}

func (d *jsonDecoder) int(v *int) bool {
	var n int64
	if !d.int64(&n) || n != int64(int(n)) {
		return false
	}
	*v = int(n)
	return true
}

func (d *jsonDecoder) bool(v *bool) bool {
	switch {
	case d.peek() == 't' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "true":
		*v = true
		d.i += 4
	case d.peek() == 'f' && d.i+5 <= len(d.b) && string(d.b[d.i:d.i+5]) == "false":
		*v = false
		d.i += 5
	default:
		return false
	}
	return true
}

// str reads a string field; null leaves it as it is, as in encoding/json.
func (d *jsonDecoder) str(v *string) bool {
	if d.null() {
		return true
	}
	s, ok := d.string()
	*v = s
	return ok
}

func (d *jsonDecoder) optStr(v **string) bool {
	if d.null() {
		*v = nil
		return true
	}
	s, ok := d.string()
	*v = &s
	return ok
}

// time reads an instant as Time.UnmarshalJSON would: the usual form
// (UTC, up to nine fractional digits) here, others through it.
func (d *jsonDecoder) time(t *Time) bool {
	if d.null() {
		t.Time = time.Time{}
		return true
	}
	start := d.peek()
	at := d.i
	s, ok := d.rawString()
	if !ok || start != '"' {
		return false
	}
	if v, ok := parseUTC(s); ok {
		t.Time = v
		return true
	}
	return t.UnmarshalJSON(d.b[at:d.i]) == nil
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

// value reads any JSON value as encoding/json decodes it into an any.
func (d *jsonDecoder) value() (any, bool) {
	switch c := d.peek(); {
	case c == '{':
		return d.objectValue()
	case c == '[':
		d.i++
		a := []any{}
		if d.peek() == ']' {
			d.i++
			return a, true
		}
		for {
			v, ok := d.value()
			if !ok {
				return nil, false
			}
			a = append(a, v)
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return a, true
			default:
				return nil, false
			}
		}
	case c == '"':
		return d.string()
	case c == 't' || c == 'f':
		var b bool
		return b, d.bool(&b)
	case c == 'n':
		return nil, d.null()
	}
	s, ok := d.number()
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

func (d *jsonDecoder) objectValue() (map[string]any, bool) {
	m := map[string]any{}
	ok := d.object(func(key []byte) bool {
		v, ok := d.value()
		m[string(key)] = v
		return ok
	})
	return m, ok
}

// jsonMap reads a map[string]any field: null makes it nil.
func (d *jsonDecoder) jsonMap(v *map[string]any) bool {
	if d.null() {
		*v = nil
		return true
	}
	m, ok := d.objectValue()
	*v = m
	return ok
}

// The JSON names of the fields of the record's types, in the order of
// the cases below; TestDecodeRecordKnowsEveryField keeps them complete.
var (
	recordFields     = []string{"device", "module", "identityVersion", "twin"}
	deviceFields     = []string{"deviceId", "generationId", "etag", "connectionState", "status", "statusReason", "connectionStateUpdatedTime", "statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication", "capabilities"}
	moduleFields     = []string{"moduleId", "deviceId", "managedBy", "generationId", "etag", "connectionState", "connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication"}
	authFields       = []string{"type", "symmetricKey", "x509Thumbprint"}
	keyFields        = []string{"primaryKey", "secondaryKey"}
	thumbFields      = []string{"primaryThumbprint", "secondaryThumbprint"}
	capabilityFields = []string{"iotEdge"}
	twinFields       = []string{"version", "tags", "desired", "reported", "modelId"}
	propertiesFields = []string{"values", "version", "metadata"}
	metadataFields   = []string{"t", "v", "c"}
)

func (d *jsonDecoder) record(r *Record) bool {
	return d.fields(recordFields, func(k int) bool {
		switch k {
		case 0:
			if d.null() {
				r.Device = nil
				return true
			}
			r.Device = &Device{}
			return d.device(r.Device)
		case 1:
			if d.null() {
				r.Module = nil
				return true
			}
			r.Module = &Module{}
			return d.module(r.Module)
		case 2:
			return d.null() || d.int64(&r.IdentityVersion)
		}
		return d.null() || d.twin(&r.Twin)
	})
}

func (d *jsonDecoder) device(v *Device) bool {
	return d.fields(deviceFields, func(k int) bool {
		switch k {
		case 0:
			return d.str(&v.DeviceID)
		case 1:
			return d.str(&v.GenerationID)
		case 2:
			return d.str(&v.ETag)
		case 3:
			return d.str(&v.ConnectionState)
		case 4:
			return d.str(&v.Status)
		case 5:
			return d.optStr(&v.StatusReason)
		case 6:
			return d.time(&v.ConnectionStateUpdatedTime)
		case 7:
			return d.time(&v.StatusUpdatedTime)
		case 8:
			return d.time(&v.LastActivityTime)
		case 9:
			return d.null() || d.int(&v.CloudToDeviceMessageCount)
		case 10:
			return d.null() || d.auth(&v.Authentication)
		}
		return d.null() || d.fields(capabilityFields, func(int) bool {
			return d.null() || d.bool(&v.Capabilities.IoTEdge)
		})
	})
}

func (d *jsonDecoder) module(v *Module) bool {
	return d.fields(moduleFields, func(k int) bool {
		switch k {
		case 0:
			return d.str(&v.ModuleID)
		case 1:
			return d.str(&v.DeviceID)
		case 2:
			return d.str(&v.ManagedBy)
		case 3:
			return d.str(&v.GenerationID)
		case 4:
			return d.str(&v.ETag)
		case 5:
			return d.str(&v.ConnectionState)
		case 6:
			return d.time(&v.ConnectionStateUpdatedTime)
		case 7:
			return d.time(&v.LastActivityTime)
		case 8:
			return d.null() || d.int(&v.CloudToDeviceMessageCount)
		}
		return d.null() || d.auth(&v.Authentication)
	})
}

func (d *jsonDecoder) auth(a *Authentication) bool {
	return d.fields(authFields, func(k int) bool {
		switch k {
		case 0:
			return d.str(&a.Type)
		case 1:
			return d.null() || d.fields(keyFields, func(k int) bool {
				if k == 0 {
					return d.str(&a.SymmetricKey.PrimaryKey)
				}
				return d.str(&a.SymmetricKey.SecondaryKey)
			})
		}
		return d.null() || d.fields(thumbFields, func(k int) bool {
			if k == 0 {
				return d.optStr(&a.X509Thumbprint.PrimaryThumbprint)
			}
			return d.optStr(&a.X509Thumbprint.SecondaryThumbprint)
		})
	})
}

func (d *jsonDecoder) twin(t *Twin) bool {
	return d.fields(twinFields, func(k int) bool {
		switch k {
		case 0:
			return d.null() || d.int64(&t.Version)
		case 1:
			return d.jsonMap(&t.Tags)
		case 2:
			return d.null() || d.properties(&t.Desired)
		case 3:
			return d.null() || d.properties(&t.Reported)
		}
		return d.str(&t.ModelID)
	})
}

func (d *jsonDecoder) properties(p *Properties) bool {
	return d.fields(propertiesFields, func(k int) bool {
		switch k {
		case 0:
			return d.jsonMap(&p.Values)
		case 1:
			return d.null() || d.int64(&p.Version)
		}
		return d.metadataPtr(&p.Metadata)
	})
}

func (d *jsonDecoder) metadataPtr(m **Metadata) bool {
	if d.null() {
		*m = nil
		return true
	}
	*m = &Metadata{}
	return d.metadata(*m)
}

func (d *jsonDecoder) metadata(m *Metadata) bool {
	return d.fields(metadataFields, func(k int) bool {
		switch k {
		case 0:
			return d.time(&m.LastUpdated)
		case 1:
			return d.null() || d.int64(&m.LastUpdatedVersion)
		}
		if d.null() {
			m.Children = nil
			return true
		}
		m.Children = map[string]*Metadata{}
		return d.object(func(key []byte) bool {
			var c *Metadata
			ok := d.metadataPtr(&c)
			m.Children[string(key)] = c
			return ok
		})
	})
}
