package hub

import "sync"

// fanout hands the events of a kind that arrive on one bus subscription
// (desired changes, C2D notices) to the functions this node registered
// for each event's identity. One subscription a kind, rather than one an
// identity, keeps an idle connection free of a NATS subscription and of
// the goroutine nats.go runs for each.
type fanout[K comparable, V any] struct {
	mu  sync.Mutex
	fns map[K]map[*fanoutFn[V]]struct{}
}

type fanoutFn[V any] struct{ fn func(V) }

// add calls fn with every event of k until cancel is called. fn must not
// block.
func (f *fanout[K, V]) add(k K, fn func(V)) (cancel func()) {
	r := &fanoutFn[V]{fn: fn}
	f.mu.Lock()
	if f.fns == nil {
		f.fns = map[K]map[*fanoutFn[V]]struct{}{}
	}
	if f.fns[k] == nil {
		f.fns[k] = map[*fanoutFn[V]]struct{}{}
	}
	f.fns[k][r] = struct{}{}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.fns[k], r)
		if len(f.fns[k]) == 0 {
			delete(f.fns, k)
		}
		f.mu.Unlock()
	}
}

// send calls the functions registered for k with v.
func (f *fanout[K, V]) send(k K, v V) {
	f.mu.Lock()
	rs := make([]*fanoutFn[V], 0, len(f.fns[k]))
	for r := range f.fns[k] {
		rs = append(rs, r)
	}
	f.mu.Unlock()
	for _, r := range rs {
		r.fn(v)
	}
}

// sendAll calls every registered function with v.
func (f *fanout[K, V]) sendAll(v V) {
	f.mu.Lock()
	var rs []*fanoutFn[V]
	for _, m := range f.fns {
		for r := range m {
			rs = append(rs, r)
		}
	}
	f.mu.Unlock()
	for _, r := range rs {
		r.fn(v)
	}
}
