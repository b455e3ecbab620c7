package twinhub

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// index is the node's in-memory view of every record, fed by a watch on
// the store. Queries, listings and statistics read it; reads of single
// twins go to the store. Before it answers, a reader waits until the index
// has seen the store's last revision, so a query sees every write that was
// acknowledged before it arrived.
type index struct {
	mu      sync.RWMutex
	entries map[Key]*indexEntry
	rev     uint64
	// advanced is closed and replaced whenever rev moves, waking waiters.
	advanced chan struct{}
}

type indexEntry struct {
	rec *Record
	doc map[string]any
}

func newIndex() *index {
	return &index{entries: map[Key]*indexEntry{}, advanced: make(chan struct{})}
}

// apply records one change seen by the watch.
func (ix *index) apply(k Key, r *Record, rev uint64) {
	var e *indexEntry
	if r != nil {
		r.stamp()
		e = &indexEntry{rec: r, doc: r.TwinDoc()}
	}
	ix.mu.Lock()
	if e == nil {
		delete(ix.entries, k)
	} else {
		ix.entries[k] = e
	}
	if rev > ix.rev {
		ix.rev = rev
		close(ix.advanced)
		ix.advanced = make(chan struct{})
	}
	ix.mu.Unlock()
}

// waitFor blocks until the index has seen revision rev.
func (ix *index) waitFor(ctx context.Context, rev uint64) error {
	for {
		ix.mu.RLock()
		done, ch := ix.rev >= rev, ix.advanced
		ix.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scan returns the entries that pass keep, ordered by device then module
// id so that paging through them is stable.
func (ix *index) scan(keep func(Key) bool) []*indexEntry {
	ix.mu.RLock()
	out := make([]*indexEntry, 0, len(ix.entries))
	for k, e := range ix.entries {
		if keep(k) {
			out = append(out, e)
		}
	}
	ix.mu.RUnlock()
	slices.SortFunc(out, func(a, b *indexEntry) int {
		ka, kb := a.rec.Key(), b.rec.Key()
		return cmp.Or(cmp.Compare(ka.DeviceID, kb.DeviceID), cmp.Compare(ka.ModuleID, kb.ModuleID))
	})
	return out
}
