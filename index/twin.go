package index

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/query"
)

// The index keeps every twin in a compact, immutable form (flatTwin) that
// queries evaluate against without building the JSON document: the tags,
// desired and reported trees are flattened into one array of 16-byte
// fields in pre-order, each naming its property path by a number from a
// dictionary shared by all twins (pathDict), with its string bytes in one
// per-twin string and its $metadata reduced to an index into a short list
// of distinct (time, version) stamps. The identity (*Device or *Module) is
// the record's own. The full document, with $metadata, is rendered only
// for the twins a page returns.

// pathID numbers a property path in a pathDict: 0 is the document itself.
type pathID = uint32

const (
	rootPath pathID = iota
	tagsPath
	propertiesPath
	desiredPath
	reportedPath
)

// pathDict numbers the property paths of tags, desired and reported
// properties that any twin has had, as (parent path, member name) pairs.
// It is safe for concurrent use; builders keep their own cache of it
// (twinBuilder.child). Names are read without locking, as a name is
// written before any twin that uses it is published. Paths are never
// removed: a fleet whose twins all use different property names makes it
// grow.
type pathDict struct {
	mu     sync.RWMutex
	ids    map[string]pathID // by pathKey
	chunks atomic.Pointer[[]*[dictChunk]pathEntry]
	n      uint32
}

const dictChunk = 1024

type pathEntry struct {
	parent pathID
	name   string
}

// pathKey is the parent's id in four bytes, then the member name.
func pathKey(buf []byte, parent pathID, name []byte) []byte {
	buf = append(buf[:0], byte(parent>>24), byte(parent>>16), byte(parent>>8), byte(parent))
	return append(buf, name...)
}

func newPathDict() *pathDict {
	d := &pathDict{ids: map[string]pathID{}}
	d.chunks.Store(&[]*[dictChunk]pathEntry{})
	for _, p := range []struct {
		parent pathID
		name   string
	}{{0, ""}, {rootPath, "tags"}, {rootPath, "properties"}, {propertiesPath, "desired"}, {propertiesPath, "reported"}} {
		d.child(pathKey(nil, p.parent, []byte(p.name)))
	}
	return d
}

