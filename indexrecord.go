package twinhub

import (
	"math"
	"time"
	"unicode/utf8"
)

// The index can hand back any twin's full Record and the store revision it
// was stored at, so that the hub can answer from memory what would
// otherwise be a KV read: at a million twins, a KV read of a record whose
// message block is not in memory loads the whole 4 MB block from disk.
// The hub does not use it yet. Starting twin updates from it was tried and
// measured: it saves nothing at a million twins, because JetStream's own
// compare-and-set check (Nats-Expected-Last-Subject-Sequence) loads the
// same block, and in a hot loop on a few twins the index is often a write
// behind, which costs a failed compare-and-set (BENCHMARKS.md). Twin reads
// after the index has caught up with the store, as queries do, are where
// it should serve.
//
// record rebuilds the Record from the flatTwin, without a JSON round
// trip: it is the record as DecodeRecord gives it from the stored JSON
// (TestIndexRecord, FuzzIndexRecord). A twin whose record had something
// the flatTwin does not keep (twinBuilder.inexact) is not rebuilt.

// record returns the record of k as the index has it, and the store's
// revision of it. The record is the caller's to change: the identity and
// every map and metadata node are new; arrays and the strings are shared,
// as Record.clone shares them (nothing changes them in place). ok is false
// when the index has no such identity, has it only since its last merge
// (new identities wait for one, see index.set), or cannot rebuild it
// exactly. It does not lock: it is safe for use with the writer.
func (ix *index) record(k Key) (rec *Record, rev uint64, ok bool) {
	_, t := ix.table(k).view.Load().get(nodeKey(k))
	if t == nil || t.shape&shapeInexact != 0 {
		return nil, 0, false
	}
	return t.record(ix.dict), t.rev, true
}

// record rebuilds the record the twin was made from.
func (t *flatTwin) record(d *pathDict) *Record {
	id := Record{Device: t.dev, Module: t.mod}
	r := &Record{
		Device:          id.deviceCopy(),
		Module:          id.moduleCopy(),
		IdentityVersion: t.identityVersion,
		Twin:            Twin{Version: t.version, ModelID: t.modelID},
	}
	if !t.nilTags {
		r.Twin.Tags = t.object(d, 0, int(t.desiredAt), 0)
	}
	r.Twin.Desired = t.properties(d, secDesired, t.desiredVersion, t.desiredStamp, shapeDesiredValues, shapeDesiredMetadata)
	r.Twin.Reported = t.properties(d, secReported, t.reportedVersion, t.reportedStamp, shapeReportedValues, shapeReportedMetadata)
	return r
}

func (t *flatTwin) properties(d *pathDict, s section, version int64, own uint16, values, metadata uint8) Properties {
	lo, hi := t.bounds(s)
	p := Properties{Version: version}
	if t.shape&values != 0 {
		p.Values = t.object(d, lo, hi, 0)
	}
	if t.shape&metadata != 0 {
		// Every metadata node of the section in one allocation.
		n := 1
		for i := lo; i < hi; i++ {
			if t.fields[i].stamp != noStamp {
				n++
			}
		}
		nodes := make([]Metadata, n)
		p.Metadata = t.metadata(d, own, lo, hi, &nodes)
	}
	return p
}

// metadata rebuilds the metadata node of stamp own whose children are
// described by fields[lo:hi], taking the nodes from *nodes.
func (t *flatTwin) metadata(d *pathDict, own uint16, lo, hi int, nodes *[]Metadata) *Metadata {
	m := &(*nodes)[0]
	*nodes = (*nodes)[1:]
	s := t.stamps[own]
	m.LastUpdated, m.LastUpdatedVersion = s.time(), s.ver
	children := t.stamped(lo, hi)
	if children == 0 {
		return m
	}
	m.Children = make(map[string]*Metadata, children)
	for i := lo; i < hi; i = t.fields[i].after(i) {
		f := &t.fields[i]
		switch {
		case f.stamp == noStamp:
		case f.kind == fObject:
			m.Children[d.name(f.path)] = t.metadata(d, f.stamp, i+1, f.after(i), nodes)
		default:
			m.Children[d.name(f.path)] = t.metadata(d, f.stamp, 0, 0, nodes)
		}
	}
	return m
}

// etagsStamped tells whether the identity's etag is the one Record.stamp
// derives from its version: the index keeps the stamped identity.
func etagsStamped(r *Record) bool {
	tag := identityETag(r.IdentityVersion)
	return (r.Device == nil || r.Device.ETag == tag) && (r.Module == nil || r.Module.ETag == tag)
}

// exactMetadata tells whether a metadata tree is one the flatTwin keeps
// as decoding its JSON would give it: instants in UTC without a monotonic
// reading, maps of children nil or not empty, names valid UTF-8. (Nil
// nodes and the children of leaves are for twinBuilder.tree to see.)
func exactMetadata(m *Metadata) bool {
	if m == nil {
		return true
	}
	if t := m.LastUpdated.Time; t.Location() != time.UTC || t != t.Round(0) {
		return false
	}
	if m.Children != nil && len(m.Children) == 0 {
		return false
	}
	for k, c := range m.Children {
		if !utf8.ValidString(k) || !exactMetadata(c) {
			return false
		}
	}
	return true
}

// decodedValue tells whether v (kept as is by the flatTwin) is what decoding
// its JSON gives back: an array of what encoding/json decodes into an any.
func decodedValue(v any) bool {
	switch x := v.(type) {
	case nil, bool:
		return true
	case float64:
		return !math.IsInf(x, 0) && !math.IsNaN(x)
	case string:
		return utf8.ValidString(x)
	case []any:
		if x == nil {
			return false // stored as null
		}
		for _, e := range x {
			if !decodedValue(e) {
				return false
			}
		}
		return true
	case map[string]any:
		if x == nil {
			return false
		}
		for k, e := range x {
			if !utf8.ValidString(k) || !decodedValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

// propertiesShape is the shape bits of a twin's properties.
func propertiesShape(tw *Twin, inexact bool) uint8 {
	var s uint8
	if tw.Desired.Values != nil {
		s |= shapeDesiredValues
	}
	if tw.Reported.Values != nil {
		s |= shapeReportedValues
	}
	if tw.Desired.Metadata != nil {
		s |= shapeDesiredMetadata
	}
	if tw.Reported.Metadata != nil {
		s |= shapeReportedMetadata
	}
	if inexact {
		s |= shapeInexact
	}
	return s
}
