package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/index"
)

// A node starts by reading its query index from a snapshot on disk and
// then only the store's changes since, instead of every record of the
// store (index/snapshot.go says why). The snapshot is written when the
// hub stops (SaveIndex) and every Config.IndexSnapshotInterval while it
// runs, so that a start after a crash replays minutes of changes, not the
// whole registry. A snapshot that cannot be used (another version,
// damaged, of another life of the store, ahead of the store) is left
// aside with a warning, and the index is read from the store as before.

// snapshotStore is a store an index snapshot can be taken of: it watches
// from a revision and names the life of its revisions (its epoch), with
// its last revision.
type snapshotStore interface {
	index.RawWatcher
	Epoch(ctx context.Context) (epoch string, last uint64, err error)
}

// indexSnapshot is where the hub keeps its index snapshot.
type indexSnapshot struct {
	path  string
	epoch string
	// mu makes writers of the file take turns; saved is the revision of
	// the last snapshot written or loaded.
	mu    sync.Mutex
	saved uint64
}

// openIndex returns the index to start from, and the store revision to
// watch from: a new index and 0, or the index of the snapshot at path
// and the revision after the snapshot's.
func (h *Hub) openIndex(ctx context.Context, store twinhub.Store, path string) (*index.Index, uint64) {
	ss, ok := store.(snapshotStore)
	if path == "" || !ok {
		return index.NewIndex(), 0
	}
	epoch, last, err := ss.Epoch(ctx)
	if err != nil {
		h.log.Warn("index snapshot not used: reading the store's epoch", "err", err)
		return index.NewIndex(), 0
	}
	h.snapshot = &indexSnapshot{path: path, epoch: epoch}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return index.NewIndex(), 0
	}
	if err != nil {
		h.log.Warn("index snapshot not used; reading the whole store", "file", path, "err", err)
		return index.NewIndex(), 0
	}
	defer f.Close()
	started := time.Now()
	ix := index.NewIndex()
	var rev uint64
	info, err := f.Stat()
	if err == nil {
		rev, err = ix.LoadSnapshot(f, info.Size(), epoch)
	}
	if err == nil && rev > last {
		err = fmt.Errorf("it holds revision %d, and the store's last is %d (was the store restored from an older copy?)", rev, last)
	}
	if err != nil {
		h.log.Warn("index snapshot not used; reading the whole store", "file", path, "err", err)
		return index.NewIndex(), 0
	}
	h.snapshot.saved = rev
	h.log.Info("index snapshot loaded", "file", path, "revision", rev, "changes since", last-rev,
		"took", time.Since(started).Round(time.Millisecond))
	return ix, rev + 1
}

// SaveIndex writes the query index to its snapshot file
// (Config.IndexSnapshot; nothing without one), replacing the file there
// only once the new one is on disk whole.
func (h *Hub) SaveIndex() error {
	s := h.snapshot
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	started := time.Now()
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("index snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	rev, twins, err := h.index.WriteSnapshot(tmp, s.epoch)
	if err == nil {
		err = tmp.Sync()
	}
	size, _ := tmp.Seek(0, io.SeekCurrent)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		return fmt.Errorf("index snapshot: %w", err)
	}
	s.saved = rev
	h.log.Info("index snapshot written", "file", s.path, "twins", twins, "revision", rev, "MiB", size>>20,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// saveIndexEvery writes the index snapshot every interval while the index
// changes, until ctx ends.
func (h *Hub) saveIndexEvery(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() bool {
		h.snapshot.mu.Lock()
		changed := h.index.Revision() != h.snapshot.saved
		h.snapshot.mu.Unlock()
		if changed {
			if err := h.SaveIndex(); err != nil {
				h.log.Warn("writing the index snapshot", "err", err)
			}
		}
		return true
	})
}
