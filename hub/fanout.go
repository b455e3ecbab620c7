package hub

import "sync"

// fanout hands the events of a kind that arrive on one bus subscription
// (desired changes, C2D notices) to the functions this node registered
// for each event's identity. One subscription a kind, rather than one an
// identity, keeps an idle connection free of a NATS subscription and of
// the goroutine nats.go runs for each.
type fanout[K comparable, V any] struct {
	mu sync.Mutex
	// fns are the functions of each key: mostly one, so a slice (a map
	// a key costs hundreds of bytes an idle device).
	fns map[K][]*fanoutFn[V]
}

type fanoutFn[V any] struct{ fn func(V) }

// add calls fn with every event of k until cancel is called. fn must not
// block.
func (f *fanout[K, V]) add(k K, fn func(V)) (cancel func()) {
	r := &fanoutFn[V]{fn: fn}
	f.mu.Lock()
	if f.fns == nil {
		f.fns = map[K][]*fanoutFn[V]{}
	}
	f.fns[k] = append(f.fns[k], r)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		rs := f.fns[k]
		for i, x := range rs {
			if x == r {
				rs[i] = rs[len(rs)-1]
				rs[len(rs)-1] = nil
				rs = rs[:len(rs)-1]
				break
			}
		}
		if len(rs) == 0 {
			delete(f.fns, k)
		} else {
			f.fns[k] = rs
		}
	}
}

// send calls the functions registered for k with v.
func (f *fanout[K, V]) send(k K, v V) {
	f.mu.Lock()
	rs := append([]*fanoutFn[V](nil), f.fns[k]...)
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
		rs = append(rs, m...)
	}
	f.mu.Unlock()
	for _, r := range rs {
		r.fn(v)
	}
}
