// Package throttle holds a hub's rate limits: one token bucket per class of
// operation (twin reads, twin updates, registry operations, queries, new
// device connections, telemetry), shared by every client of the hub, as
// IoT Hub's per-unit throttles are. A request over the rate is refused at
// once (REST 429 ThrottlingException, MQTT and AMQP 429 on the twin answers,
// CONNACK 3 for a connection) instead of queueing, except telemetry, whose
// acknowledgement is delayed instead (Wait): the hub keeps serving
// what it admits at the rate it was given, and clients back off and retry
// as the Azure SDKs do on 429.
//
// Every limit is off by default: twinhub runs on hardware its owner pays
// for, and its own ceiling (see docs/RELIABILITY.md) is well above IoT
// Hub's. Set the limits to reproduce IoT Hub's throttling in tests, or to
// keep one noisy client from starving the rest.
package throttle

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Class is a kind of operation that has its own limit.
type Class int

// The classes, after IoT Hub's throttles (iot-hub-devguide-quotas-throttling.md).
const (
	TwinReads   Class = iota // GET /twins, MQTT twin GET
	TwinUpdates              // PATCH/PUT /twins, MQTT reported patches
	Registry                 // device and module create, read, update, delete, statistics
	Queries                  // POST /devices/query
	Connects                 // new device connections (MQTT, AMQP: a device's first link)
	Telemetry                // device-to-cloud messages
	numClasses

	// Unlimited is the class of operations no limit applies to.
	Unlimited Class = -1
)

var classNames = [numClasses]string{"twin reads", "twin updates", "registry operations", "queries", "new connections", "telemetry"}

func (c Class) String() string {
	if c < 0 || c >= numClasses {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

// Limit is the rate of one class: PerSecond operations a second on
// average, with bursts of up to Burst at once. PerSecond <= 0 is no limit.
// Burst <= 0 means one second's worth (at least 1).
type Limit struct {
	PerSecond float64
	Burst     int
}

// Limits are the rates of each class; the zero value limits nothing.
type Limits struct {
	TwinReads   Limit
	TwinUpdates Limit
	Registry    Limit
	Queries     Limit
	Connects    Limit
	Telemetry   Limit
}

func (l Limits) of(c Class) Limit {
	switch c {
	case TwinReads:
		return l.TwinReads
	case TwinUpdates:
		return l.TwinUpdates
	case Registry:
		return l.Registry
	case Queries:
		return l.Queries
	case Connects:
		return l.Connects
	case Telemetry:
		return l.Telemetry
	}
	return Limit{}
}

// String lists the limits that are set, such as "twin updates 250/s".
func (l Limits) String() string {
	var parts []string
	for c := range numClasses {
		if lim := l.of(c); lim.PerSecond > 0 {
			parts = append(parts, fmt.Sprintf("%s %g/s (burst %d)", c, lim.PerSecond, burst(lim)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func burst(l Limit) int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.PerSecond)))
}

// Throttle enforces Limits. A nil *Throttle allows everything, so front
// ends call it unconditionally.
type Throttle struct {
	buckets [numClasses]*rate.Limiter // nil: no limit
	// refused counts the operations refused, by class, for metrics.
	refused [numClasses]atomic.Int64
}

// New returns a Throttle for l, or nil if l limits nothing.
func New(l Limits) *Throttle {
	t := &Throttle{}
	any := false
	for c := range numClasses {
		if lim := l.of(c); lim.PerSecond > 0 {
			t.buckets[c] = rate.NewLimiter(rate.Limit(lim.PerSecond), burst(lim))
			any = true
		}
	}
	if !any {
		return nil
	}
	return t
}

// Allow takes one token of class c, reporting false if there is none:
// the operation must be refused, not delayed.
func (t *Throttle) Allow(c Class) bool {
	if t == nil || c < 0 || c >= numClasses || t.buckets[c] == nil {
		return true
	}
	if !t.buckets[c].Allow() {
		t.refused[c].Add(1)
		return false
	}
	return true
}

// Reserve takes one token of class c now, or the next one to come, and
// says how long to wait before acting on it: 0 when one is there. For an
// operation slowed down without holding a goroutine (a timer acts on it
// later); successive reservations come due in the order they were made.
// A token further away than limit is not taken: ok is false, and the
// operation is to be refused.
func (t *Throttle) Reserve(c Class, limit time.Duration) (delay time.Duration, ok bool) {
	if t == nil || c < 0 || c >= numClasses || t.buckets[c] == nil {
		return 0, true
	}
	r := t.buckets[c].Reserve()
	if !r.OK() {
		t.refused[c].Add(1)
		return 0, false
	}
	if delay = r.Delay(); delay > limit {
		r.Cancel()
		t.refused[c].Add(1)
		return 0, false
	}
	return delay, true
}

// Refused is how many operations of each class were refused so far (by
// Allow and Reserve), keyed by the class's name.
func (t *Throttle) Refused() map[string]int64 {
	out := make(map[string]int64, numClasses)
	for c := range numClasses {
		var n int64
		if t != nil {
			n = t.refused[c].Load()
		}
		out[c.String()] = n
	}
	return out
}

// Wait takes one token of class c, waiting for it if need be: for
// operations that are slowed down rather than refused (telemetry, whose
// PUBACK then comes later, so that a device sends no faster than the
// rate). It fails at once if ctx would end before the token comes.
func (t *Throttle) Wait(ctx context.Context, c Class) error {
	if t == nil || c < 0 || c >= numClasses || t.buckets[c] == nil {
		return nil
	}
	return t.buckets[c].Wait(ctx)
}
