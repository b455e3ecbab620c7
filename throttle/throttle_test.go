package throttle

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNilAllowsEverything(t *testing.T) {
	var th *Throttle
	for c := range numClasses {
		for range 1000 {
			if !th.Allow(c) {
				t.Fatalf("nil throttle refused %s", c)
			}
		}
	}
	if New(Limits{}) != nil {
		t.Fatal("New of zero Limits is not nil")
	}
}

func TestBurstThenRefuse(t *testing.T) {
	// A rate this low refills nothing during the test: exactly the burst
	// passes, whatever the machine's speed.
	th := New(Limits{TwinUpdates: Limit{PerSecond: 0.001, Burst: 5}})
	allowed := 0
	for range 100 {
		if th.Allow(TwinUpdates) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Errorf("allowed %d of 100, want the burst of 5", allowed)
	}
	// Other classes are not limited.
	for range 100 {
		if !th.Allow(TwinReads) || !th.Allow(Connects) {
			t.Fatal("an unlimited class was refused")
		}
	}
	if !strings.Contains(New(Limits{Connects: Limit{PerSecond: 100}}).limitsString(), "new connections 100/s (burst 100)") {
		t.Error("String does not show the default burst")
	}
}

func (t *Throttle) limitsString() string {
	var l Limits
	for c := range numClasses {
		if b := t.buckets[c]; b != nil {
			lim := Limit{PerSecond: float64(b.Limit()), Burst: b.Burst()}
			switch c {
			case TwinReads:
				l.TwinReads = lim
			case TwinUpdates:
				l.TwinUpdates = lim
			case Registry:
				l.Registry = lim
			case Queries:
				l.Queries = lim
			case Connects:
				l.Connects = lim
			case Telemetry:
				l.Telemetry = lim
			}
		}
	}
	return l.String()
}

func TestWait(t *testing.T) {
	th := New(Limits{Telemetry: Limit{PerSecond: 0.001, Burst: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := th.Wait(ctx, Telemetry); err != nil {
		t.Fatalf("first Wait: %v", err)
	}
	// The next token is 1,000 s away, beyond ctx: Wait fails at once.
	if err := th.Wait(ctx, Telemetry); err == nil {
		t.Fatal("Wait beyond the deadline succeeded")
	}
	if err := (*Throttle)(nil).Wait(ctx, Telemetry); err != nil {
		t.Fatalf("nil Wait: %v", err)
	}
}
