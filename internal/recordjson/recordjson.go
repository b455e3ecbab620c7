package recordjson

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/twinhub/twinhub"
)

// Decode decodes a record as a Store keeps it, the JSON that
// encoding/json makes of it, with the result json.Unmarshal would give but
// about three times faster. Stores and the index's start-up read records
// with it, so that records are read one way everywhere; the index reads
// most of them with the same Decoder straight into its own layout
// (index/watch.go), and falls back on Decode for the rest. Anything it
// does not expect (an unknown or repeated field, a key in another case, a
// string that is not valid UTF-8, a number in an odd form, malformed JSON)
// makes it leave the work to json.Unmarshal, errors included.
func Decode(data []byte) (*twinhub.Record, error) {
	if r, ok := decodeRecordFast(data); ok {
		return r, nil
	}
	var r twinhub.Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func decodeRecordFast(data []byte) (*twinhub.Record, bool) {
	var r twinhub.Record
	d := Decoder{b: data}
	return &r, d.record(&r) && d.End()
}

// Decoder reads JSON from b at i. Its methods return false when the
// input is not what they handle; the caller then gives up on the fast way.
// The query index reads stored records with it too, straight into its
// own layout (Fields, Object and the value readers), without building a
// Record first.
type Decoder struct {
	b []byte
	i int
}

// NewDecoder reads data from its start.
func NewDecoder(data []byte) Decoder { return Decoder{b: data} }

// Pos is the offset of the next byte to read.
func (d *Decoder) Pos() int { return d.i }

// SetPos moves back (or on) to offset i, to read a value again.
func (d *Decoder) SetPos(i int) { d.i = i }

// Since returns the bytes read from offset at to the position.
func (d *Decoder) Since(at int) []byte { return d.b[at:d.i] }

// Rest returns the bytes not read yet.
func (d *Decoder) Rest() []byte { return d.b[d.i:] }

func (d *Decoder) SkipSpace() {
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

// Peek returns the next byte that is not white space, or 0 at the end.
func (d *Decoder) Peek() byte {
	d.SkipSpace()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *Decoder) End() bool {
	d.SkipSpace()
	return d.i == len(d.b)
}

// Null consumes a Null if one comes next.
func (d *Decoder) Null() bool {
	if d.Peek() == 'n' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// Object reads an Object, calling member for each key with the decoder
// at the value, which member must consume. Repeated keys are refused:
// encoding/json merges them into structs in ways not worth copying.
func (d *Decoder) Object(member func(key []byte) bool) bool {
	if d.Peek() != '{' {
		return false
	}
	d.i++
	if d.Peek() == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.key()
		if !ok || d.Peek() != ':' {
			return false
		}
		d.i++
		if !member(key) {
			return false
		}
		switch d.Peek() {
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

// Fields reads the object of a struct: member is called with the index
// of the key in names; unknown and repeated keys are refused.
func (d *Decoder) Fields(names []string, member func(int) bool) bool {
	var seen uint64
	return d.Object(func(key []byte) bool {
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
func (d *Decoder) key() ([]byte, bool) {
	save := d.i
	if k, ok := d.RawString(); ok {
		return k, true
	}
	d.i = save
	s, ok := d.String()
	return []byte(s), ok
}

// RawString reads a string without escapes, valid UTF-8, and returns its
// bytes within the input.
func (d *Decoder) RawString() ([]byte, bool) {
	if d.Peek() != '"' {
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

// String reads a String, escapes included.
func (d *Decoder) String() (string, bool) {
	save := d.i
	if s, ok := d.RawString(); ok {
		return string(s), true
	}
	d.i = save
	if d.Peek() != '"' {
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

func (d *Decoder) hex4() (rune, bool) {
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

// Number reads a Number in JSON's grammar and returns its text.
func (d *Decoder) Number() ([]byte, bool) {
	d.SkipSpace()
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

func (d *Decoder) Int64(v *int64) bool {
	s, ok := d.Number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	*v = n
	return err == nil
}

func (d *Decoder) int(v *int) bool {
	var n int64
	if !d.Int64(&n) || n != int64(int(n)) {
		return false
	}
	*v = int(n)
	return true
}

func (d *Decoder) Bool(v *bool) bool {
	switch {
	case d.Peek() == 't' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "true":
		*v = true
		d.i += 4
	case d.Peek() == 'f' && d.i+5 <= len(d.b) && string(d.b[d.i:d.i+5]) == "false":
		*v = false
		d.i += 5
	default:
		return false
	}
	return true
}

// Str reads a string field; null leaves it as it is, as in encoding/json.
func (d *Decoder) Str(v *string) bool {
	if d.Null() {
		return true
	}
	s, ok := d.String()
	*v = s
	return ok
}

func (d *Decoder) optStr(v **string) bool {
	if d.Null() {
		*v = nil
		return true
	}
	s, ok := d.String()
	*v = &s
	return ok
}

// Time reads an instant as Time.UnmarshalJSON would: the usual form
// (UTC, up to nine fractional digits) here, others through it.
func (d *Decoder) Time(t *twinhub.Time) bool {
	if d.Null() {
		t.Time = time.Time{}
		return true
	}
	start := d.Peek()
	at := d.i
	s, ok := d.RawString()
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

// Value reads any JSON Value as encoding/json decodes it into an any.
func (d *Decoder) Value() (any, bool) {
	switch c := d.Peek(); {
	case c == '{':
		return d.objectValue()
	case c == '[':
		d.i++
		a := []any{}
		if d.Peek() == ']' {
			d.i++
			return a, true
		}
		for {
			v, ok := d.Value()
			if !ok {
				return nil, false
			}
			a = append(a, v)
			switch d.Peek() {
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
		return d.String()
	case c == 't' || c == 'f':
		var b bool
		return b, d.Bool(&b)
	case c == 'n':
		return nil, d.Null()
	}
	s, ok := d.Number()
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

func (d *Decoder) objectValue() (map[string]any, bool) {
	m := map[string]any{}
	ok := d.Object(func(key []byte) bool {
		v, ok := d.Value()
		m[string(key)] = v
		return ok
	})
	return m, ok
}

// jsonMap reads a map[string]any field: null makes it nil.
func (d *Decoder) jsonMap(v *map[string]any) bool {
	if d.Null() {
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
	RecordFields     = []string{"device", "module", "identityVersion", "twin"}
	deviceFields     = []string{"deviceId", "generationId", "etag", "connectionState", "status", "statusReason", "connectionStateUpdatedTime", "statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication", "capabilities"}
	moduleFields     = []string{"moduleId", "deviceId", "managedBy", "generationId", "etag", "connectionState", "connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication"}
	authFields       = []string{"type", "symmetricKey", "x509Thumbprint"}
	keyFields        = []string{"primaryKey", "secondaryKey"}
	thumbFields      = []string{"primaryThumbprint", "secondaryThumbprint"}
	capabilityFields = []string{"iotEdge"}
	TwinFields       = []string{"version", "tags", "desired", "reported", "modelId"}
	PropertiesFields = []string{"values", "version", "metadata"}
	MetadataFields   = []string{"t", "v", "c"}
)

func (d *Decoder) record(r *twinhub.Record) bool {
	return d.Fields(RecordFields, func(k int) bool {
		switch k {
		case 0:
			if d.Null() {
				r.Device = nil
				return true
			}
			r.Device = &twinhub.Device{}
			return d.Device(r.Device)
		case 1:
			if d.Null() {
				r.Module = nil
				return true
			}
			r.Module = &twinhub.Module{}
			return d.Module(r.Module)
		case 2:
			return d.Null() || d.Int64(&r.IdentityVersion)
		}
		return d.Null() || d.twin(&r.Twin)
	})
}

func (d *Decoder) Device(v *twinhub.Device) bool {
	return d.Fields(deviceFields, func(k int) bool {
		switch k {
		case 0:
			return d.Str(&v.DeviceID)
		case 1:
			return d.Str(&v.GenerationID)
		case 2:
			return d.Str(&v.ETag)
		case 3:
			return d.Str(&v.ConnectionState)
		case 4:
			return d.Str(&v.Status)
		case 5:
			return d.optStr(&v.StatusReason)
		case 6:
			return d.Time(&v.ConnectionStateUpdatedTime)
		case 7:
			return d.Time(&v.StatusUpdatedTime)
		case 8:
			return d.Time(&v.LastActivityTime)
		case 9:
			return d.Null() || d.int(&v.CloudToDeviceMessageCount)
		case 10:
			return d.Null() || d.auth(&v.Authentication)
		}
		return d.Null() || d.Fields(capabilityFields, func(int) bool {
			return d.Null() || d.Bool(&v.Capabilities.IoTEdge)
		})
	})
}

func (d *Decoder) Module(v *twinhub.Module) bool {
	return d.Fields(moduleFields, func(k int) bool {
		switch k {
		case 0:
			return d.Str(&v.ModuleID)
		case 1:
			return d.Str(&v.DeviceID)
		case 2:
			return d.Str(&v.ManagedBy)
		case 3:
			return d.Str(&v.GenerationID)
		case 4:
			return d.Str(&v.ETag)
		case 5:
			return d.Str(&v.ConnectionState)
		case 6:
			return d.Time(&v.ConnectionStateUpdatedTime)
		case 7:
			return d.Time(&v.LastActivityTime)
		case 8:
			return d.Null() || d.int(&v.CloudToDeviceMessageCount)
		}
		return d.Null() || d.auth(&v.Authentication)
	})
}

func (d *Decoder) auth(a *twinhub.Authentication) bool {
	return d.Fields(authFields, func(k int) bool {
		switch k {
		case 0:
			return d.Str(&a.Type)
		case 1:
			return d.Null() || d.Fields(keyFields, func(k int) bool {
				if k == 0 {
					return d.Str(&a.SymmetricKey.PrimaryKey)
				}
				return d.Str(&a.SymmetricKey.SecondaryKey)
			})
		}
		return d.Null() || d.Fields(thumbFields, func(k int) bool {
			if k == 0 {
				return d.optStr(&a.X509Thumbprint.PrimaryThumbprint)
			}
			return d.optStr(&a.X509Thumbprint.SecondaryThumbprint)
		})
	})
}

func (d *Decoder) twin(t *twinhub.Twin) bool {
	return d.Fields(TwinFields, func(k int) bool {
		switch k {
		case 0:
			return d.Null() || d.Int64(&t.Version)
		case 1:
			return d.jsonMap(&t.Tags)
		case 2:
			return d.Null() || d.properties(&t.Desired)
		case 3:
			return d.Null() || d.properties(&t.Reported)
		}
		return d.Str(&t.ModelID)
	})
}

func (d *Decoder) properties(p *twinhub.Properties) bool {
	return d.Fields(PropertiesFields, func(k int) bool {
		switch k {
		case 0:
			return d.jsonMap(&p.Values)
		case 1:
			return d.Null() || d.Int64(&p.Version)
		}
		return d.metadataPtr(&p.Metadata)
	})
}

func (d *Decoder) metadataPtr(m **twinhub.Metadata) bool {
	if d.Null() {
		*m = nil
		return true
	}
	*m = &twinhub.Metadata{}
	return d.metadata(*m)
}

func (d *Decoder) metadata(m *twinhub.Metadata) bool {
	return d.Fields(MetadataFields, func(k int) bool {
		switch k {
		case 0:
			return d.Time(&m.LastUpdated)
		case 1:
			return d.Null() || d.Int64(&m.LastUpdatedVersion)
		}
		if d.Null() {
			m.Children = nil
			return true
		}
		m.Children = map[string]*twinhub.Metadata{}
		return d.Object(func(key []byte) bool {
			var c *twinhub.Metadata
			ok := d.metadataPtr(&c)
			m.Children[string(key)] = c
			return ok
		})
	})
}

// Encode encodes a record for a Store: exactly the bytes
// json.Marshal makes of it (TestEncodeRecord, FuzzEncodeRecord), about
// three times faster, without reflection. A value it does not expect in a
// property tree (anything but what JSON decodes to) makes it leave the
// work to json.Marshal, errors included.
func Encode(r *twinhub.Record) ([]byte, error) {
	e := jsonEncoder{b: make([]byte, 0, 1024)}
	if e.record(r); e.ok {
		return e.b, nil
	}
	return json.Marshal(r)
}

// jsonEncoder appends JSON to b as encoding/json writes it (HTML-safe
// strings, sorted map keys, ES6 numbers). ok turns false on a value it
// does not handle.
type jsonEncoder struct {
	b  []byte
	ok bool
	// noHTML leaves <, > and & as they are, as an Encoder with
	// SetEscapeHTML(false) does.
	noHTML bool
}

func (e *jsonEncoder) record(r *twinhub.Record) {
	e.ok = true
	e.b = append(e.b, '{')
	if r.Device != nil {
		e.b = append(e.b, `"device":`...)
		e.device(r.Device)
		e.b = append(e.b, ',')
	}
	if r.Module != nil {
		e.b = append(e.b, `"module":`...)
		e.module(r.Module)
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, `"identityVersion":`...)
	e.b = strconv.AppendInt(e.b, r.IdentityVersion, 10)
	e.b = append(e.b, `,"twin":`...)
	e.twin(&r.Twin)
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) field(name string, first bool) {
	if !first {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
}

func (e *jsonEncoder) device(d *twinhub.Device) {
	e.b = append(e.b, '{')
	e.field("deviceId", true)
	e.string(d.DeviceID)
	e.field("generationId", false)
	e.string(d.GenerationID)
	e.field("etag", false)
	e.string(d.ETag)
	e.field("connectionState", false)
	e.string(d.ConnectionState)
	e.field("status", false)
	e.string(d.Status)
	e.field("statusReason", false)
	e.optString(d.StatusReason)
	e.field("connectionStateUpdatedTime", false)
	e.time(d.ConnectionStateUpdatedTime)
	e.field("statusUpdatedTime", false)
	e.time(d.StatusUpdatedTime)
	e.field("lastActivityTime", false)
	e.time(d.LastActivityTime)
	e.field("cloudToDeviceMessageCount", false)
	e.b = strconv.AppendInt(e.b, int64(d.CloudToDeviceMessageCount), 10)
	e.field("authentication", false)
	e.auth(&d.Authentication)
	e.field("capabilities", false)
	e.b = append(e.b, `{"iotEdge":`...)
	e.b = strconv.AppendBool(e.b, d.Capabilities.IoTEdge)
	e.b = append(e.b, '}', '}')
}

func (e *jsonEncoder) module(m *twinhub.Module) {
	e.b = append(e.b, '{')
	e.field("moduleId", true)
	e.string(m.ModuleID)
	e.field("deviceId", false)
	e.string(m.DeviceID)
	if m.ManagedBy != "" {
		e.field("managedBy", false)
		e.string(m.ManagedBy)
	}
	e.field("generationId", false)
	e.string(m.GenerationID)
	e.field("etag", false)
	e.string(m.ETag)
	e.field("connectionState", false)
	e.string(m.ConnectionState)
	e.field("connectionStateUpdatedTime", false)
	e.time(m.ConnectionStateUpdatedTime)
	e.field("lastActivityTime", false)
	e.time(m.LastActivityTime)
	e.field("cloudToDeviceMessageCount", false)
	e.b = strconv.AppendInt(e.b, int64(m.CloudToDeviceMessageCount), 10)
	e.field("authentication", false)
	e.auth(&m.Authentication)
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) auth(a *twinhub.Authentication) {
	e.b = append(e.b, '{')
	e.field("type", true)
	e.string(a.Type)
	e.b = append(e.b, `,"symmetricKey":{"primaryKey":`...)
	e.string(a.SymmetricKey.PrimaryKey)
	e.field("secondaryKey", false)
	e.string(a.SymmetricKey.SecondaryKey)
	e.b = append(e.b, `},"x509Thumbprint":{"primaryThumbprint":`...)
	e.optString(a.X509Thumbprint.PrimaryThumbprint)
	e.field("secondaryThumbprint", false)
	e.optString(a.X509Thumbprint.SecondaryThumbprint)
	e.b = append(e.b, '}', '}')
}

func (e *jsonEncoder) twin(t *twinhub.Twin) {
	e.b = append(e.b, `{"version":`...)
	e.b = strconv.AppendInt(e.b, t.Version, 10)
	e.field("tags", false)
	e.object(t.Tags)
	e.field("desired", false)
	e.properties(&t.Desired)
	e.field("reported", false)
	e.properties(&t.Reported)
	if t.ModelID != "" {
		e.field("modelId", false)
		e.string(t.ModelID)
	}
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) properties(p *twinhub.Properties) {
	e.b = append(e.b, `{"values":`...)
	e.object(p.Values)
	e.field("version", false)
	e.b = strconv.AppendInt(e.b, p.Version, 10)
	e.field("metadata", false)
	e.metadata(p.Metadata)
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) metadata(m *twinhub.Metadata) {
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, `{"t":`...)
	e.time(m.LastUpdated)
	if m.LastUpdatedVersion != 0 {
		e.field("v", false)
		e.b = strconv.AppendInt(e.b, m.LastUpdatedVersion, 10)
	}
	if len(m.Children) > 0 {
		e.field("c", false)
		e.b = append(e.b, '{')
		for i, k := range sortedKeys(m.Children) {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.string(k)
			e.b = append(e.b, ':')
			e.metadata(m.Children[k])
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// time writes Time as its MarshalJSON does.
func (e *jsonEncoder) time(t twinhub.Time) {
	e.b = append(e.b, '"')
	e.b = t.AppendTo(e.b)
	e.b = append(e.b, '"')
}

func (e *jsonEncoder) optString(s *string) {
	if s == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.string(*s)
}

func (e *jsonEncoder) object(m map[string]any) {
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.string(k)
		e.b = append(e.b, ':')
		e.value(m[k])
	}
	e.b = append(e.b, '}')
}

func (e *jsonEncoder) value(v any) {
	switch x := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case bool:
		e.b = strconv.AppendBool(e.b, x)
	case string:
		e.string(x)
	case float64:
		e.float(x)
	case int:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int64:
		e.b = strconv.AppendInt(e.b, x, 10)
	case map[string]any:
		e.object(x)
	case []any:
		if x == nil {
			e.b = append(e.b, "null"...)
			return
		}
		e.b = append(e.b, '[')
		for i, c := range x {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.value(c)
		}
		e.b = append(e.b, ']')
	default:
		e.ok = false
	}
}

// float writes a number as encoding/json does (ES6 number to string).
func (e *jsonEncoder) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.ok = false // json.Marshal's error
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		n := len(e.b)
		if n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

const hexDigits = "0123456789abcdef"

// string writes s as encoding/json does with HTML escaping.
func (e *jsonEncoder) string(s string) {
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (e.noHTML || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			e.b = append(e.b, s[start:i]...)
			switch c {
			case '\\', '"':
				e.b = append(e.b, '\\', c)
			case '\b':
				e.b = append(e.b, '\\', 'b')
			case '\f':
				e.b = append(e.b, '\\', 'f')
			case '\n':
				e.b = append(e.b, '\\', 'n')
			case '\r':
				e.b = append(e.b, '\\', 'r')
			case '\t':
				e.b = append(e.b, '\\', 't')
			default:
				e.b = append(e.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}

// AppendTwinDoc appends json.Marshal(r.TwinDoc()) to b, without building
// the document: reads and writes of twins answer with it. It returns false
// for what it leaves to json.Marshal (values it does not know, property
// names that TwinDoc would overwrite).
func AppendTwinDoc(b []byte, r *twinhub.Record) ([]byte, bool) {
	e := jsonEncoder{b: b, ok: true}
	auth := r.Auth()
	e.b = append(e.b, `{"authenticationType":`...)
	e.string(auth.Type)
	if d := r.Device; d != nil && r.Module == nil {
		e.b = append(e.b, `,"capabilities":{"iotEdge":`...)
		e.b = strconv.AppendBool(e.b, d.Capabilities.IoTEdge)
		e.b = append(e.b, '}')
	}
	var c2d int
	var state, deviceID string
	var lastActivity twinhub.Time
	if m := r.Module; m != nil {
		c2d, state, deviceID, lastActivity = m.CloudToDeviceMessageCount, m.ConnectionState, m.DeviceID, m.LastActivityTime
	} else {
		d := r.Device
		c2d, state, deviceID, lastActivity = d.CloudToDeviceMessageCount, d.ConnectionState, d.DeviceID, d.LastActivityTime
	}
	e.b = append(e.b, `,"cloudToDeviceMessageCount":`...)
	e.float(float64(c2d))
	e.field("connectionState", false)
	e.string(state)
	e.field("deviceEtag", false)
	e.string(twinhub.IdentityETag(r.IdentityVersion))
	e.field("deviceId", false)
	e.string(deviceID)
	e.field("etag", false)
	e.string(twinhub.TwinETag(r.Twin.Version))
	e.field("lastActivityTime", false)
	e.time(lastActivity)
	e.field("modelId", false)
	e.string(r.Twin.ModelID)
	if m := r.Module; m != nil {
		e.field("moduleId", false)
		e.string(m.ModuleID)
	}
	e.b = append(e.b, `,"properties":{"desired":`...)
	e.wire(&r.Twin.Desired, true)
	e.b = append(e.b, `,"reported":`...)
	e.wire(&r.Twin.Reported, true)
	e.b = append(e.b, '}')
	if r.Module == nil {
		e.field("status", false)
		e.string(r.Device.Status)
		e.field("statusUpdateTime", false)
		e.time(r.Device.StatusUpdatedTime)
	}
	e.field("tags", false)
	e.object(r.Twin.Tags)
	e.field("version", false)
	e.float(float64(r.Twin.Version))
	e.b = append(e.b, `,"x509Thumbprint":{"primaryThumbprint":`...)
	e.optional(auth.X509Thumbprint.PrimaryThumbprint)
	e.field("secondaryThumbprint", false)
	e.optional(auth.X509Thumbprint.SecondaryThumbprint)
	e.b = append(e.b, '}', '}')
	return e.b, e.ok
}

// AppendDeviceTwin appends r.DeviceTwinDoc() as MarshalNoHTML encodes
// it: no HTML escaping.
func AppendDeviceTwin(b []byte, r *twinhub.Record) ([]byte, bool) {
	e := jsonEncoder{b: b, ok: true, noHTML: true}
	e.b = append(e.b, `{"desired":`...)
	e.wire(&r.Twin.Desired, false)
	e.b = append(e.b, `,"reported":`...)
	e.wire(&r.Twin.Reported, false)
	e.b = append(e.b, '}')
	return e.b, e.ok
}

// optional writes what optional(s) is.
func (e *jsonEncoder) optional(s *string) {
	if s == nil || *s == "" {
		e.b = append(e.b, "null"...)
		return
	}
	e.string(*s)
}

// wire writes p.Wire(withMetadata).
func (e *jsonEncoder) wire(p *twinhub.Properties, withMetadata bool) {
	keys := make([]string, 0, len(p.Values)+2)
	for k := range p.Values {
		if k == "$version" || k == "$metadata" {
			e.ok = false
			return
		}
		keys = append(keys, k)
	}
	keys = append(keys, "$version")
	if withMetadata {
		keys = append(keys, "$metadata")
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.string(k)
		e.b = append(e.b, ':')
		switch k {
		case "$version":
			e.float(float64(p.Version))
		case "$metadata":
			e.metadataWire(p.Metadata, p.Values)
		default:
			e.value(p.Values[k])
		}
	}
	e.b = append(e.b, '}')
}

// metadataWire writes m.wire(values).
func (e *jsonEncoder) metadataWire(m *twinhub.Metadata, values map[string]any) {
	if m == nil {
		m = &twinhub.Metadata{}
	}
	keys := make([]string, 0, len(m.Children)+2)
	for k := range m.Children {
		if k == "$lastUpdated" || k == "$lastUpdatedVersion" {
			e.ok = false
			return
		}
		keys = append(keys, k)
	}
	keys = append(keys, "$lastUpdated")
	if m.LastUpdatedVersion > 0 {
		keys = append(keys, "$lastUpdatedVersion")
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.string(k)
		e.b = append(e.b, ':')
		switch k {
		case "$lastUpdated":
			e.time(m.LastUpdated)
		case "$lastUpdatedVersion":
			e.float(float64(m.LastUpdatedVersion))
		default:
			c := m.Children[k]
			if sub, _ := values[k].(map[string]any); sub != nil {
				e.metadataWire(c, sub)
				continue
			}
			if c == nil {
				e.ok = false // TwinDoc fails on it; let it
				return
			}
			e.b = append(e.b, `{"$lastUpdated":`...)
			e.time(c.LastUpdated)
			if c.LastUpdatedVersion > 0 {
				e.b = append(e.b, `,"$lastUpdatedVersion":`...)
				e.float(float64(c.LastUpdatedVersion))
			}
			e.b = append(e.b, '}')
		}
	}
	e.b = append(e.b, '}')
}
