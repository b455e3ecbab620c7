package amqp

import (
	"math"
	"testing"
	"unsafe"
)

// TestCreditLeft: the credit a flow leaves counts the transfers in flight,
// and never wraps into a huge credit when a grant is overtaken.
func TestCreditLeft(t *testing.T) {
	for _, c := range []struct{ dc, credit, sent, want uint32 }{
		{0, 10, 0, 10},
		{0, 10, 4, 6},                 // four in flight
		{3, 0, 5, 0},                  // credit taken back with two in flight
		{3, 1, 5, 0},                  // a grant the transfers overtook
		{math.MaxUint32, 5, 1, 3},     // counts wrap around
		{math.MaxUint32 - 1, 2, 0, 0}, // exactly used up across the wrap
		{7, 100, 7, 100},
	} {
		if got := creditLeft(c.dc, c.credit, c.sent); got != c.want {
			t.Errorf("creditLeft(%d, %d, %d) = %d, want %d", c.dc, c.credit, c.sent, got, c.want)
		}
	}
}

// TestLinkSize keeps a link within the allocator's 160-byte size class:
// every idle device session holds several (bench sessions-amqp). A field
// that takes it over costs each of them the next class, 176 bytes.
func TestLinkSize(t *testing.T) {
	if n := unsafe.Sizeof(link{}); n > 160 {
		t.Errorf("a link is %d bytes, over 160: group the new field with others of its size, or keep it elsewhere", n)
	}
}
