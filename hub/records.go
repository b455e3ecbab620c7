package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
)

// Records: the one read path (read, through the record cache) and the
// compare-and-set write loop (modify) under every registry and twin
// change.

// modify applies change to the current record of k and stores it with
// compare-and-set, retrying from a fresh read when another writer got
// there first. change sees a private copy each time and may refuse with
// an error, in which case nothing is written.
//
// Writers of one identity on this node take turns (keyLocks), so that
// they meet in the compare-and-set only with writers on other nodes.
//
// It starts from the cached record when there is one (cache.go) and
// lets the compare-and-set tell whether that was current. A refusal by
// change is only believed when change saw the record as the store holds
// it: a stale cached record may fail an etag check or a size limit that
// the current one passes.
//
// A hub that is its store's only writer starts a first attempt that
// misses the cache from the record its query index holds (index.Record),
// which is the store's once the index has seen the hub's last
// acknowledged write; retries after a conflict read the store, since the
// index may not have seen the write that won yet.
//
// The record returned is cached: the caller must not change it.
func (h *Hub) modify(ctx context.Context, k twinhub.Key, change func(*twinhub.Record) error) (*cachedRecord, error) {
	return h.modifyFrom(ctx, k, (*twinhub.Record).Clone, change)
}

// modifyShallow is modify for a change that sets fields of the device or
// module and changes the twin only through Twin.Apply, which replaces
// what it changes: it starts from a shallow copy of the cached record
// (Record.CloneShallow), not a deep one.
func (h *Hub) modifyShallow(ctx context.Context, k twinhub.Key, change func(*twinhub.Record) error) (*cachedRecord, error) {
	return h.modifyFrom(ctx, k, (*twinhub.Record).CloneShallow, change)
}

// modifyFrom is modify, copying the cached record with clone.
func (h *Hub) modifyFrom(ctx context.Context, k twinhub.Key, clone func(*twinhub.Record) *twinhub.Record, change func(*twinhub.Record) error) (*cachedRecord, error) {
	defer h.writing.lock(k)()
	const attempts = 100
	useCache := true
	for attempt := range attempts {
		var rec *twinhub.Record
		var rev uint64
		cached := false
		if e := h.cache.get(k); e != nil && useCache {
			rec, rev, cached = clone(e.rec), e.rev, true
		} else if r, v, ok := h.indexRecord(ctx, k, attempt); ok {
			rec, rev = r, v
		} else {
			r, v, err := h.store.Get(ctx, k)
			if errors.Is(err, twinhub.ErrNotFound) {
				h.cache.drop(k, 0)
				return nil, twinhub.ErrIdentityNotFound(k)
			} else if err != nil {
				return nil, err
			}
			rec, rev = r, v
		}
		useCache = true
		rec.SetETags()
		if err := change(rec); err != nil {
			if cached {
				h.cache.drop(k, rev)
				useCache = false
				continue
			}
			return nil, err
		}
		rec.SetETags()
		newRev, err := h.store.Update(ctx, k, rec, rev)
		if err == nil {
			return h.cache.put(k, rec, newRev), nil
		}
		if !errors.Is(err, twinhub.ErrConflict) {
			return nil, err
		}
		h.cache.drop(k, rev)
	}
	return nil, twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "%s is being changed by too many writers; try again", k)
}

// indexRecord is k's record from the query index, for the first attempt
// of a hub that is its store's only writer (see modify).
func (h *Hub) indexRecord(ctx context.Context, k twinhub.Key, attempt int) (*twinhub.Record, uint64, bool) {
	if attempt > 0 {
		return nil, 0, false
	}
	mark, ok := h.indexCurrent(ctx)
	if !ok {
		return nil, 0, false
	}
	return h.index.Record(k, mark)
}

// indexWait bounds how long a read or a write of a hub that is its store's
// only writer waits for its query index to see the hub's last acknowledged
// write before it asks the store instead. The index applies each write
// about as soon as JetStream acknowledges it; under a steady write load it
// is nearly always a write or two behind, and a short wait costs less
// than the store's round trip.
const indexWait = 5 * time.Millisecond

