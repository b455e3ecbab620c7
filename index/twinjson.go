package index

import (
	"math"
	"slices"
	"strings"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
)

// twinWriter writes flat twins as JSON: the pages of whole twins that REST
// queries return. One writer serves a page's twins, reusing its buffers.
type twinWriter struct {
	d *pathDict
	t *flatTwin
	// keys is the stack of the members of the objects being written, each
	// object's in the order of their names.
	keys  []jsonMember
	parts recordjson.TwinDocParts
	// dev or mod is the identity of the twin being written.
	dev twinhub.Device
	mod twinhub.Module
}

// appendDoc appends t as json.Marshal(t.doc(d)) writes it, straight from
// the flat form: building the maps of doc and encoding them took about 30
// us a twin, three quarters of a selective query's time under load. It
// returns false for what it leaves to doc (a value of a kind JSON does not
// decode to, or a property named as a member the document adds, such as
// $version). TestFlatTwin checks that both agree.
func (w *twinWriter) appendDoc(b []byte, t *flatTwin) ([]byte, bool) {
	w.t = t
	w.keys = w.keys[:0]
	w.parts = recordjson.TwinDocParts{
		IdentityVersion: t.id.version,
		Version:         t.version, ModelID: t.modelID, Configurations: t.configs,
		Sections: w,
	}
	if t.id.isModule {
		w.mod = t.id.moduleValue()
		w.parts.Module = &w.mod
	} else {
		w.dev = t.id.deviceValue()
		w.parts.Device = &w.dev
	}
	return recordjson.AppendTwinDocParts(b, &w.parts)
}

// jsonMember is a member of an object being written: field i of the twin,
// or one of the members the document adds (i < 0).
type jsonMember struct {
	name string
	i    int
}

const (
	memberVersion = -1 - iota // $version of a section
	memberMetadata
	memberLastUpdated
	memberLastUpdatedVersion
)

func (w *twinWriter) Tags(e recordjson.Encoder) {
	if w.t.nilTags {
		e.Raw("null")
		return
	}
	w.object(e, 0, int(w.t.desiredAt))
}

func (w *twinWriter) Desired(e recordjson.Encoder) {
	w.section(e, secDesired, w.t.desiredVersion, w.t.desiredStamp)
}

func (w *twinWriter) Reported(e recordjson.Encoder) {
	w.section(e, secReported, w.t.reportedVersion, w.t.reportedStamp)
}

func (w *twinWriter) section(e recordjson.Encoder, sec section, version int64, own uint16) {
	lo, hi := w.t.bounds(sec)
	start := len(w.keys)
	w.keys = append(w.keys, jsonMember{"$version", memberVersion}, jsonMember{"$metadata", memberMetadata})
	if !w.members(start, lo, hi, false) {
		e.Fail()
		return
	}
	for i, m := range w.sorted(start) {
		w.comma(e, i)
		switch m.i {
		case memberVersion:
			e.Raw(`"$version":`)
			e.Float(float64(version))
		case memberMetadata:
			e.Raw(`"$metadata":`)
			w.metadata(e, own, lo, hi)
		default:
			w.value(e, m)
		}
	}
	w.end(e, start)
}

// object writes the members of fields[lo:hi], one level of a tree.
func (w *twinWriter) object(e recordjson.Encoder, lo, hi int) {
	start := len(w.keys)
	w.members(start, lo, hi, false)
	for i, m := range w.sorted(start) {
		w.comma(e, i)
		w.value(e, m)
	}
	w.end(e, start)
}

// metadata writes the $metadata of a section or of an object in it, as
// Metadata.wire makes it: its own stamp, and a member for each property
// that has metadata (an object's own $metadata, a leaf's stamp).
func (w *twinWriter) metadata(e recordjson.Encoder, own uint16, lo, hi int) {
	start := len(w.keys)
	w.keys = append(w.keys, jsonMember{"$lastUpdated", memberLastUpdated})
	if w.t.stamps[own].ver > 0 {
		w.keys = append(w.keys, jsonMember{"$lastUpdatedVersion", memberLastUpdatedVersion})
	}
	if !w.members(start, lo, hi, true) {
		e.Fail()
		return
	}
	for i, m := range w.sorted(start) {
		w.comma(e, i)
		switch m.i {
		case memberLastUpdated, memberLastUpdatedVersion:
			w.stamp(e, own, m.i == memberLastUpdatedVersion)
			continue
		}
		e.String(m.name)
		e.Raw(":")
		f := &w.t.fields[m.i]
		if f.kind == fObject {
			w.metadata(e, f.stamp, m.i+1, f.after(m.i))
			continue
		}
		e.Raw("{")
		w.stamp(e, f.stamp, false)
		if w.t.stamps[f.stamp].ver > 0 {
			e.Raw(",")
			w.stamp(e, f.stamp, true)
		}
		e.Raw("}")
	}
	w.end(e, start)
}

// stamp writes the $lastUpdated (or $lastUpdatedVersion) member of stamp i.
func (w *twinWriter) stamp(e recordjson.Encoder, i uint16, version bool) {
	st := w.t.stamps[i]
	if version {
		e.Raw(`"$lastUpdatedVersion":`)
		e.Float(float64(st.ver))
		return
	}
	e.Raw(`"$lastUpdated":`)
	e.Time(st.time())
}

// members pushes the members of fields[lo:hi] (one level) after those
// the document adds, pushed from start: with values, or with metadata when
// meta is set. It returns false when a name is one the document adds,
// which the maps of doc would overwrite.
func (w *twinWriter) members(start, lo, hi int, meta bool) bool {
	special := len(w.keys)
	for i := lo; i < hi; i = w.t.fields[i].after(i) {
		f := &w.t.fields[i]
		if (meta && f.stamp == noStamp) || (!meta && f.kind == fMeta) {
			continue
		}
		name := w.d.name(f.path)
		for _, k := range w.keys[start:special] {
			if k.name == name {
				return false
			}
		}
		w.keys = append(w.keys, jsonMember{name, i})
	}
	return true
}

// sorted returns the members pushed since start in the order of their
// names, as encoding/json writes a map, and opens the object.
func (w *twinWriter) sorted(start int) []jsonMember {
	ms := w.keys[start:]
	if !slices.IsSortedFunc(ms, compareMembers) {
		slices.SortFunc(ms, compareMembers)
	}
	return ms
}

func compareMembers(a, b jsonMember) int { return strings.Compare(a.name, b.name) }

// comma opens the object before its first member and separates the
// others.
func (w *twinWriter) comma(e recordjson.Encoder, i int) {
	if i == 0 {
		e.Raw("{")
	} else {
		e.Raw(",")
	}
}

// end closes the object whose members were pushed from start (an empty
// one was never opened) and pops them.
func (w *twinWriter) end(e recordjson.Encoder, start int) {
	if len(w.keys) == start {
		e.Raw("{}")
	} else {
		e.Raw("}")
	}
	w.keys = w.keys[:start]
}

// value writes member m, a field of the twin, with its name.
func (w *twinWriter) value(e recordjson.Encoder, m jsonMember) {
	e.String(m.name)
	e.Raw(":")
	f := &w.t.fields[m.i]
	switch f.kind {
	case fNull:
		e.Raw("null")
	case fBool:
		if f.v != 0 {
			e.Raw("true")
		} else {
			e.Raw("false")
		}
	case fNumber:
		e.Float(math.Float64frombits(f.v))
	case fString:
		e.String(w.t.str(f.v))
	case fObject:
		w.object(e, m.i+1, f.after(m.i))
	case fRef:
		e.Value((*w.t.refs)[f.v])
	}
}
