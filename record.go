package twinhub

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
)

// Record is what the store keeps for one identity: the device or module
// and its twin, together, so that one compare-and-set covers both and a
// deletion removes both at once.
type Record struct {
	Device *Device `json:"device,omitempty"`
	Module *Module `json:"module,omitempty"`
	// IdentityVersion counts changes to the identity (not the twin); the
	// identity's etag is derived from it.
	IdentityVersion int64 `json:"identityVersion"`
	Twin            Twin  `json:"twin"`
}

// Key returns the identity the record belongs to.
func (r *Record) Key() Key {
	if r.Module != nil {
		return ModuleKey(r.Module.DeviceID, r.Module.ModuleID)
	}
	return DeviceKey(r.Device.DeviceID)
}

// SetETags refreshes the derived etags before a record is stored or shown.
func (r *Record) SetETags() {
	tag := IdentityETag(r.IdentityVersion)
	if r.Device != nil {
		r.Device.ETag = tag
	}
	if r.Module != nil {
		r.Module.ETag = tag
	}
}

// Auth is the authentication of the record's device or module.
// GenerationID is the identity's generationId, which tells it apart from
// an earlier identity of the same id.
func (r *Record) GenerationID() string {
	if r.Module != nil {
		return r.Module.GenerationID
	}
	return r.Device.GenerationID
}

func (r *Record) Auth() Authentication {
	if r.Module != nil {
		return r.Module.Authentication
	}
	return r.Device.Authentication
}

// TwinDoc renders the twin as GET /twins/{id} shows it. Queries evaluate
// against the same document, so what a query matches is what a read shows.
// Numbers are float64 and times strings, as encoding/json would decode them.
func (r *Record) TwinDoc() map[string]any {
	auth := r.Auth()
	doc := map[string]any{
		"etag":               TwinETag(r.Twin.Version),
		"deviceEtag":         IdentityETag(r.IdentityVersion),
		"version":            float64(r.Twin.Version),
		"authenticationType": auth.Type,
		"x509Thumbprint":     auth.X509Thumbprint.Doc(),
		"modelId":            r.Twin.ModelID,
		"tags":               r.Twin.Tags,
		"properties": map[string]any{
			"desired":  r.Twin.Desired.Wire(true),
			"reported": r.Twin.Reported.Wire(true),
		},
	}
	if len(r.Twin.Configurations) > 0 {
		doc["configurations"] = r.Twin.ConfigurationsDoc()
	}
	IdentityDoc(doc, r.Device, r.Module)
	return doc
}

// IdentityDoc sets the members of a twin document that come from its
// identity, a module's when m is set, else the device's: the twin
// document of Record.TwinDoc and the one the query index renders.
func IdentityDoc(doc map[string]any, d *Device, m *Module) {
	if m != nil {
		doc["deviceId"] = m.DeviceID
		doc["moduleId"] = m.ModuleID
		doc["connectionState"] = m.ConnectionState
		doc["lastActivityTime"] = m.LastActivityTime.String()
		doc["cloudToDeviceMessageCount"] = float64(m.CloudToDeviceMessageCount)
		return
	}
	doc["deviceId"] = d.DeviceID
	doc["status"] = d.Status
	doc["statusUpdateTime"] = d.StatusUpdatedTime.String()
	doc["connectionState"] = d.ConnectionState
	doc["lastActivityTime"] = d.LastActivityTime.String()
	doc["cloudToDeviceMessageCount"] = float64(d.CloudToDeviceMessageCount)
	doc["capabilities"] = map[string]any{"iotEdge": d.Capabilities.IoTEdge}
	if d.DeviceScope != nil {
		doc["deviceScope"] = *d.DeviceScope
	}
	doc["parentScopes"] = d.ParentScopes.Doc()
}

// Doc is the parentScopes member of a twin document: an array, empty when
// the device has no parent.
func (s Scopes) Doc() []any {
	a := make([]any, len(s))
	for i, scope := range s {
		a[i] = scope
	}
	return a
}

