package mqtt

import "testing"

func TestOutQueue(t *testing.T) {
	q := newOutQueue(10, func() {})
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

// TestOutQueueWriter: the first push starts the writer, later ones leave
// it to drain what they queue; a writer stops only at a drain that finds
// nothing queued, and the next push then starts another.
func TestOutQueueWriter(t *testing.T) {
	starts := 0
	q := newOutQueue(100, func() { starts++ })
	for range 3 {
		if err := q.push([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if starts != 1 {
		t.Fatalf("three pushes started %d writers, want 1", starts)
	}
	if n := len(q.drain(nil)); n != 3 {
		t.Fatalf("drained %d, want 3", n)
	}
	if err := q.push([]byte{1}); err != nil || starts != 1 || !q.writing {
		t.Fatalf("a push after a drain that found packets: %v, %d starts (the writer stopped with packets queued)", err, starts)
	}
	if n := len(q.drain(nil)); n != 1 {
		t.Fatalf("drained %d, want 1", n)
	}
	if n := len(q.drain(nil)); n != 0 || q.writing {
		t.Fatalf("a drain of nothing: %d packets, writing %v (the writer could not stop with nothing queued)", n, q.writing)
	}
	q.writers.Done() // the first writer ends
	if err := q.push([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if starts != 2 {
		t.Fatalf("a push after the writer stopped: %d starts, want 2", starts)
	}
	q.close()
	q.writers.Done()
	q.writers.Wait()
	if err := q.push([]byte{1}); err != errClosed || starts != 2 {
		t.Fatalf("a push after close: %v, %d starts", err, starts)
	}
}

// TestOutQueueHeld: pushes while the queue is held start no writer; the
// release starts one for them, in order, and a release with nothing
// queued, or after close, starts none.
func TestOutQueueHeld(t *testing.T) {
	starts := 0
	q := newOutQueue(100, func() { starts++ })
	q.hold()
	q.release()
	if starts != 0 || q.writing {
		t.Fatalf("a release with nothing queued started %d writers", starts)
	}
	q.hold()
	for i := range 3 {
		if err := q.push([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if starts != 0 {
		t.Fatalf("pushes while held started %d writers", starts)
	}
	q.release()
	if starts != 1 || !q.writing {
		t.Fatalf("the release started %d writers, want 1", starts)
	}
	got := q.drain(nil)
	if len(got) != 3 || got[0][0] != 0 || got[2][0] != 2 {
		t.Fatalf("drained %v, want the three packets in order", got)
	}
	q.drain(nil)
	q.writers.Done()
	q.hold()
	if err := q.push([]byte{1}); err != nil {
		t.Fatal(err)
	}
	q.close()
	q.release()
	if starts != 1 {
		t.Fatalf("a release after close started a writer (%d starts)", starts)
	}
}
