// Package deadline keeps a connection's read or write deadline a timeout
// ahead without setting it for every packet.
//
// Why: setting a deadline updates a timer in the runtime's network
// poller, and the front ends set one before each packet they read and
// each write: 2-3% of the hub's CPU a telemetry message over MQTT, 3.5%
// over AMQP (BENCHMARKS.md, issue 17). A deadline moved only once it has
// come within a slack of its timeout cuts that to about one update a
// second a busy connection, while an idle or stuck peer is still cut off
// after the timeout, less at most the slack.
package deadline

import "time"

// maxSlack bounds how much earlier than its timeout a deadline may fall.
const maxSlack = time.Second

// Lazy keeps a deadline timeout after the last Extend, give or take its
// slack (an eighth of the timeout, at most maxSlack). It is not safe for
// concurrent use: each loop that reads or writes has its own.
type Lazy struct {
	set     func(time.Time) error
	timeout time.Duration
	slack   time.Duration
	at      time.Time // the deadline last set; zero: none
}

// NewLazy keeps a deadline that set (a net.Conn's SetReadDeadline or
// SetWriteDeadline) applies.
func NewLazy(set func(time.Time) error, timeout time.Duration) *Lazy {
	return &Lazy{set: set, timeout: timeout, slack: min(timeout/8, maxSlack)}
}

// Extend makes sure the deadline is at least timeout-slack from now,
// setting it to timeout from now when it is not.
func (l *Lazy) Extend() error {
	now := time.Now()
	if !l.at.IsZero() && l.at.Sub(now) >= l.timeout-l.slack {
		return nil
	}
	l.at = now.Add(l.timeout)
	return l.set(l.at)
}

// Forget says that the deadline was set by other means: the next Extend
// sets it again.
func (l *Lazy) Forget() { l.at = time.Time{} }