// child returns the id of the path that key (see pathKey) names, adding
// it if new.
func (d *pathDict) child(key []byte) pathID {
	d.mu.RLock()
	id, ok := d.ids[string(key)]
	d.mu.RUnlock()
	if ok {
		return id
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.ids[string(key)]; ok {
		return id
	}
	id = d.n
	cs := *d.chunks.Load()
	if id%dictChunk == 0 {
		cs = append(slices.Clip(cs), new([dictChunk]pathEntry))
		d.chunks.Store(&cs)
	}
	parent := pathID(key[0])<<24 | pathID(key[1])<<16 | pathID(key[2])<<8 | pathID(key[3])
	cs[id/dictChunk][id%dictChunk] = pathEntry{parent: parent, name: string(key[4:])}
	d.n++
	d.ids[string(key)] = id
	return id
}

// lookup returns the id of a member of parent, if any twin has had it.
func (d *pathDict) lookup(parent pathID, name string) (pathID, bool) {
	k := string(pathKey(nil, parent, []byte(name)))
	d.mu.RLock()
	id, ok := d.ids[k]
	d.mu.RUnlock()
	return id, ok
}

func (d *pathDict) name(id pathID) string {
	return (*d.chunks.Load())[id/dictChunk][id%dictChunk].name
}

// fieldKind is what a field holds.
type fieldKind uint8

const (
	fNull   fieldKind = iota
	fBool             // v: 0 or 1
	fNumber           // v: the float64's bits
	fString           // v: offset << 32 | length in the twin's data
	fObject           // v: how many fields follow inside the object
	fRef              // v: index in refs: an array, or a value of another Go type
	fMeta             // metadata of a property that has no value, shown only in $metadata
)

// field is one property of a tags, desired or reported tree.
type field struct {
	path  pathID
	kind  fieldKind
	stamp uint16 // index in stamps, or noStamp: the property's $metadata
	v     uint64
}

const noStamp = math.MaxUint16

// after returns the position of the field after f, which is at i, and
// after what f holds: the next member of f's object.
func (f *field) after(i int) int {
	if f.kind == fObject {
		return i + 1 + int(f.v)
	}
	return i + 1
}

// stamp is a metadata node's $lastUpdated and $lastUpdatedVersion.
type stamp struct {
	sec  int64
	nsec int32
	zero bool
	ver  int64
}

func stampOf(m *twinhub.Metadata) stamp {
	if m == nil {
		return stamp{zero: true}
	}
	t := m.LastUpdated
	if t.IsZero() {
		return stamp{zero: true, ver: m.LastUpdatedVersion}
	}
	return stamp{sec: t.Unix(), nsec: int32(t.Nanosecond()), ver: m.LastUpdatedVersion}
}

func (s stamp) time() twinhub.Time {
	if s.zero {
		return twinhub.Time{}
	}
	return twinhub.Time{Time: time.Unix(s.sec, int64(s.nsec)).UTC()}
}

// section is one of the three property trees of a twin.
type section uint8

const (
	secTags section = iota
	secDesired
	secReported
)

// flatTwin is a twin as the index keeps it. It is immutable: a change to
// the twin replaces the whole flatTwin.
type flatTwin struct {
	id identity // its text is at the end of data

	version         int64
	desiredVersion  int64
	reportedVersion int64
	modelID         string
	// configs are the twin's configuration statuses by id (nil: none).
	configs map[string]string

	// fields holds the tags, then the desired, then the reported
	// properties, each tree in pre-order.
	fields     []field
	desiredAt  uint32 // first field of desired properties
	reportedAt uint32 // first field of reported properties

	desiredStamp, reportedStamp uint16 // the $metadata of the sections
	nilTags                     bool   // the record's tags are a nil map (shown as null)
	// exact is set when record rebuilds the record the twin was made
	// from, as the store's decoder reads it (watch.go says when).
	exact  bool
	stamps []stamp
	data   string // the bytes of string values
	// refs holds the values of fRef fields. Few twins have any: a
	// pointer leaves room in the header for rev.
	refs *[]any
	// rev is the store's revision of the record the twin was made from.
	rev uint64
}

func (t *flatTwin) bounds(s section) (lo, hi int) {
	switch s {
	case secTags:
		return 0, int(t.desiredAt)
	case secDesired:
		return int(t.desiredAt), int(t.reportedAt)
	}
	return int(t.reportedAt), len(t.fields)
}

// find returns the position of the field with path id in section s, or -1.
func (t *flatTwin) find(id pathID, s section) int {
	lo, hi := t.bounds(s)
	fs := t.fields[lo:hi]
	for i := range fs {
		if fs[i].path == id {
			if fs[i].kind == fMeta {
				return -1
			}
			return lo + i
		}
	}
	return -1
}

// findAt is find that looks first at position *hint, where the field was
// in the twin before, then around it (twins with the same properties have
// the same layout, and a property or two more or less moves a field by a
// few places), and leaves the position there.
func (t *flatTwin) findAt(id pathID, s section, hint *int32) int {
	lo, hi := t.bounds(s)
	h := min(max(int(*hint), lo), hi)
	fs := t.fields
	for d := 0; h-d >= lo || h+d < hi; d++ {
		if i := h + d; i < hi && fs[i].path == id {
			h = i
			break
		}
		if i := h - d - 1; i >= lo && fs[i].path == id {
			h = i
			break
		}
	}
	if h >= hi || fs[h].path != id {
		return -1
	}
	*hint = int32(h)
	if fs[h].kind == fMeta {
		return -1
	}
	return h
}

func (t *flatTwin) str(v uint64) string {
	off, n := v>>32, v&math.MaxUint32
	return t.data[off : off+n]
}

// value is the query value of field i; objects are built as maps.
func (t *flatTwin) value(d *pathDict, i int) query.Value {
	f := &t.fields[i]
	switch f.kind {
	case fNull:
		return query.Value{Kind: query.Null}
	case fBool:
		return query.Value{Kind: query.Bool, Bool: f.v != 0}
	case fNumber:
		return query.Value{Kind: query.Number, Num: math.Float64frombits(f.v)}
	case fString:
		return query.Value{Kind: query.String, Str: t.str(f.v)}
	case fObject:
		return query.ValueOf(t.object(d, i+1, i+1+int(f.v), 0))
	case fRef:
		return query.ValueOf((*t.refs)[f.v])
	}
	return query.Value{}
}

// json returns field i as encoding/json would decode it.
func (t *flatTwin) json(d *pathDict, i int) any {
	f := &t.fields[i]
	switch f.kind {
	case fBool:
		return f.v != 0
	case fNumber:
		return math.Float64frombits(f.v)
	case fString:
		return t.str(f.v)
	case fObject:
		return t.object(d, i+1, i+1+int(f.v), 0)
	case fRef:
		return (*t.refs)[f.v]
	}
	return nil
}

// object builds the map of the members in fields[lo:hi], one tree level
// with what is below it, with room for extra more.
func (t *flatTwin) object(d *pathDict, lo, hi, extra int) map[string]any {
	n := extra
	for i := lo; i < hi; i = t.fields[i].after(i) {
		if t.fields[i].kind != fMeta {
			n++
		}
	}
	m := make(map[string]any, n)
	for i := lo; i < hi; i = t.fields[i].after(i) {
		if f := &t.fields[i]; f.kind != fMeta {
			m[d.name(f.path)] = t.json(d, i)
		}
	}
	return m
}

// renderer renders one twin's documents. The metadata of the leaves that
// share a stamp is one map, shared: documents are read-only.
type renderer struct {
	d      *pathDict
	t      *flatTwin
	leaves []map[string]any // by stamp
	times  []any            // by stamp: $lastUpdated, formatted once
}

// metadata builds the $metadata of a section, or of an object in it: its
// own stamp and one member per property that has metadata, as
// Metadata.wire does.
func (r *renderer) metadata(own uint16, lo, hi int) map[string]any {
	t := r.t
	m := make(map[string]any, 2+t.stamped(lo, hi))
	r.stamp(m, own)
	for i := lo; i < hi; i = t.fields[i].after(i) {
		f := &t.fields[i]
		switch {
		case f.stamp == noStamp:
		case f.kind == fObject:
			m[r.d.name(f.path)] = r.metadata(f.stamp, i+1, f.after(i))
		default:
			if r.leaves[f.stamp] == nil {
				r.leaves[f.stamp] = make(map[string]any, 2)
				r.stamp(r.leaves[f.stamp], f.stamp)
			}
			m[r.d.name(f.path)] = r.leaves[f.stamp]
		}
	}
	return m
}

// stamped counts the members of fields[lo:hi] (one tree level) that have
// metadata.
func (t *flatTwin) stamped(lo, hi int) int {
	n := 0
	for i := lo; i < hi; i = t.fields[i].after(i) {
		if t.fields[i].stamp != noStamp {
			n++
		}
	}
	return n
}

// stamp adds $lastUpdated and $lastUpdatedVersion to m.
func (r *renderer) stamp(m map[string]any, i uint16) {
	s := r.t.stamps[i]
	if r.times[i] == nil {
		r.times[i] = s.time().String()
	}
	m["$lastUpdated"] = r.times[i]
	if s.ver > 0 {
		m["$lastUpdatedVersion"] = float64(s.ver)
	}
}

// doc renders the twin as GET /twins/{id} shows it: what Record.TwinDoc
// returns for the record the twin was made from (TestFlatTwin checks it).
func (t *flatTwin) doc(d *pathDict) map[string]any {
	r := renderer{d: d, t: t, leaves: make([]map[string]any, len(t.stamps)), times: make([]any, len(t.stamps))}
	auth := t.id.authentication()
	doc := make(map[string]any, 17)
	doc["etag"] = twinhub.TwinETag(t.version)
	doc["deviceEtag"] = t.id.etag()
	doc["version"] = float64(t.version)
	doc["authenticationType"] = auth.Type
	doc["x509Thumbprint"] = auth.X509Thumbprint.Doc()
	doc["modelId"] = t.modelID
	if len(t.configs) > 0 {
		doc["configurations"] = (&twinhub.Twin{Configurations: t.configs}).ConfigurationsDoc()
	}
	var tags map[string]any
	if !t.nilTags {
		tags = t.object(d, 0, int(t.desiredAt), 0)
	}
	doc["tags"] = tags
	doc["properties"] = map[string]any{
		"desired":  r.section(secDesired, t.desiredVersion, t.desiredStamp),
		"reported": r.section(secReported, t.reportedVersion, t.reportedStamp),
	}
	twinhub.IdentityDoc(doc, t.id.device(), t.id.module())
	return doc
}

func (r *renderer) section(s section, version int64, own uint16) map[string]any {
	lo, hi := r.t.bounds(s)
	m := r.t.object(r.d, lo, hi, 2)
	m["$version"] = float64(version)
	m["$metadata"] = r.metadata(own, lo, hi)
	return m
}

// twinBuilder flattens records. The index's writer owns one and reuses
// its buffers; each flatTwin gets exact-size copies.
type twinBuilder struct {
	dict    *pathDict
	fields  []field
	data    []byte
	stamps  []stamp
	refs    []any
	seen    map[stamp]uint16  // stamps by value, once there are many
	members []member          // the members of the objects being flattened
	key     []byte            // a pathKey being looked up
	paths   map[string]pathID // the dictionary's ids this builder has used
	// The last instant flattenJSON read, raw and parsed: a patch stamps
	// all it touches with one instant.
	lastTime  []byte
	lastStamp stamp
	// The JSON of the last leaf's metadata flattenJSON read, and its stamp.
	lastLeaf      []byte
	lastLeafStamp uint16
	// lossy is set when the twin being flattened holds what its flatTwin
	// does not keep (see flatTwin.exact).
	lossy bool
	// dev and mod are what flattenJSON reads an identity into before
	// appendIdentity copies it into the twin.
	dev twinhub.Device
	mod twinhub.Module
}

type member struct {
	id   pathID
	name string
	v    any
}

// child returns the dictionary's id of a member of parent, from the
// builder's cache when it has it: the dictionary's lock is then left
// alone, which matters when builders work in parallel.
func (b *twinBuilder) child(parent pathID, name []byte) pathID {
	b.key = pathKey(b.key, parent, name)
	if id, ok := b.paths[string(b.key)]; ok {
		return id
	}
	id := b.dict.child(b.key)
	if b.paths == nil || len(b.paths) > 1<<16 {
		b.paths = map[string]pathID{}
	}
	b.paths[string(b.key)] = id
	return id
}

func (b *twinBuilder) childString(parent pathID, name string) pathID {
	b.key = append(pathKey(b.key, parent, nil), name...)
	if id, ok := b.paths[string(b.key)]; ok {
		return id
	}
	return b.child(parent, []byte(name))
}

func (b *twinBuilder) flatten(r *twinhub.Record) *flatTwin {
	b.fields, b.data, b.stamps, b.refs = b.fields[:0], b.data[:0], b.stamps[:0], b.refs[:0]
	clear(b.seen)
	b.tree(tagsPath, r.Twin.Tags, nil)
	desiredAt := uint32(len(b.fields))
	desiredStamp := b.stamp(r.Twin.Desired.Metadata)
	b.tree(desiredPath, r.Twin.Desired.Values, r.Twin.Desired.Metadata)
	reportedAt := uint32(len(b.fields))
	reportedStamp := b.stamp(r.Twin.Reported.Metadata)
	b.tree(reportedPath, r.Twin.Reported.Values, r.Twin.Reported.Metadata)
	t := flatTwin{
		version:         r.Twin.Version,
		desiredVersion:  r.Twin.Desired.Version,
		reportedVersion: r.Twin.Reported.Version,
		modelID:         r.Twin.ModelID,
		configs:         maps.Clone(r.Twin.Configurations),
		nilTags:         r.Twin.Tags == nil,
		desiredAt:       desiredAt,
		desiredStamp:    desiredStamp,
		reportedAt:      reportedAt,
		reportedStamp:   reportedStamp,
	}
	ft, _ := b.finish(&t, r.Device, r.Module, r.IdentityVersion)
	return ft
}

// finish makes the flatTwin of t, whose fields, string values, stamps and
// refs the builder holds, with the identity of dev or mod; exact is
// appendIdentity's.
func (b *twinBuilder) finish(t *flatTwin, dev *twinhub.Device, mod *twinhub.Module, version int64) (ft *flatTwin, exact bool) {
	t.stamps = b.stamps // placeTwin copies them into the twin
	if len(b.refs) > 0 {
		refs := slices.Clone(b.refs)
		t.refs = &refs
		clear(b.refs)
	}
	ft, b.data, exact = placeTwin(t, b.fields, b.data, dev, mod, version)
	return ft, exact
}

// tree adds the members of m under parent, in pre-order, each with the
// stamp of its metadata node in meta (nil for tags, and below properties
// that have no metadata), then the metadata nodes that have no value.
func (b *twinBuilder) tree(parent pathID, m map[string]any, meta *twinhub.Metadata) {
	// Members go in the order of their names (as encoding/json writes
	// them, see flattenJSON), so that twins with the same properties have
	// the same layout and a scan finds a property where it found it in
	// the twin before.
	start := len(b.members)
	for k, v := range m {
		b.members = append(b.members, member{b.childString(parent, k), k, v})
	}
	slices.SortFunc(b.members[start:], func(x, y member) int { return strings.Compare(x.name, y.name) })
	end := len(b.members)
	for i := start; i < end; i++ {
		id, k, v := b.members[i].id, b.members[i].name, b.members[i].v
		var cm *twinhub.Metadata
		st := uint16(noStamp)
		if meta != nil {
			if cm = meta.Children[k]; cm != nil {
				st = b.stamp(cm)
			}
		}
		f := field{path: id, stamp: st}
		switch x := v.(type) {
		case nil:
			f.kind = fNull
		case bool:
			f.kind = fBool
			if x {
				f.v = 1
			}
		case float64:
			f.kind, f.v = fNumber, math.Float64bits(x)
		case string:
			f.kind, f.v = fString, uint64(len(b.data))<<32|uint64(len(x))
			b.data = append(b.data, x...)
		case map[string]any:
			if x != nil {
				at := len(b.fields)
				f.kind = fObject
				b.fields = append(b.fields, f)
				b.tree(id, x, cm)
				b.fields[at].v = uint64(len(b.fields) - at - 1)
				continue
			}
			f.kind, f.v = fRef, uint64(len(b.refs))
			b.refs = append(b.refs, v)
		default:
			f.kind, f.v = fRef, uint64(len(b.refs))
			b.refs = append(b.refs, v)
		}
		b.fields = append(b.fields, f)
	}
	clear(b.members[start:])
	b.members = b.members[:start]
	if meta == nil {
		return
	}
	for k, cm := range meta.Children {
		if _, ok := m[k]; !ok {
			if cm != nil {
				b.fields = append(b.fields, field{path: b.childString(parent, k), kind: fMeta, stamp: b.stamp(cm)})
			}
		}
	}
}

// stamp returns the index of m's stamp, adding it if the twin has no
// such stamp yet. Twins are limited in size far below 65,535 metadata
// nodes; past that, the last stamp is reused.
func (b *twinBuilder) stamp(m *twinhub.Metadata) uint16 { return b.stampIndex(stampOf(m)) }

func (b *twinBuilder) stampIndex(s stamp) uint16 {
	if len(b.stamps) <= 16 {
		for i := range b.stamps {
			if b.stamps[i] == s {
				return uint16(i)
			}
		}
	} else {
		if b.seen == nil {
			b.seen = map[stamp]uint16{}
		}
		if len(b.seen) == 0 {
			for i, x := range b.stamps {
				b.seen[x] = uint16(i)
			}
		}
		if i, ok := b.seen[s]; ok {
			return i
		}
	}
	if len(b.stamps) >= noStamp {
		b.lossy = true
		return noStamp - 1
	}
	b.stamps = append(b.stamps, s)
	if len(b.seen) > 0 {
		b.seen[s] = uint16(len(b.stamps) - 1)
	}
	return uint16(len(b.stamps) - 1)
}

// sysField is a system property of the twin document, read from the
// identity and the twin's counters.
type sysField uint8

const (
	sysNone sysField = iota
	sysDeviceID
	sysModuleID
	sysETag
	sysDeviceETag
	sysVersion
	sysStatus
	sysStatusUpdateTime
	sysConnectionState
	sysLastActivityTime
	sysC2DCount
	sysAuthType
	sysModelID
	sysPrimaryThumbprint
	sysSecondaryThumbprint
	sysIoTEdge
	sysDeviceScope
	sysParentScopes
	sysDesiredVersion
	sysReportedVersion
	// sysConfigStatus is configurations.{id}.status, the id in attr.cfg.
	sysConfigStatus
	// sysConfigurations is the configurations object, undefined when no
	// configuration targets the twin (a node's first configuration pass
	// asks every twin for it: rendering each twin's whole document for it
	// cost 6 s of CPU at a start at a million twins).
	sysConfigurations
)

// topSys and subSys name the system properties as Record.TwinDoc writes
// them; TestTwinDocSystemProperties keeps them in step.
var (
	topSys = map[string]sysField{
		"deviceId": sysDeviceID, "moduleId": sysModuleID, "etag": sysETag,
		"deviceEtag": sysDeviceETag, "version": sysVersion, "status": sysStatus,
		"statusUpdateTime": sysStatusUpdateTime, "connectionState": sysConnectionState,
		"lastActivityTime": sysLastActivityTime, "cloudToDeviceMessageCount": sysC2DCount,
		"authenticationType": sysAuthType, "modelId": sysModelID,
		"deviceScope": sysDeviceScope, "parentScopes": sysParentScopes,
	}
	subSys = map[string]map[string]sysField{
		"x509Thumbprint": {"primaryThumbprint": sysPrimaryThumbprint, "secondaryThumbprint": sysSecondaryThumbprint},
		"capabilities":   {"iotEdge": sysIoTEdge},
	}
)

func strValue(s string) query.Value  { return query.Value{Kind: query.String, Str: s} }
func numValue(f float64) query.Value { return query.Value{Kind: query.Number, Num: f} }
func optionalValue(s *string) query.Value {
	if s == nil || *s == "" {
		return query.Value{Kind: query.Null}
	}
	return strValue(*s)
}

// sys returns a system property as Record.TwinDoc shows it.
func (t *flatTwin) sys(f sysField) query.Value {
	id := &t.id
	device := !id.isModule
	switch f {
	case sysDeviceID:
		return strValue(id.deviceID())
	case sysModuleID:
		if !device {
			return strValue(id.moduleID())
		}
	case sysETag:
		return strValue(twinhub.TwinETag(t.version))
	case sysDeviceETag:
		return strValue(id.etag())
	case sysVersion:
		return numValue(float64(t.version))
	case sysStatus:
		if device {
			return strValue(id.status())
		}
	case sysStatusUpdateTime:
		if device {
			return strValue(instantOf(id.times[timeStatus]).String())
		}
	case sysConnectionState:
		return strValue(id.connectionState())
	case sysLastActivityTime:
		return strValue(instantOf(id.times[timeActivity]).String())
	case sysC2DCount:
		return numValue(float64(id.c2d))
	case sysAuthType:
		return strValue(id.authType())
	case sysModelID:
		return strValue(t.modelID)
	case sysPrimaryThumbprint:
		return optionalValue(id.optional(optPrimaryThumbprint, idPrimaryThumbprint))
	case sysSecondaryThumbprint:
		return optionalValue(id.optional(optSecondaryThumbprint, idSecondaryThumbprint))
	case sysIoTEdge:
		if device {
			return query.Value{Kind: query.Bool, Bool: id.iotEdge}
		}
	case sysDeviceScope:
		if device && id.opt&optDeviceScope != 0 {
			return strValue(id.field(idDeviceScope))
		}
	case sysParentScopes:
		if device {
			return query.ValueOf(id.parentScopes().Doc())
		}
	case sysDesiredVersion:
		return numValue(float64(t.desiredVersion))
	case sysReportedVersion:
		return numValue(float64(t.reportedVersion))
	case sysConfigurations:
		if len(t.configs) > 0 {
			return query.ValueOf((&twinhub.Twin{Configurations: t.configs}).ConfigurationsDoc())
		}
	}
	return query.Value{}
}

// docKeys are the members of the twin documents of a device and of a
// module, and of their object-valued system properties: a path that names
// none of them (nor tags or properties) is undefined in every twin.
var docKeys = sync.OnceValue(func() map[string]bool {
	keys := map[string]bool{"configurations": true} // shown when a configuration targets the twin
	for _, r := range []*twinhub.Record{{Device: &twinhub.Device{}}, {Module: &twinhub.Module{}}} {
		doc := r.TwinDoc()
		for k, v := range doc {
			keys[k] = true
			if m, ok := v.(map[string]any); ok && k != "tags" && k != "properties" {
				for sub := range maps.Keys(m) {
					keys[k+"."+sub] = true
				}
			}
		}
	}
	return keys
})
