package mqtt

import (
	"sort"
	"sync"
	"time"

	"github.com/twinhub/twinhub/hub"
)

// defaultGapWait is how long a desired-property change waits for an earlier
// version that has not arrived yet. Changes are published by whichever
// request handler (or node) made them, so two quick changes can reach this
// node in the wrong order; a version that never comes (the bus delivers at
// most once) delays the ones after it by this much, no more.
const defaultGapWait = time.Second

// maxPendingDesired bounds the changes held while waiting for a gap.
const maxPendingDesired = 64

// desiredFeed hands one connection the desired-property changes of its
// identity in $version order, each once. Until start tells it the version
// the twin had when the subscription began, it only collects; changes at
// or below that version are dropped, since a device reads them with the
// twin. It is called from the hub's delivery goroutine and never blocks.
type desiredFeed struct {
	mu      sync.Mutex
	base    int64 // last version handed on; -1 until started
	pending []hub.DesiredPatch
	timer   *time.Timer
	gapWait time.Duration
	stopped bool
	send    func(hub.DesiredPatch)
	cancel  func() // ends the hub subscription
}

func newDesiredFeed(send func(hub.DesiredPatch), gapWait time.Duration) *desiredFeed {
	return &desiredFeed{base: -1, send: send, gapWait: gapWait}
}

// add takes a change from the hub.
func (f *desiredFeed) add(p hub.DesiredPatch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || (f.base >= 0 && p.Version <= f.base) {
		return
	}
	for _, q := range f.pending {
		if q.Version == p.Version {
			return
		}
	}
	f.pending = append(f.pending, p)
	sort.Slice(f.pending, func(i, j int) bool { return f.pending[i].Version < f.pending[j].Version })
	if len(f.pending) > maxPendingDesired {
		f.flushLocked(true)
		return
	}
	f.flushLocked(false)
}

// start sets the version the device already knows and lets changes flow.
func (f *desiredFeed) start(base int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.base >= 0 {
		return
	}
	f.base = base
	kept := f.pending[:0]
	for _, p := range f.pending {
		if p.Version > base {
			kept = append(kept, p)
		}
	}
	f.pending = kept
	f.flushLocked(false)
}

// flushLocked hands on the changes that follow base without a gap, or
// with force all of them. If a gap remains, a timer forces it later.
func (f *desiredFeed) flushLocked(force bool) {
	if f.base < 0 {
		return
	}
	n := 0
	for _, p := range f.pending {
		if !force && p.Version != f.base+1 {
			break
		}
		f.send(p)
		f.base = p.Version
		n++
	}
	f.pending = append(f.pending[:0], f.pending[n:]...)
	switch {
	case len(f.pending) == 0 && f.timer != nil:
		f.timer.Stop()
		f.timer = nil
	case len(f.pending) > 0 && f.timer == nil:
		f.timer = time.AfterFunc(f.gapWait, f.expire)
	}
}

func (f *desiredFeed) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timer = nil
	if !f.stopped {
		f.flushLocked(true)
	}
}

// stop ends the feed and its hub subscription.
func (f *desiredFeed) stop() {
	f.mu.Lock()
	f.stopped = true
	f.pending = nil
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	cancel := f.cancel
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
