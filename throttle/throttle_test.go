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

func TestReserve(t *testing.T) {
	// One token a second, burst 1: the first is there, the second a second
	// away, and one beyond the limit is not taken (the next still comes a
	// second after the one reserved, not two).
	th := New(Limits{Telemetry: Limit{PerSecond: 1, Burst: 1}})
	if d, ok := th.Reserve(Telemetry, time.Minute); !ok || d != 0 {
		t.Fatalf("first: %s %v", d, ok)
	}
	d, ok := th.Reserve(Telemetry, time.Minute)
	if !ok || d <= 0 || d > time.Second {
		t.Fatalf("second: %s %v, want a wait of up to 1 s", d, ok)
	}
	if _, ok := th.Reserve(Telemetry, time.Millisecond); ok {
		t.Fatal("a token 2 s away was taken under a limit of 1 ms")
	}
	if d3, ok := th.Reserve(Telemetry, time.Minute); !ok || d3 <= d || d3 > d+time.Second {
		t.Fatalf("third: %s %v after %s: a refused reservation was kept", d3, ok, d)
	}
	if d, ok := (*Throttle)(nil).Reserve(Telemetry, 0); !ok || d != 0 {
		t.Fatalf("nil: %s %v", d, ok)
	}
}
