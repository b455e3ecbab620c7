package hub

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/twinhub/twinhub"
)

// DefaultGapWait is how long a desired-property change waits for an earlier
// version that has not arrived yet. Changes are published by whichever
// request handler (or node) made them, so two quick changes can reach this
// node in the wrong order; a version that never comes (the bus delivers at
// most once) delays the ones after it by this much, no more.
const DefaultGapWait = time.Second

// maxPendingDesired bounds the changes held while waiting for a gap.
const maxPendingDesired = 64

// DesiredFeed hands one device connection (MQTT or AMQP) the
// desired-property changes of its identity in $version order, each once.
// Until it is started with the version the twin had when the subscription
// began, it only collects; changes at or below that version are dropped,
// since a device reads them with the twin. It is called from the hub's
// delivery goroutine and never blocks.
type DesiredFeed struct {
	mu      sync.Mutex
	base    int64 // last version handed on; -1 until started
	pending []DesiredPatch
	timer   *time.Timer
	gapWait time.Duration
	stopped bool
	send    func(DesiredPatch)
	cancel  func() // ends the hub subscription
}

// NewDesiredFeed makes a feed that hands changes to send (which must
// not block); a change waits up to gapWait (0: DefaultGapWait) for an
// earlier one.
func NewDesiredFeed(send func(DesiredPatch), gapWait time.Duration) *DesiredFeed {
	if gapWait <= 0 {
		gapWait = DefaultGapWait
	}
	return &DesiredFeed{base: -1, send: send, gapWait: gapWait}
}

// FollowDesired subscribes f to k's desired-property changes and starts
// it from the version the twin has now: a device that reads its twin
// after subscribing, as the SDKs do, misses nothing and gets nothing
// twice. A feed stopped meanwhile stays stopped.
func (h *Hub) FollowDesired(ctx context.Context, k twinhub.Key, f *DesiredFeed) {
	cancel := h.SubscribeDesired(k, f.add)
	f.mu.Lock()
	f.cancel = cancel
	stopped := f.stopped
	f.mu.Unlock()
	if stopped {
		cancel()
		return
	}
	version, err := h.DesiredVersion(ctx, k)
	if err != nil {
		// Without the base, pass on whatever comes, in order.
		h.log.Warn("reading the desired version", "identity", k.String(), "err", err)
		version = 0
	}
	f.start(version)
}

// add takes a change from the hub.
func (f *DesiredFeed) add(p DesiredPatch) {
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
func (f *DesiredFeed) start(base int64) {
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
func (f *DesiredFeed) flushLocked(force bool) {
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

func (f *DesiredFeed) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timer = nil
	if !f.stopped {
		f.flushLocked(true)
	}
}

// Stop ends the feed and its hub subscription.
func (f *DesiredFeed) Stop() {
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
