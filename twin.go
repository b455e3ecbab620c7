package twinhub

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/twinhub/twinhub/internal/jsonread"
)

// Limits IoT Hub sets on twin documents (iot-hub-devguide-device-twins.md).
// A write that breaks one is refused whole: nothing of it is stored.
const (
	MaxTagsSize     = 8 * 1024
	MaxDesiredSize  = 32 * 1024
	MaxReportedSize = 32 * 1024
	MaxDepth        = 10
	MaxKeyLength    = 1024
	MaxStringLength = 4 * 1024
	MaxInteger      = 1<<52 - 1
	MinInteger      = -(1 << 52)
)

// Twin is the stored state of a device or module twin: what the twin adds
// to the identity it belongs to.
type Twin struct {
	Version  int64          `json:"version"`
	Tags     map[string]any `json:"tags"`
	Desired  Properties     `json:"desired"`
	Reported Properties     `json:"reported"`
	ModelID  string         `json:"modelId,omitempty"`
	// Configurations are the automatic configurations whose target
	// condition the twin meets, by id: ConfigurationApplied for the one
	// whose content it has (the highest priority), ConfigurationTargeted
	// for the others. The configuration reconciler keeps them; twins and
	// queries show them as configurations.{id}.status.
	Configurations map[string]string `json:"configurations,omitempty"`
}

// The statuses of a configuration in a twin, as IoT Hub spells them.
const (
	ConfigurationApplied  = "Applied"
	ConfigurationTargeted = "Targeted"
)

// Properties is the desired or the reported half of a twin with its
// version counter and metadata tree.
type Properties struct {
	Values   map[string]any `json:"values"`
	Version  int64          `json:"version"`
	Metadata *Metadata      `json:"metadata"`
}

// Metadata mirrors the shape of a property tree and records when each
// node last changed and, for desired properties, at which $version. IoT Hub
// shows it under "$metadata".
type Metadata struct {
	LastUpdated        Time                 `json:"t"`
	LastUpdatedVersion int64                `json:"v,omitempty"`
	Children           map[string]*Metadata `json:"c,omitempty"`
}

// NewTwin is the twin of a newly created identity: IoT Hub starts every
// counter at 1.
func NewTwin(now Time) Twin {
	return Twin{
		Version:  1,
		Tags:     map[string]any{},
		Desired:  newProperties(now),
		Reported: newProperties(now),
	}
}

func newProperties(now Time) Properties {
	return Properties{Values: map[string]any{}, Version: 1, Metadata: &Metadata{LastUpdated: now}}
}

// TwinUpdate is one change to a twin, whoever asks for it: a back end's
// tags and desired properties to merge (PATCH) or, with Replace, to
// replace (PUT), or a device's reported properties to merge. A nil map
// means the change does not touch that part. Twin.Apply applies it with
// IoT Hub's version and metadata rules.
type TwinUpdate struct {
	Tags    map[string]any
	Desired map[string]any
	// Replace makes Tags and Desired replace their sections.
	Replace bool
	// ClearTags and ClearDesired empty a section: `"tags": null` or
	// `"properties": {"desired": null}` in a PATCH or PUT, as IoT Hub
	// takes them (the desired $version goes up).
	ClearTags, ClearDesired bool
	// Reported is a device's patch of its reported properties.
	Reported map[string]any
	// Configurations sets the statuses of configurations in the twin
	// (Twin.Configurations), by id; "" removes one. Only the
	// configuration reconciler writes them.
	Configurations map[string]string
}

