package index

import (
	"maps"

	"github.com/twinhub/twinhub"
)

// Record returns k's record rebuilt from the index, and its revision,
// when the index has seen revision seen and holds k's twin exactly
// (flatTwin.exact); otherwise ok is false and the caller reads the store.
//
// For a hub that is its store's only writer, with seen its last
// acknowledged write: the record is then the one the store holds, and a
// change to it can be stored with compare-and-set on rev without reading
// the record first. At a million twins that read was a JetStream request
// and a decoding for nearly every update (the record cache holds a few
// percent of the twins).
func (ix *Index) Record(k twinhub.Key, seen uint64) (r *twinhub.Record, rev uint64, ok bool) {
	t, known := ix.twinAt(k, seen)
	if !known || t == nil || !t.exact {
		return nil, 0, false
	}
	return t.record(ix.dict), t.rev, true
}

// record rebuilds the record t was made from, as the store's decoder reads
// it (t.exact must be set), with its own copies of everything a writer
// changes; leaves and arrays are shared, as Record.Clone shares them.
func (t *flatTwin) record(d *pathDict) *twinhub.Record {
	r := &twinhub.Record{Device: t.id.device(), Module: t.id.module(), IdentityVersion: t.id.version}
	r.Twin = twinhub.Twin{
		Version:        t.version,
		ModelID:        t.modelID,
		Configurations: maps.Clone(t.configs),
		Desired:        t.properties(d, secDesired, t.desiredVersion, t.desiredStamp),
		Reported:       t.properties(d, secReported, t.reportedVersion, t.reportedStamp),
	}
	if !t.nilTags {
		r.Twin.Tags = t.object(d, 0, int(t.desiredAt), 0)
	}
	return r
}

func (t *flatTwin) properties(d *pathDict, s section, version int64, own uint16) twinhub.Properties {
	lo, hi := t.bounds(s)
	return twinhub.Properties{Values: t.object(d, lo, hi, 0), Version: version, Metadata: t.metadataTree(d, own, lo, hi)}
}

// metadataTree rebuilds the metadata node of stamp own that describes the
// members in fields[lo:hi].
func (t *flatTwin) metadataTree(d *pathDict, own uint16, lo, hi int) *twinhub.Metadata {
	m := t.stampMetadata(own)
	for i := lo; i < hi; i = t.fields[i].after(i) {
		f := &t.fields[i]
		if f.stamp == noStamp {
			continue
		}
		if m.Children == nil {
			m.Children = make(map[string]*twinhub.Metadata, t.stamped(i, hi))
		}
		if f.kind == fObject {
			m.Children[d.name(f.path)] = t.metadataTree(d, f.stamp, i+1, f.after(i))
		} else {
			m.Children[d.name(f.path)] = t.stampMetadata(f.stamp)
		}
	}
	return m
}

func (t *flatTwin) stampMetadata(i uint16) *twinhub.Metadata {
	s := t.stamps[i]
	return &twinhub.Metadata{LastUpdated: s.time(), LastUpdatedVersion: s.ver}
}
