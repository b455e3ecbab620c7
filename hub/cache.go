package hub

import (
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/internal/recordjson"
	"github.com/twinhub/twinhub/internal/scratch"
)

// recordCache keeps the records this node read or wrote last, decoded,
// each with the store revision it had, so that the hub does not read and
// decode a record again to change it, nor decode and render it again to
// show it while it has not changed.
//
// It is never trusted on its own. A write starts from a clone of the
// cached record and its revision, and the store's compare-and-set refuses
// it if another writer (another node, say) got there first: the hub then
// forgets the entry and starts again from the store. A read still asks the
// store for the record's revision, as a read must see every write
// acknowledged before it, wherever it was made; only when the revision is
// the cached one does it use the cached decoding (and rendering) instead
// of decoding what the store sent.
//
// Entries are immutable once cached (the rendered JSON is filled in once,
// atomically): readers share them without locks, and writers change
// clones. The cache holds records of at most about max bytes in all
// (approxRecordSize), in shards that evict arbitrary entries when full:
// twins range from a few hundred bytes to over 70 KB, so a count would not
// bound memory. The query index keeps its own compact copy of every twin,
// which is not the record a write needs.
type recordCache struct {
	seed     maphash.Seed
	perShard int // bytes; 0: the cache is off
	shards   [cacheShards]cacheShard
}

const cacheShards = 16

// DefaultRecordCacheBytes is what a hub's record cache may hold when its
// Config does not say: some 10,000 small twins.
const DefaultRecordCacheBytes = 64 << 20

type cacheShard struct {
	mu    sync.Mutex
	m     map[twinhub.Key]*cachedRecord
	bytes int
}

// cachedRecord is a record as stored at revision rev. rec must not be
// changed; clone it.
type cachedRecord struct {
	rec  *twinhub.Record
	rev  uint64
	size int
	// The twin rendered as REST and devices read it, made on first use.
	twinJSON, deviceTwinJSON atomic.Pointer[[]byte]
}

// newRecordCache makes a cache of about max bytes; max <= 0 disables it.
func newRecordCache(max int) *recordCache {
	c := &recordCache{seed: maphash.MakeSeed()}
	if max > 0 {
		c.perShard = max / cacheShards
		if c.perShard < 1 {
			c.perShard = 1
		}
	}
	for i := range c.shards {
		c.shards[i].m = map[twinhub.Key]*cachedRecord{}
	}
	return c
}

func (c *recordCache) shard(k twinhub.Key) *cacheShard {
	return &c.shards[maphash.Comparable(c.seed, k)%cacheShards]
}

// get returns the entry of k, or nil.
func (c *recordCache) get(k twinhub.Key) *cachedRecord {
	if c.perShard == 0 {
		return nil
	}
	s := c.shard(k)
	s.mu.Lock()
	e := s.m[k]
	s.mu.Unlock()
	return e
}

// put caches rec as k's record at rev, unless a newer revision is cached
// already, and returns an entry for rec either way. rec must not be
// changed afterwards.
func (c *recordCache) put(k twinhub.Key, rec *twinhub.Record, rev uint64) *cachedRecord {
	e := &cachedRecord{rec: rec, rev: rev}
	if c.perShard == 0 {
		return e
	}
	e.size = approxRecordSize(rec)
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		if old.rev > rev {
			return e
		}
		delete(s.m, k)
		s.bytes -= old.size
	}
	if e.size > c.perShard {
		return e
	}
	for victim, v := range s.m {
		if s.bytes+e.size <= c.perShard {
			break
		}
		delete(s.m, victim)
		s.bytes -= v.size
	}
	s.m[k] = e
	s.bytes += e.size
	return e
}

// approxRecordSize estimates the memory a cached record takes: its maps
// and strings, and as much again for its twin rendered as JSON.
func approxRecordSize(r *twinhub.Record) int {
	t := &r.Twin
	n := 1024 + approxSize(t.Tags) + approxSize(t.Desired.Values) + approxSize(t.Reported.Values) +
		approxMetadataSize(t.Desired.Metadata) + approxMetadataSize(t.Reported.Metadata)
	return 2 * n
}

func approxSize(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 48
		for k, c := range x {
			n += 32 + len(k) + approxSize(c)
		}
		return n
	case []any:
		n := 24
		for _, c := range x {
			n += 16 + approxSize(c)
		}
		return n
	case string:
		return len(x)
	}
	return 0
}

func approxMetadataSize(m *twinhub.Metadata) int {
	if m == nil {
		return 0
	}
	n := 96
	for k, c := range m.Children {
		n += 32 + len(k) + approxMetadataSize(c)
	}
	return n
}

// drop forgets k's entry if it is still the one of revision rev (0: any).
func (c *recordCache) drop(k twinhub.Key, rev uint64) {
	if c.perShard == 0 {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	if e, ok := s.m[k]; ok && (rev == 0 || e.rev == rev) {
		delete(s.m, k)
		s.bytes -= e.size
	}
	s.mu.Unlock()
}

// stats counts the entries and their bytes, for tests.
func (c *recordCache) stats() (entries, bytes int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		entries += len(s.m)
		bytes += s.bytes
		s.mu.Unlock()
	}
	return entries, bytes
}

// twin is the entry's twin as GET /twins/{id} shows it, encoded as
// json.Marshal encodes its TwinDoc. The slice is shared: do not change it.
func (e *cachedRecord) twin() ([]byte, error) {
	if p := e.twinJSON.Load(); p != nil {
		return *p, nil
	}
	data, ok := renderBufs.Exact(func(b []byte) ([]byte, bool) { return recordjson.AppendTwinDoc(b, e.rec) })
	if !ok {
		var err error
		if data, err = json.Marshal(e.rec.TwinDoc()); err != nil {
			return nil, err
		}
	}
	e.twinJSON.Store(&data)
	return data, nil
}

// renderBufs lend the buffers twin documents are rendered in: a cache
// entry keeps its documents in slices of their size (the twin a REST
// PATCH answers with was a seventh of what the hub allocated an update
// while it was appended from nothing).
var renderBufs = scratch.New(64 << 10)

// deviceTwin is the entry's twin as a device reads it over MQTT (desired
// and reported, without metadata), encoded without HTML escaping as the
// MQTT front end encodes its replies. The slice is shared.
func (e *cachedRecord) deviceTwin() ([]byte, error) {
	if p := e.deviceTwinJSON.Load(); p != nil {
		return *p, nil
	}
	data, ok := renderBufs.Exact(func(b []byte) ([]byte, bool) { return recordjson.AppendDeviceTwin(b, e.rec) })
	if !ok {
		var err error
		if data, err = twinhub.MarshalNoHTML(e.rec.DeviceTwinDoc()); err != nil {
			return nil, err
		}
	}
	e.deviceTwinJSON.Store(&data)
	return data, nil
}
