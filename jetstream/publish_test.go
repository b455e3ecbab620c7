package jetstream

import (
	"errors"
	"testing"
	"time"
)

// TestSweepAnswersLateAppends: an append whose answer does not come by
// its deadline gets errNoAnswer from the sweep, which the store reports
// as unavailable.
func TestSweepAnswersLateAppends(t *testing.T) {
	a := &acker{prefix: "_INBOX.t.", pending: map[uint64]pendingAck{}, replies: map[uint64]string{}}
	done := make(chan error, 1)
	a.add(pendingAck{done: func(err error) { done <- err }, deadline: time.Now()})
	select {
	case err := <-done:
		if !errors.Is(err, errNoAnswer) || !unavailable(err) {
			t.Errorf("a late append answered with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sweep did not answer a late append")
	}
}