// indexCurrent waits (at most indexWait) until the query index has seen
// the hub's last acknowledged write, and returns that write's revision:
// the index then holds every twin as the store does. ok is false for a hub
// that shares its store, before its first write, and when the index is
// further behind.
func (h *Hub) indexCurrent(ctx context.Context) (mark uint64, ok bool) {
	if h.marked == nil {
		return 0, false
	}
	if mark, ok = h.marked.written(); !ok {
		return 0, false
	}
	if h.index.Revision() >= mark {
		return mark, true
	}
	wctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	return mark, h.index.WaitRevision(wctx, mark) == nil
}

// etagMatches implements If-Match: empty, * or "*" match anything; quotes
// around the etag are optional, as clients differ (Node quotes even the
// star, Go sends a bare one).
func etagMatches(ifMatch, etag string) bool {
	ifMatch = strings.Trim(strings.TrimSpace(ifMatch), `"`)
	return ifMatch == "" || ifMatch == "*" || ifMatch == etag
}

// get returns the current record of k, after this node's pending write
// of k's connection state (connections.go), so that a device that has its
// CONNACK reads as connected here. The record is shared with the cache:
// the caller must not change it.
func (h *Hub) get(ctx context.Context, k twinhub.Key) (*twinhub.Record, error) {
	e, err := h.getEntry(ctx, k)
	if err != nil {
		return nil, err
	}
	return e.rec, nil
}

func (h *Hub) getEntry(ctx context.Context, k twinhub.Key) (*cachedRecord, error) {
	if err := h.states.settle(ctx, k); err != nil {
		return nil, err
	}
	return h.read(ctx, k)
}

// read returns the current record of k: the store says which revision is
// current, and the cached record serves if it is that one. The record is
// shared with the cache: the caller must not change it.
//
// A hub that is its store's only writer asks its query index instead,
// once the index has seen the hub's last acknowledged write (so every
// write acknowledged before this read; indexCurrent): the index then
// knows k's current revision, or that k is gone, without a JetStream round
// trip, which cost about a fifth of the hub's CPU in REST twin reads. When
// the index stays behind, the store is asked as before.
func (h *Hub) read(ctx context.Context, k twinhub.Key) (*cachedRecord, error) {
	e := h.cache.get(k)
	if mark, ok := h.indexCurrent(ctx); ok {
		rev, found, known := h.index.RevisionOf(k, mark)
		switch {
		case known && !found:
			h.cache.drop(k, 0)
			return nil, twinhub.ErrIdentityNotFound(k)
		case known && e != nil && e.rev == rev:
			return e, nil
		}
	}
	var known uint64
	if e != nil {
		known = e.rev
	}
	var rec *twinhub.Record
	var rev uint64
	var err error
	if rg, ok := h.store.(twinhub.RevisionGetter); ok {
		rec, rev, err = rg.GetUnlessRevision(ctx, k, known)
	} else {
		rec, rev, err = h.store.Get(ctx, k)
	}
	if errors.Is(err, twinhub.ErrNotFound) {
		h.cache.drop(k, 0)
		return nil, twinhub.ErrIdentityNotFound(k)
	} else if err != nil {
		return nil, err
	}
	if e != nil && rev == known {
		return e, nil
	}
	if rec == nil {
		return nil, fmt.Errorf("store returned no record for %s at revision %d", k, rev)
	}
	rec.SetETags()
	return h.cache.put(k, rec, rev), nil
}

// deleteRecord removes the record of k if ifMatch matches its identity's
// etag, retrying when another writer changes it in between.
func (h *Hub) deleteRecord(ctx context.Context, k twinhub.Key, ifMatch string) error {
	for {
		e, err := h.read(ctx, k)
		if err != nil {
			return err
		}
		if !etagMatches(ifMatch, twinhub.IdentityETag(e.rec.IdentityVersion)) {
			if k.ModuleID != "" {
				return twinhub.ErrPreconditionFailed("module")
			}
			return twinhub.ErrPreconditionFailed("device")
		}
		err = h.store.Delete(ctx, k, e.rev)
		h.cache.drop(k, 0)
		if !errors.Is(err, twinhub.ErrConflict) {
			return err
		}
	}
}
