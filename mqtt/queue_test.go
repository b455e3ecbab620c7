package mqtt

import "testing"

func TestOutQueue(t *testing.T) {
	q := newOutQueue(10)
	if err := q.push(make([]byte, 25)); err != nil {
		t.Fatalf("a packet larger than the bound into an empty queue: %v", err)
	}
	if err := q.push(make([]byte, 1)); err != errQueueFull {
		t.Fatalf("push onto a full queue: %v, want errQueueFull", err)
	}
	if n := len(q.drain(nil)); n != 1 {
		t.Fatalf("drained %d", n)
	}
	for range 10 {
		if err := q.push([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.push([]byte{1}); err != errQueueFull {
		t.Fatalf("11th byte: %v", err)
	}
	q.close()
	if err := q.push([]byte{1}); err != errClosed {
		t.Fatalf("push after close: %v", err)
	}
}
