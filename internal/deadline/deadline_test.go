package deadline

import (
	"testing"
	"time"
)

// TestLazy: the first Extend sets the deadline; Extends soon after keep
// it; once less than timeout-slack is left, or after Forget, Extend sets
// it again; it never falls before timeout-slack after an Extend.
func TestLazy(t *testing.T) {
	var sets []time.Time
	set := func(at time.Time) error { sets = append(sets, at); return nil }
	l := NewLazy(set, 400*time.Millisecond) // slack 50 ms
	start := time.Now()
	l.Extend()
	l.Extend()
	if len(sets) != 1 || sets[0].Sub(start) < 400*time.Millisecond {
		t.Fatalf("after two Extends at once: set %v", sets)
	}
	time.Sleep(80 * time.Millisecond) // past the slack
	before := time.Now()
	l.Extend()
	if len(sets) != 2 || sets[1].Sub(before) < 400*time.Millisecond {
		t.Fatalf("an Extend past the slack did not move the deadline: %v", sets)
	}
	l.Forget()
	l.Extend()
	if len(sets) != 3 {
		t.Fatalf("an Extend after Forget did not set the deadline: %v", sets)
	}
	if got := NewLazy(set, time.Hour).slack; got != maxSlack {
		t.Errorf("slack of an hour's timeout: %v, want %v", got, maxSlack)
	}
}
