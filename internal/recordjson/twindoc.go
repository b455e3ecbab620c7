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
	if len(r.Twin.Configurations) > 0 {
		e.field("configurations", false)
		writeObject(&e, r.Twin.Configurations, func(status string) {
			e.b = append(e.b, `{"status":`...)
			e.string(status)
			e.b = append(e.b, '}')
		})
	}
	e.field("connectionState", false)
	e.string(state)
	e.field("deviceEtag", false)
	e.string(twinhub.IdentityETag(r.IdentityVersion))
	e.field("deviceId", false)
	e.string(deviceID)
	if d := r.Device; r.Module == nil && d.DeviceScope != nil {
		e.field("deviceScope", false)
		e.string(*d.DeviceScope)
	}
	e.field("etag", false)
	e.string(twinhub.TwinETag(r.Twin.Version))
	e.field("lastActivityTime", false)
	e.time(lastActivity)
	e.field("modelId", false)
	e.string(r.Twin.ModelID)
	if m := r.Module; m != nil {
		e.field("moduleId", false)
		e.string(m.ModuleID)
	} else {
		e.field("parentScopes", false)
		e.strings(r.Device.ParentScopes)
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