// ParseTwinUpdate decodes the body of PATCH or PUT /twins/{id}. It checks
// every key and value against IoT Hub's rules before anything is applied.
// Fields a back end cannot change (etag, version, reported properties...)
// are ignored, because clients send back twins they have read.
func ParseTwinUpdate(body []byte, replace bool) (TwinUpdate, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return TwinUpdate{}, ErrInvalid("twin is not a JSON object: %v", err)
	}
	doc, isObj := v.(map[string]any)
	if !isObj && v != nil { // null reads as an empty patch
		return TwinUpdate{}, ErrInvalid("twin is not a JSON object")
	}
	var u TwinUpdate
	if raw, ok := doc["tags"]; ok && raw == nil {
		u.ClearTags = true
	} else if ok {
		tags, err := checkSection("tags", raw)
		if err != nil {
			return TwinUpdate{}, err
		}
		u.Tags = tags
	}
	if raw, ok := doc["properties"]; ok && raw != nil {
		props, isObj := raw.(map[string]any)
		if !isObj {
			return TwinUpdate{}, ErrInvalid("properties must be a JSON object")
		}
		for name, v := range props {
			switch name {
			case "desired":
				if v == nil {
					u.ClearDesired = true
					continue
				}
				d, err := checkSection("properties.desired", v)
				if err != nil {
					return TwinUpdate{}, err
				}
				u.Desired = d
			case "reported":
				// Reported properties belong to the device. Clients that
				// send back a twin they read (the Go SDK's UpdateDeviceTwin
				// sends the whole twin) carry them: IoT Hub ignores them.
			default:
				return TwinUpdate{}, ErrInvalid("properties.%s is not a twin section", name)
			}
		}
	}
	if replace {
		u.Replace = true
		if u.Tags == nil {
			u.Tags = map[string]any{}
		}
		if u.Desired == nil {
			u.Desired = map[string]any{}
		}
	}
	return u, nil
}

// ParsePatch decodes a reported-properties patch sent by a device.
func ParsePatch(section string, body []byte) (map[string]any, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, ErrInvalid("%s patch is not valid JSON: %v", section, err)
	}
	return checkSection(section, v)
}

