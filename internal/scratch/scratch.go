// Package scratch lends byte buffers for output whose size is known only
// once it is written, and hands the output back in a slice of its size.
// Appended from nothing, a kilobyte took about ten allocations as its
// slice grew, twice its size in all; sized by a guess beforehand, it
// wasted what the guess was over (32 KB for a one-twin query page).
package scratch

import "sync"

// Buffers lends the buffers; those that grew past keep bytes are dropped
// rather than kept for the next writer.
type Buffers struct {
	pool sync.Pool
	keep int
}

// New returns Buffers that keep buffers of up to keep bytes.
func New(keep int) *Buffers { return &Buffers{keep: keep} }

// Exact has write append to a lent buffer and returns a copy of what it
// wrote, in a slice of that size: nil and false when write says it
// failed.
func (b *Buffers) Exact(write func(buf []byte) ([]byte, bool)) ([]byte, bool) {
	p, _ := b.pool.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	out, ok := write((*p)[:0])
	var data []byte
	if ok {
		data = append(make([]byte, 0, len(out)), out...)
	}
	if cap(out) <= b.keep {
		*p = out
		b.pool.Put(p)
	}
	return data, ok
}
