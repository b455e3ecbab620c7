// Package recordjson is the hand-written JSON codec of stored records:
// Decode and Encode give exactly what encoding/json gives for a
// twinhub.Record (the differential tests and fuzz targets hold them to
// it), two and a half to three times faster, because every twin read,
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
	d := Decoder{b: data}
	return &r, d.record(&r) && d.End()
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