// decodeJSON decodes exactly one JSON value, keeping numbers as written so
// that integers can be range-checked before they become float64. The
// reader of package jsonread takes nearly every body, at a third of
// encoding/json's time; what it leaves (and the error of what is not
// JSON) is encoding/json's, which reads the same values
// (jsonread.FuzzValue).
func decodeJSON(body []byte) (any, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	d := jsonread.NewDecoder(body)
	if v, ok := d.ValueNumber(); ok && d.End() {
		return v, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// withoutSystemKeys drops "$metadata" and "$version" from the top of a
// section, which a client may send back after reading a twin.
func withoutSystemKeys(m map[string]any) map[string]any {
	if _, a := m["$metadata"]; !a {
		if _, b := m["$version"]; !b {
			return m
		}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "$metadata" && k != "$version" {
			out[k] = v
		}
	}
	return out
}

// checkSection validates a decoded section patch and returns it with its
// numbers as float64.
func checkSection(section string, v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrInvalid("%s must be a JSON object", section)
	}
	m = withoutSystemKeys(m)
	out, err := checkValue(section, m, 0)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func checkValue(path string, v any, depth int) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		if len(x) > MaxStringLength {
			return nil, ErrInvalid("%s: string values may be at most %d bytes", path, MaxStringLength)
		}
		return x, nil
	case json.Number:
		return checkNumber(path, x)
	case map[string]any:
		if depth >= MaxDepth+1 {
			return nil, ErrInvalid("%s: objects may be nested at most %d levels deep", path, MaxDepth)
		}
		for k, c := range x {
			if err := checkKey(path, k); err != nil {
				return nil, err
			}
			n, err := checkValue(path+"."+k, c, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
		return x, nil
	case []any:
		if depth >= MaxDepth+1 {
			return nil, ErrInvalid("%s: values may be nested at most %d levels deep", path, MaxDepth)
		}
		for i, c := range x {
			n, err := checkValue(path+"["+strconv.Itoa(i)+"]", c, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	}
	return nil, ErrInvalid("%s: unsupported value", path)
}

func checkNumber(path string, n json.Number) (any, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > MaxInteger || i < MinInteger {
			return nil, ErrInvalid("%s: integer %s is outside the range %d to %d", path, s, int64(MinInteger), int64(MaxInteger))
		}
		return float64(i), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, ErrInvalid("%s: number %s is out of range", path, s)
	}
	return f, nil
}

// checkKey applies IoT Hub's key rules: 1 to 1 KB of UTF-8, no '.', '$',
// space or control character.
func checkKey(path, k string) error {
	if k == "" {
		return ErrInvalid("%s: empty property name", path)
	}
	if len(k) > MaxKeyLength {
		return ErrInvalid("%s: property names may be at most %d bytes", path, MaxKeyLength)
	}
	for _, r := range k {
		if r == '.' || r == '$' || r == ' ' || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return ErrInvalid("%s: property name %q contains %q, which is not allowed", path, k, r)
		}
	}
	return nil
}

// UpdateTags merges (or with replace, sets) the twin's tags.
func (t *Twin) UpdateTags(patch map[string]any, replace bool) error {
	tags := cloneObject(t.Tags)
	if replace {
		tags = map[string]any{}
	}
	mergePlain(tags, patch)
	if size := twinSize(tags); size > MaxTagsSize {
		return errTooLarge("Tags", size, MaxTagsSize)
	}
	t.Tags = tags
	return nil
}

// UpdateDesired merges (or with replace, sets) desired properties,
// stamping metadata with the new desired $version.
func (t *Twin) UpdateDesired(patch map[string]any, replace bool, now Time) error {
	return t.Desired.update("Desired", patch, replace, now, true, MaxDesiredSize)
}

// UpdateReported merges a device's reported-properties patch.
func (t *Twin) UpdateReported(patch map[string]any, now Time) error {
	return t.Reported.update("Reported", patch, false, now, false, MaxReportedSize)
}

// Apply makes a change to the twin and counts it in the twin's version:
// tags (merged, replaced or cleared), then desired properties (each
// section's $version goes up and its metadata is stamped with now), then
// reported properties. An error
// (a size limit) may leave the twin partly changed: callers apply to a
// copy, as the hub's writer does. An update that touches nothing changes
// nothing.
func (t *Twin) Apply(u TwinUpdate, now Time) error {
	configs := t.configurationsWith(u.Configurations)
	if u.Tags == nil && u.Desired == nil && u.Reported == nil && !u.ClearTags && !u.ClearDesired && configs == nil {
		return nil
	}
	if configs != nil {
		if len(*configs) == 0 {
			*configs = nil
		}
		t.Configurations = *configs
	}
	switch {
	case u.ClearTags:
		t.Tags = map[string]any{}
	case u.Tags != nil:
		if err := t.UpdateTags(u.Tags, u.Replace); err != nil {
			return err
		}
	}
	switch {
	case u.ClearDesired:
		if err := t.UpdateDesired(map[string]any{}, true, now); err != nil {
			return err
		}
	case u.Desired != nil:
		if err := t.UpdateDesired(u.Desired, u.Replace, now); err != nil {
			return err
		}
	}
	if u.Reported != nil {
		if err := t.UpdateReported(u.Reported, now); err != nil {
			return err
		}
	}
	t.Version++
	return nil
}

// configurationsWith is the twin's configurations with the statuses of
// set ("" removes one), or nil when they would not change.
func (t *Twin) configurationsWith(set map[string]string) *map[string]string {
	changed := false
	for id, status := range set {
		if t.Configurations[id] != status {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out := make(map[string]string, len(t.Configurations)+len(set))
	for id, status := range t.Configurations {
		out[id] = status
	}
	for id, status := range set {
		if status == "" {
			delete(out, id)
		} else {
			out[id] = status
		}
	}
	return &out
}

func (p *Properties) update(name string, patch map[string]any, replace bool, now Time, stampVersion bool, limit int) error {
	values, meta := cloneObject(p.Values), p.Metadata.clone()
	if replace {
		values, meta = map[string]any{}, &Metadata{}
	}
	version := p.Version + 1
	stamp := int64(0)
	if stampVersion {
		stamp = version
	}
	mergeWithMetadata(values, meta, patch, now, stamp)
	if size := twinSize(values); size > limit {
		return errTooLarge("Properties."+name, size, limit)
	}
	p.Values, p.Metadata, p.Version = values, meta, version
	return nil
}

// mergeWithMetadata applies a JSON merge patch (null removes a key) and
// stamps every node it touches, the removals' parents included.
func mergeWithMetadata(dst map[string]any, meta *Metadata, patch map[string]any, now Time, version int64) {
	meta.LastUpdated, meta.LastUpdatedVersion = now, version
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			delete(meta.Children, k)
			continue
		}
		if meta.Children == nil {
			meta.Children = map[string]*Metadata{}
		}
		obj, isObj := v.(map[string]any)
		if !isObj {
			dst[k] = v
			meta.Children[k] = &Metadata{LastUpdated: now, LastUpdatedVersion: version}
			continue
		}
		cur, curIsObj := dst[k].(map[string]any)
		child := meta.Children[k]
		if !curIsObj || child == nil {
			cur, child = map[string]any{}, &Metadata{}
			dst[k], meta.Children[k] = cur, child
		}
		mergeWithMetadata(cur, child, obj, now, version)
	}
}

// mergePlain is mergeWithMetadata for tags, which carry no metadata.
func mergePlain(dst map[string]any, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		obj, isObj := v.(map[string]any)
		if !isObj {
			dst[k] = v
			continue
		}
		cur, curIsObj := dst[k].(map[string]any)
		if !curIsObj {
			cur = map[string]any{}
			dst[k] = cur
		}
		mergePlain(cur, obj)
	}
}

// cloneObject copies the maps of a tree so that a failed update leaves the
// original untouched; leaves and arrays are never mutated, so they are shared.
func cloneObject(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = cloneObject(sub)
		}
		out[k] = v
	}
	return out
}

