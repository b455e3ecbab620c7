package hub

import (
	"context"
	"sync/atomic"

	"github.com/twinhub/twinhub"
)

// markedStore is the store of a hub that is its only writer (the embedded
// NATS server of one node): it keeps the highest revision any write of
// this hub was acknowledged at, so that catchUp can wait for the index to
// reach it without asking the server for its last revision, which costs a
// JetStream API round trip (about 4.5 ms p50 of a 10 ms by-id query under
// 3,800 twin updates a second: BENCHMARKS.md, issue 16). Every write
// acknowledged before a query began is at or below the mark, which is all
// that catchUp promises.
//
// When the store reports each write to the hub (writeReporter), the hub
// puts its writes into the index itself before they are acknowledged
// (index.ApplyWritten, direct): those need no mark, and a reader waits
// only for the watch to pass the writes that were not applied so (the
// deletions, and a write the index could not read).
type markedStore struct {
	twinhub.Store
	mark atomic.Uint64
	// known is set once the mark holds the store's last revision at the
	// start, or a write of this hub's.
	known  atomic.Bool
	direct bool
}

// writeReporter is a store that tells the hub the JSON of each record it
// stores (jetstream.Store.ReportWrites).
type writeReporter interface {
	ReportWrites(fn func(k twinhub.Key, data []byte, rev uint64))
}

// raise moves the mark up to rev.
func (s *markedStore) raise(rev uint64) {
	defer s.known.Store(true)
	for {
		old := s.mark.Load()
		if rev <= old || s.mark.CompareAndSwap(old, rev) {
			return
		}
	}
}

// written is the mark; ok is false before it is known (then only the
// server knows what the last revision is).
func (s *markedStore) written() (mark uint64, ok bool) {
	if !s.known.Load() {
		return 0, false
	}
	return s.mark.Load(), true
}

// lastWritten is the mark, or the server's last revision before any write
// (the records the hub started with, which the index loads before New
// returns).
func (s *markedStore) lastWritten(ctx context.Context) (uint64, error) {
	if rev, ok := s.written(); ok {
		return rev, nil
	}
	rev, err := s.Store.LastRevision(ctx)
	if err == nil {
		s.raise(rev)
	}
	return rev, err
}

func (s *markedStore) Create(ctx context.Context, k twinhub.Key, r *twinhub.Record) (uint64, error) {
	rev, err := s.Store.Create(ctx, k, r)
	if err == nil && !s.direct {
		s.raise(rev)
	}
	return rev, err
}

func (s *markedStore) Update(ctx context.Context, k twinhub.Key, r *twinhub.Record, rev uint64) (uint64, error) {
	newRev, err := s.Store.Update(ctx, k, r, rev)
	if err == nil && !s.direct {
		s.raise(newRev)
	}
	return newRev, err
}

// Delete learns the deletion's revision from the server, since the store
// does not return it; deletions are rare next to updates.
func (s *markedStore) Delete(ctx context.Context, k twinhub.Key, rev uint64) error {
	if err := s.Store.Delete(ctx, k, rev); err != nil {
		return err
	}
	last, err := s.Store.LastRevision(ctx)
	if err != nil {
		return err
	}
	s.raise(last)
	return nil
}

// GetUnlessRevision passes through to a store that has it.
func (s *markedStore) GetUnlessRevision(ctx context.Context, k twinhub.Key, known uint64) (*twinhub.Record, uint64, error) {
	if rg, ok := s.Store.(twinhub.RevisionGetter); ok {
		return rg.GetUnlessRevision(ctx, k, known)
	}
	return s.Store.Get(ctx, k)
}