// Doc is the x509Thumbprint member of a twin document: null for a
// thumbprint not set.
func (t X509Thumbprint) Doc() map[string]any {
	return map[string]any{
		"primaryThumbprint":   optional(t.PrimaryThumbprint),
		"secondaryThumbprint": optional(t.SecondaryThumbprint),
	}
}

func optional(s *string) any {
	if s == nil || *s == "" {
		return nil
	}
	return *s
}

// clone is a copy of r that can be changed without changing r: the hub's
// record cache (hub/cache.go) hands clones of its records to writers. The
// maps of the property trees are copied, their leaves and arrays shared,
// as cloneObject does: nothing changes those in place. nil stays nil, so
// that the clone encodes as r does.
func (r *Record) Clone() *Record {
	return &Record{
		Device:          r.DeviceCopy(),
		Module:          r.ModuleCopy(),
		IdentityVersion: r.IdentityVersion,
		Twin:            r.Twin.clone(),
	}
}

// CloneShallow is a copy of r for a change that sets fields of the device
// or module (their structs are copied, what they point to shared) and
// changes the twin only as Twin.Apply does, replacing each map it changes
// with a new one rather than changing the map (the twin's maps are
// shared with r). It saves a writer the copy of every property tree that
// Clone makes and Twin.Apply makes again: 16% of the bytes the hub
// allocated a reported patch (BENCHMARKS.md, issue 17).
func (r *Record) CloneShallow() *Record {
	c := &Record{IdentityVersion: r.IdentityVersion, Twin: r.Twin}
	if r.Device != nil {
		d := *r.Device
		c.Device = &d
	}
	if r.Module != nil {
		m := *r.Module
		c.Module = &m
	}
	return c
}

func (a Authentication) clone() Authentication {
	a.X509Thumbprint.PrimaryThumbprint = clonePtr(a.X509Thumbprint.PrimaryThumbprint)
	a.X509Thumbprint.SecondaryThumbprint = clonePtr(a.X509Thumbprint.SecondaryThumbprint)
	return a
}

func clonePtr(s *string) *string {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

func (t Twin) clone() Twin {
	t.Tags = cloneMap(t.Tags)
	t.Configurations = maps.Clone(t.Configurations)
	t.Desired = t.Desired.clone()
	t.Reported = t.Reported.clone()
	return t
}

func (p Properties) clone() Properties {
	p.Values = cloneMap(p.Values)
	p.Metadata = cloneMetadata(p.Metadata)
	return p
}

// cloneMetadata is Metadata.clone keeping nil as nil, at every level.
func cloneMetadata(m *Metadata) *Metadata {
	if m == nil {
		return nil
	}
	out := &Metadata{LastUpdated: m.LastUpdated, LastUpdatedVersion: m.LastUpdatedVersion}
	if m.Children != nil {
		out.Children = make(map[string]*Metadata, len(m.Children))
		for k, c := range m.Children {
			out.Children[k] = cloneMetadata(c)
		}
	}
	return out
}

// cloneMap is cloneObject keeping nil as nil.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return cloneObject(m)
}

// DeviceCopy is a copy of the record's device for a caller to keep.
func (r *Record) DeviceCopy() *Device {
	if r.Device == nil {
		return nil
	}
	d := *r.Device
	d.StatusReason = clonePtr(d.StatusReason)
	d.Authentication = d.Authentication.clone()
	d.DeviceScope = clonePtr(d.DeviceScope)
	d.ParentScopes = slices.Clone(d.ParentScopes)
	return &d
}

// ModuleCopy is a copy of the record's module for a caller to keep.
func (r *Record) ModuleCopy() *Module {
	if r.Module == nil {
		return nil
	}
	m := *r.Module
	m.Authentication = m.Authentication.clone()
	return &m
}

// DeviceTwinDoc is the twin as a device reads it: desired and reported
// properties with their versions, without metadata.
func (rec *Record) DeviceTwinDoc() map[string]any {
	return map[string]any{
		"desired":  rec.Twin.Desired.Wire(false),
		"reported": rec.Twin.Reported.Wire(false),
	}
}

// MarshalNoHTML is json.Marshal without HTML escaping (and without the
// Encoder's newline): how the hub encodes the JSON it sends devices over
// MQTT, twins and desired-property changes alike.
func MarshalNoHTML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