func (m *Metadata) clone() *Metadata {
	if m == nil {
		return &Metadata{}
	}
	out := &Metadata{LastUpdated: m.LastUpdated, LastUpdatedVersion: m.LastUpdatedVersion}
	if m.Children != nil {
		out.Children = make(map[string]*Metadata, len(m.Children))
		for k, c := range m.Children {
			out.Children[k] = c.clone()
		}
	}
	return out
}

// twinSize is a section's size as iot-hub-devguide-device-twins.md
// ("Device twin size") counts it: the sum, over every property at every
// level, of the key's length and the value's, where strings count their
// characters less control characters, numbers 8 and booleans 4, and
// objects and arrays the sizes of what they hold.
func twinSize(m map[string]any) int {
	n := 0
	for k, v := range m {
		n += stringSize(k) + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return stringSize(x)
	case float64:
		return 8
	case bool:
		return 4
	case map[string]any:
		return twinSize(x)
	case []any:
		n := 0
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	}
	return 0
}

func stringSize(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x20 && (r < 0x7f || r > 0x9f) {
			n++
		}
	}
	return n
}

// errTooLarge is IoT Hub's refusal of an update that would take a section
// over its size limit: a 403 DeviceModelMaxPropertiesExceeded, not a 400.
func errTooLarge(section string, size, limit int) *Error {
	return Errorf(http.StatusForbidden, "DeviceModelMaxPropertiesExceeded", "'%s' size would be %d, which is more than the limit of %d", section, size, limit)
}

// Wire forms the section as IoT Hub shows it: the values with "$version",
// and with "$metadata" when withMetadata is set (REST and queries; MQTT
// leaves it out).
func (p Properties) Wire(withMetadata bool) map[string]any {
	out := make(map[string]any, len(p.Values)+2)
	for k, v := range p.Values {
		out[k] = v
	}
	out["$version"] = float64(p.Version)
	if withMetadata {
		out["$metadata"] = p.Metadata.wire(p.Values)
	}
	return out
}

func (m *Metadata) wire(values map[string]any) map[string]any {
	if m == nil {
		m = &Metadata{}
	}
	out := make(map[string]any, len(m.Children)+2)
	out["$lastUpdated"] = m.LastUpdated.String()
	if m.LastUpdatedVersion > 0 {
		out["$lastUpdatedVersion"] = float64(m.LastUpdatedVersion)
	}
	for k, c := range m.Children {
		sub, _ := values[k].(map[string]any)
		if sub != nil {
			out[k] = c.wire(sub)
			continue
		}
		leaf := map[string]any{"$lastUpdated": c.LastUpdated.String()}
		if c.LastUpdatedVersion > 0 {
			leaf["$lastUpdatedVersion"] = float64(c.LastUpdatedVersion)
		}
		out[k] = leaf
	}
	return out
}

// TwinETag is the twin's etag: its version as eight big-endian bytes in
// base64, the form IoT Hub uses ("AAAAAAAAAAE=" for version 1).
func TwinETag(version int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(version))
	return base64.StdEncoding.EncodeToString(b[:])
}

// ConfigurationsDoc is the configurations member of the twin document:
// {"<id>": {"status": "Applied"}, ...}.
func (t *Twin) ConfigurationsDoc() map[string]any {
	doc := make(map[string]any, len(t.Configurations))
	for id, status := range t.Configurations {
		doc[id] = map[string]any{"status": status}
	}
	return doc
}
