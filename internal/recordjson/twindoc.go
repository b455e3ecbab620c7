package recordjson

import (
	"slices"
	"strconv"

	"github.com/twinhub/twinhub"
)

// AppendTwinDoc appends json.Marshal(r.TwinDoc()) to b, without building
// the document: reads and writes of twins answer with it. It returns false
// for what it leaves to json.Marshal (values it does not know, property
// names that TwinDoc would overwrite).
func AppendTwinDoc(b []byte, r *twinhub.Record) ([]byte, bool) {
	return AppendTwinDocParts(b, &TwinDocParts{
		Device: r.Device, Module: r.Module, IdentityVersion: r.IdentityVersion,
		Version: r.Twin.Version, ModelID: r.Twin.ModelID, Configurations: r.Twin.Configurations,
		Sections: recordSections{r},
	})
}

// TwinDocParts is what a twin document is made of: the identity (exactly
// one of Device and Module) and the twin's counters, and the writer of its
// property trees. The record's twin (AppendTwinDoc) and the query index's
// compact copy of it write theirs each from their own form.
type TwinDocParts struct {
	Device          *twinhub.Device
	Module          *twinhub.Module
	IdentityVersion int64
	Version         int64
	ModelID         string
	Configurations  map[string]string
	Sections        TwinSections
}

// TwinSections writes the property trees of a twin document as
// json.Marshal writes them: Tags the tags object (null for none), Desired
// and Reported the properties with their $version and $metadata.
type TwinSections interface {
	Tags(e Encoder)
	Desired(e Encoder)
	Reported(e Encoder)
}

// Encoder appends JSON as encoding/json writes it, for the TwinSections of
// other packages.
type Encoder struct{ e *jsonEncoder }

// Raw appends s as it is: punctuation, and keys known to need no escaping.
func (x Encoder) Raw(s string) { x.e.b = append(x.e.b, s...) }

// String appends s as a JSON string, HTML-escaped.
func (x Encoder) String(s string) { x.e.string(s) }

// Float appends a number; NaN and infinities fail the document.
func (x Encoder) Float(f float64) { x.e.float(f) }

// Time appends t as its MarshalJSON does.
func (x Encoder) Time(t twinhub.Time) { x.e.time(t) }

// Value appends a value of the kinds JSON decodes to; another kind fails
// the document.
func (x Encoder) Value(v any) { x.e.value(v) }

// Fail marks the document as one json.Marshal must write.
func (x Encoder) Fail() { x.e.ok = false }

// AppendTwinDocParts appends the twin document made of p, as json.Marshal
// writes the map Record.TwinDoc makes: members in the order of their
// names. It returns false when p's sections fail.
func AppendTwinDocParts(b []byte, p *TwinDocParts) ([]byte, bool) {
	e := jsonEncoder{b: b, ok: true}
	x := Encoder{&e}
	var auth *twinhub.Authentication
	var c2d int
	var state, deviceID string
	var lastActivity twinhub.Time
	if m := p.Module; m != nil {
		auth = &m.Authentication
		c2d, state, deviceID, lastActivity = m.CloudToDeviceMessageCount, m.ConnectionState, m.DeviceID, m.LastActivityTime
	} else {
		d := p.Device
		auth = &d.Authentication
		c2d, state, deviceID, lastActivity = d.CloudToDeviceMessageCount, d.ConnectionState, d.DeviceID, d.LastActivityTime
	}
	e.b = append(e.b, `{"authenticationType":`...)
	e.string(auth.Type)
	if d := p.Device; d != nil && p.Module == nil {
		e.b = append(e.b, `,"capabilities":{"iotEdge":`...)
		e.b = strconv.AppendBool(e.b, d.Capabilities.IoTEdge)
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, `,"cloudToDeviceMessageCount":`...)
	e.float(float64(c2d))
	if len(p.Configurations) > 0 {
		e.field("configurations", false)
		writeObject(&e, p.Configurations, func(status string) {
			e.b = append(e.b, `{"status":`...)
			e.string(status)
			e.b = append(e.b, '}')
		})
	}
	e.field("connectionState", false)
	e.string(state)
	e.field("deviceEtag", false)
	e.string(twinhub.IdentityETag(p.IdentityVersion))
	e.field("deviceId", false)
	e.string(deviceID)
	if d := p.Device; p.Module == nil && d.DeviceScope != nil {
		e.field("deviceScope", false)
		e.string(*d.DeviceScope)
	}
	e.field("etag", false)
	e.string(twinhub.TwinETag(p.Version))
	e.field("lastActivityTime", false)
	e.time(lastActivity)
	e.field("modelId", false)
	e.string(p.ModelID)
	if m := p.Module; m != nil {
		e.field("moduleId", false)
		e.string(m.ModuleID)
	} else {
		e.field("parentScopes", false)
		e.strings(p.Device.ParentScopes)
	}
	e.b = append(e.b, `,"properties":{"desired":`...)
	p.Sections.Desired(x)
	e.b = append(e.b, `,"reported":`...)
	p.Sections.Reported(x)
	e.b = append(e.b, '}')
	if p.Module == nil {
		e.field("status", false)
		e.string(p.Device.Status)
		e.field("statusUpdateTime", false)
		e.time(p.Device.StatusUpdatedTime)
	}
	e.field("tags", false)
	p.Sections.Tags(x)
	e.field("version", false)
	e.float(float64(p.Version))
	e.b = append(e.b, `,"x509Thumbprint":{"primaryThumbprint":`...)
	e.optional(auth.X509Thumbprint.PrimaryThumbprint)
	e.field("secondaryThumbprint", false)
	e.optional(auth.X509Thumbprint.SecondaryThumbprint)
	e.b = append(e.b, '}', '}')
	return e.b, e.ok
}

// recordSections writes the property trees of a record's twin.
type recordSections struct{ r *twinhub.Record }

func (s recordSections) Tags(x Encoder)     { x.e.object(s.r.Twin.Tags) }
func (s recordSections) Desired(x Encoder)  { x.e.wire(&s.r.Twin.Desired, true) }
func (s recordSections) Reported(x Encoder) { x.e.wire(&s.r.Twin.Reported, true) }

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
