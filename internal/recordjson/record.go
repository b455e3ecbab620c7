// Package recordjson is the hand-written JSON codec of stored records:
// Decode gives exactly what encoding/json gives for a twinhub.Record, and
// Encode writes what json.Marshal writes less the identity's zero members
// (the differential tests and fuzz targets hold them to it), two and a
// half to three times faster, because every twin read,
// write and index update goes through it. AppendTwinDoc and
// AppendDeviceTwin render the twin documents that clients read without
// building them as maps first. Whatever the fast path does not expect, it
// leaves to encoding/json.
//
// Files: decoder.go reads JSON values, encoder.go writes them, record.go
// maps them onto the record's fields, twindoc.go renders twins.
package recordjson

import (
	"encoding/json"
	"strconv"

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
	d := NewDecoder(data)
	return &r, recordSchema.read(&d, &r) && d.End()
}

// The record's types as the codec reads and writes them: a schema a
// struct, one member a field, in the order of the struct's fields (which
// is how encoding/json writes them), each with its JSON name, how to read
// it, how to write it and, for omitempty fields, when encoding/json leaves
// it out. TestDecodeRecordKnowsEveryField holds the names to the types'
// JSON tags; the differential tests hold reading and writing to
// encoding/json. Metadata, being recursive, is read and written by hand
// below.
var (
	recordSchema = newSchema(
		member[twinhub.Record]{name: "device",
			read: func(d *Decoder, r *twinhub.Record) bool {
				return pointer(d, &r.Device, deviceSchema.read)
			},
			write: func(e *jsonEncoder, r *twinhub.Record) { deviceSchema.write(e, r.Device) },
			omit:  func(r *twinhub.Record) bool { return r.Device == nil }},
		member[twinhub.Record]{name: "module",
			read: func(d *Decoder, r *twinhub.Record) bool {
				return pointer(d, &r.Module, moduleSchema.read)
			},
			write: func(e *jsonEncoder, r *twinhub.Record) { moduleSchema.write(e, r.Module) },
			omit:  func(r *twinhub.Record) bool { return r.Module == nil }},
		int64Member("identityVersion", func(r *twinhub.Record) *int64 { return &r.IdentityVersion }),
		member[twinhub.Record]{name: "twin",
			read:  func(d *Decoder, r *twinhub.Record) bool { return d.Null() || twinSchema.read(d, &r.Twin) },
			write: func(e *jsonEncoder, r *twinhub.Record) { twinSchema.write(e, &r.Twin) }},
	)
	deviceSchema = newSchema(
		stringMember("deviceId", func(v *twinhub.Device) *string { return &v.DeviceID }),
		stringMember("generationId", func(v *twinhub.Device) *string { return &v.GenerationID }),
		stringMember("etag", func(v *twinhub.Device) *string { return &v.ETag }),
		stringMember("connectionState", func(v *twinhub.Device) *string { return &v.ConnectionState }),
		stringMember("status", func(v *twinhub.Device) *string { return &v.Status }),
		storedOmits(optStringMember("statusReason", func(v *twinhub.Device) **string { return &v.StatusReason }),
			func(v *twinhub.Device) bool { return v.StatusReason == nil }),
		storedOmits(timeMember("connectionStateUpdatedTime", func(v *twinhub.Device) *twinhub.Time { return &v.ConnectionStateUpdatedTime }),
			func(v *twinhub.Device) bool { return v.ConnectionStateUpdatedTime.IsZero() }),
		timeMember("statusUpdatedTime", func(v *twinhub.Device) *twinhub.Time { return &v.StatusUpdatedTime }),
		storedOmits(timeMember("lastActivityTime", func(v *twinhub.Device) *twinhub.Time { return &v.LastActivityTime }),
			func(v *twinhub.Device) bool { return v.LastActivityTime.IsZero() }),
		storedOmits(intMember("cloudToDeviceMessageCount", func(v *twinhub.Device) *int { return &v.CloudToDeviceMessageCount }),
			func(v *twinhub.Device) bool { return v.CloudToDeviceMessageCount == 0 }),
		structMember("authentication", authSchema, func(v *twinhub.Device) *twinhub.Authentication { return &v.Authentication }),
		storedOmits(structMember("capabilities", capabilitiesSchema, func(v *twinhub.Device) *twinhub.Capabilities { return &v.Capabilities }),
			func(v *twinhub.Device) bool { return !v.Capabilities.IoTEdge }),
		storedOmits(optStringMember("deviceScope", func(v *twinhub.Device) **string { return &v.DeviceScope }),
			func(v *twinhub.Device) bool { return v.DeviceScope == nil }),
		storedOmits(member[twinhub.Device]{name: "parentScopes",
			read:  func(d *Decoder, v *twinhub.Device) bool { return d.Strings((*[]string)(&v.ParentScopes)) },
			write: func(e *jsonEncoder, v *twinhub.Device) { e.strings(v.ParentScopes) }},
			func(v *twinhub.Device) bool { return v.ParentScopes == nil }),
	)
	moduleSchema = newSchema(
		stringMember("moduleId", func(v *twinhub.Module) *string { return &v.ModuleID }),
		stringMember("deviceId", func(v *twinhub.Module) *string { return &v.DeviceID }),
		omitEmpty(stringMember("managedBy", func(v *twinhub.Module) *string { return &v.ManagedBy }),
			func(v *twinhub.Module) bool { return v.ManagedBy == "" }),
		stringMember("generationId", func(v *twinhub.Module) *string { return &v.GenerationID }),
		stringMember("etag", func(v *twinhub.Module) *string { return &v.ETag }),
		stringMember("connectionState", func(v *twinhub.Module) *string { return &v.ConnectionState }),
		storedOmits(timeMember("connectionStateUpdatedTime", func(v *twinhub.Module) *twinhub.Time { return &v.ConnectionStateUpdatedTime }),
			func(v *twinhub.Module) bool { return v.ConnectionStateUpdatedTime.IsZero() }),
		storedOmits(timeMember("lastActivityTime", func(v *twinhub.Module) *twinhub.Time { return &v.LastActivityTime }),
			func(v *twinhub.Module) bool { return v.LastActivityTime.IsZero() }),
		storedOmits(intMember("cloudToDeviceMessageCount", func(v *twinhub.Module) *int { return &v.CloudToDeviceMessageCount }),
			func(v *twinhub.Module) bool { return v.CloudToDeviceMessageCount == 0 }),
		structMember("authentication", authSchema, func(v *twinhub.Module) *twinhub.Authentication { return &v.Authentication }),
	)
	authSchema = newSchema(
		stringMember("type", func(a *twinhub.Authentication) *string { return &a.Type }),
		structMember("symmetricKey", keySchema, func(a *twinhub.Authentication) *twinhub.SymmetricKey { return &a.SymmetricKey }),
		storedOmits(structMember("x509Thumbprint", thumbprintSchema, func(a *twinhub.Authentication) *twinhub.X509Thumbprint { return &a.X509Thumbprint }),
			func(a *twinhub.Authentication) bool {
				return a.X509Thumbprint.PrimaryThumbprint == nil && a.X509Thumbprint.SecondaryThumbprint == nil
			}),
	)
	keySchema = newSchema(
		stringMember("primaryKey", func(k *twinhub.SymmetricKey) *string { return &k.PrimaryKey }),
		stringMember("secondaryKey", func(k *twinhub.SymmetricKey) *string { return &k.SecondaryKey }),
	)
	thumbprintSchema = newSchema(
		optStringMember("primaryThumbprint", func(t *twinhub.X509Thumbprint) **string { return &t.PrimaryThumbprint }),
		optStringMember("secondaryThumbprint", func(t *twinhub.X509Thumbprint) **string { return &t.SecondaryThumbprint }),
	)
	capabilitiesSchema = newSchema(
		member[twinhub.Capabilities]{name: "iotEdge",
			read:  func(d *Decoder, c *twinhub.Capabilities) bool { return d.Null() || d.Bool(&c.IoTEdge) },
			write: func(e *jsonEncoder, c *twinhub.Capabilities) { e.b = strconv.AppendBool(e.b, c.IoTEdge) }},
	)
	twinSchema = newSchema(
		int64Member("version", func(t *twinhub.Twin) *int64 { return &t.Version }),
		objectMember("tags", func(t *twinhub.Twin) *map[string]any { return &t.Tags }),
		structMember("desired", propertiesSchema, func(t *twinhub.Twin) *twinhub.Properties { return &t.Desired }),
		structMember("reported", propertiesSchema, func(t *twinhub.Twin) *twinhub.Properties { return &t.Reported }),
		omitEmpty(stringMember("modelId", func(t *twinhub.Twin) *string { return &t.ModelID }),
			func(t *twinhub.Twin) bool { return t.ModelID == "" }),
		omitEmpty(stringMapMember("configurations", func(t *twinhub.Twin) *map[string]string { return &t.Configurations }),
			func(t *twinhub.Twin) bool { return len(t.Configurations) == 0 }),
	)
	propertiesSchema = newSchema(
		objectMember("values", func(p *twinhub.Properties) *map[string]any { return &p.Values }),
		int64Member("version", func(p *twinhub.Properties) *int64 { return &p.Version }),
		member[twinhub.Properties]{name: "metadata",
			read:  func(d *Decoder, p *twinhub.Properties) bool { return d.metadataPtr(&p.Metadata) },
			write: func(e *jsonEncoder, p *twinhub.Properties) { e.metadata(p.Metadata) }},
	)
)

