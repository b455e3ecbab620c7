package hub

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

type sink struct {
	mu   sync.Mutex
	sent []int64
}

func (s *sink) send(p DesiredPatch) {
	s.mu.Lock()
	s.sent = append(s.sent, p.Version)
	s.mu.Unlock()
}

func (s *sink) got() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.sent...)
}

func patch(v int64) DesiredPatch { return DesiredPatch{Version: v} }

func TestDesiredFeedOrders(t *testing.T) {
	var s sink
	f := NewDesiredFeed(s.send, DefaultGapWait)
	// Before start: collected, and versions the twin already had dropped.
	f.add(patch(5))
	f.add(patch(3))
	f.add(patch(4))
	f.start(3)
	if got := s.got(); !reflect.DeepEqual(got, []int64{4, 5}) {
		t.Fatalf("after start(3): %v, want [4 5]", got)
	}
	// Out of order within the gap window: reordered; duplicates dropped.
	f.add(patch(7))
	f.add(patch(7))
	if got := s.got(); len(got) != 2 {
		t.Fatalf("7 passed before 6: %v", got)
	}
	f.add(patch(6))
	f.add(patch(5))
	if got := s.got(); !reflect.DeepEqual(got, []int64{4, 5, 6, 7}) {
		t.Fatalf("%v, want [4 5 6 7]", got)
	}
	f.Stop()
	f.add(patch(8))
	if got := s.got(); len(got) != 4 {
		t.Fatalf("a stopped feed passed %v", got)
	}
}

func TestDesiredFeedGap(t *testing.T) {
	var s sink
	f := NewDesiredFeed(s.send, DefaultGapWait)
	f.start(1)
	f.add(patch(3)) // 2 never comes
	f.add(patch(4))
	if got := s.got(); len(got) != 0 {
		t.Fatalf("passed across a gap at once: %v", got)
	}
	deadline := time.Now().Add(DefaultGapWait + 2*time.Second)
	for len(s.got()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.got(); !reflect.DeepEqual(got, []int64{3, 4}) {
		t.Fatalf("after the gap wait: %v, want [3 4]", got)
	}
	f.add(patch(2)) // too late: older than what the device has
	f.add(patch(5))
	if got := s.got(); !reflect.DeepEqual(got, []int64{3, 4, 5}) {
		t.Fatalf("%v, want [3 4 5]", got)
	}
	f.Stop()
}

func TestDesiredFeedBound(t *testing.T) {
	var s sink
	f := NewDesiredFeed(s.send, DefaultGapWait)
	f.start(0)
	for v := int64(2); v <= maxPendingDesired+2; v++ {
		f.add(patch(v))
	}
	if got := s.got(); len(got) != maxPendingDesired+1 || got[0] != 2 {
		t.Fatalf("a full pending list was not flushed: %d sent", len(got))
	}
	f.Stop()
}
