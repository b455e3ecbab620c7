package scratch

import (
	"bytes"
	"testing"
)

// TestExact: the output comes back at its size and is not the lent
// buffer, which the next writer gets; a failed write gives nothing.
func TestExact(t *testing.T) {
	b := New(1 << 10)
	var lent []byte
	data, ok := b.Exact(func(buf []byte) ([]byte, bool) {
		buf = append(buf, "hello, world"...)
		lent = buf
		return buf, true
	})
	if !ok || string(data) != "hello, world" || cap(data) != len(data) {
		t.Fatalf("Exact gave %q (cap %d), %v", data, cap(data), ok)
	}
	lent[0] = 'j'
	if data[0] != 'h' {
		t.Fatal("the output shares the lent buffer")
	}
	if data, ok := b.Exact(func(buf []byte) ([]byte, bool) { return append(buf, "partial"...), false }); ok || data != nil {
		t.Fatalf("a failed write gave %q, %v", data, ok)
	}
	big := bytes.Repeat([]byte{'x'}, 4<<10)
	if data, _ := b.Exact(func(buf []byte) ([]byte, bool) { return append(buf, big...), true }); !bytes.Equal(data, big) {
		t.Fatal("a write past keep came back changed")
	}
}
