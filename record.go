package twinhub

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

// stamp refreshes the derived etags before a record is stored or shown.
func (r *Record) stamp() {
	tag := identityETag(r.IdentityVersion)
	if r.Device != nil {
		r.Device.ETag = tag
	}
	if r.Module != nil {
		r.Module.ETag = tag
	}
}

func (r *Record) auth() Authentication {
	if r.Module != nil {
		return r.Module.Authentication
	}
	return r.Device.Authentication
}

// TwinDoc renders the twin as GET /twins/{id} shows it. Queries evaluate
// against the same document, so what a query matches is what a read shows.
// Numbers are float64 and times strings, as encoding/json would decode them.
func (r *Record) TwinDoc() map[string]any {
	auth := r.auth()
	doc := map[string]any{
		"etag":               TwinETag(r.Twin.Version),
		"deviceEtag":         identityETag(r.IdentityVersion),
		"version":            float64(r.Twin.Version),
		"authenticationType": auth.Type,
		"x509Thumbprint": map[string]any{
			"primaryThumbprint":   optional(auth.X509Thumbprint.PrimaryThumbprint),
			"secondaryThumbprint": optional(auth.X509Thumbprint.SecondaryThumbprint),
		},
		"modelId": r.Twin.ModelID,
		"tags":    r.Twin.Tags,
		"properties": map[string]any{
			"desired":  r.Twin.Desired.Wire(true),
			"reported": r.Twin.Reported.Wire(true),
		},
	}
	if m := r.Module; m != nil {
		doc["deviceId"] = m.DeviceID
		doc["moduleId"] = m.ModuleID
		doc["connectionState"] = m.ConnectionState
		doc["lastActivityTime"] = m.LastActivityTime.String()
		doc["cloudToDeviceMessageCount"] = float64(m.CloudToDeviceMessageCount)
		return doc
	}
	d := r.Device
	doc["deviceId"] = d.DeviceID
	doc["status"] = d.Status
	doc["statusUpdateTime"] = d.StatusUpdatedTime.String()
	doc["connectionState"] = d.ConnectionState
	doc["lastActivityTime"] = d.LastActivityTime.String()
	doc["cloudToDeviceMessageCount"] = float64(d.CloudToDeviceMessageCount)
	doc["capabilities"] = map[string]any{"iotEdge": d.Capabilities.IoTEdge}
	return doc
}

func optional(s *string) any {
	if s == nil || *s == "" {
		return nil
	}
	return *s
}