// The JSON names of the members of a stored record, of its twin, of a
// twin's properties and of a metadata node, in order: the index reads
// stored records with Decoder.Fields and these.
var (
	RecordFields     = recordSchema.names
	TwinFields       = twinSchema.names
	PropertiesFields = propertiesSchema.names
	MetadataFields   = []string{"t", "v", "c"}
)

// Device reads a device's JSON into v.
func (d *Decoder) Device(v *twinhub.Device) bool { return deviceSchema.read(d, v) }

// Module reads a module's JSON into v.
func (d *Decoder) Module(v *twinhub.Module) bool { return moduleSchema.read(d, v) }

// pointer reads a JSON object into a new T at *p, or null as a nil *p.
func pointer[T any](d *Decoder, p **T, read func(*Decoder, *T) bool) bool {
	if d.Null() {
		*p = nil
		return true
	}
	*p = new(T)
	return read(d, *p)
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

// Encode encodes a record for a Store: the bytes json.Marshal makes of
// it, less the identity's members that hold their zero value (storedOmits:
// null reasons and scopes, zero instants and counters, no thumbprints),
// which json.Unmarshal and Decode read back as they were
// (TestEncodeRecord, FuzzEncodeRecord); about three times faster, without
// reflection. A value it does not expect in a property tree (anything but
// what JSON decodes to) makes it leave the work to json.Marshal, errors
// included; records written whole, as by earlier versions, read the same.
func Encode(r *twinhub.Record) ([]byte, error) {
	return AppendRecord(make([]byte, 0, 1024), r)
}

// AppendRecord appends Encode's bytes of r to b (a store recycles its
// buffers); on an error it returns b as it was.
func AppendRecord(b []byte, r *twinhub.Record) ([]byte, error) {
	e := jsonEncoder{b: b, ok: true}
	if recordSchema.write(&e, r); e.ok {
		return e.b, nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return b, err
	}
	return append(b, data...), nil
}

// AppendValue appends v as json.Marshal encodes it, for the values JSON
// decodes to (maps of strings to values, slices of values, strings,
// float64, bool, nil; ints too), without reflection: query pages of whole
// twins, rendered by the index as such maps. ok is false, and b as it
// was, for any other value or a number JSON cannot hold: the caller then
// leaves the work to json.Marshal.
func AppendValue(b []byte, v any) (out []byte, ok bool) {
	e := jsonEncoder{b: b, ok: true}
	e.value(v)
	if !e.ok {
		return b, false
	}
	return e.b, true
}

// AppendJSON appends v as json.Marshal encodes it: by AppendValue when it
// can, else by json.Marshal.
func AppendJSON(b []byte, v any) ([]byte, error) {
	if out, ok := AppendValue(b, v); ok {
		return out, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, data...), nil
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
