package hub

import (
	"hash/maphash"
	"sync"

	"github.com/twinhub/twinhub"
)

// keyLocks lets one write of an identity at a time run on this node
// (modifyFrom). Without them, writers of one twin race each other's
// compare-and-set, and the race is not fair: the writer that just won
// starts its next write from the record it cached and wins again, while
// a loser re-reads the store and arrives late each time. Eight writers
// of one twin made some writes lose 60 of their 100 attempts, and some
// all of them (TestConcurrentReportedPatchesLoseNothing failed about one
// run in three). Waiting on a mutex costs a write nothing it would not
// have lost to a conflict: a twin takes one write at a time either way.
// Writers on other nodes still meet in the compare-and-set.
type keyLocks struct {
	seed   maphash.Seed
	shards [32]keyLockShard
}

type keyLockShard struct {
	mu    sync.Mutex
	locks map[twinhub.Key]*keyLock
}

// keyLock is the lock of one identity, kept while writers hold or wait
// for it.
type keyLock struct {
	mu      sync.Mutex
	holders int // holding or waiting; guarded by the shard's mu
}

func (l *keyLocks) init() {
	l.seed = maphash.MakeSeed()
	for i := range l.shards {
		l.shards[i].locks = map[twinhub.Key]*keyLock{}
	}
}

func (l *keyLocks) shard(k twinhub.Key) *keyLockShard {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(k.DeviceID)
	h.WriteByte(0)
	h.WriteString(k.ModuleID)
	return &l.shards[h.Sum64()%uint64(len(l.shards))]
}

// lock waits until no other writer of this node holds k, and returns
// the function that lets the next one go.
func (l *keyLocks) lock(k twinhub.Key) (unlock func()) {
	s := l.shard(k)
	s.mu.Lock()
	e := s.locks[k]
	if e == nil {
		e = &keyLock{}
		s.locks[k] = e
	}
	e.holders++
	s.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		s.mu.Lock()
		if e.holders--; e.holders == 0 {
			delete(s.locks, k)
		}
		s.mu.Unlock()
	}
}
