// Package accept is the accept loop of the hub's listeners (MQTT and
// AMQP over TLS): one goroutine a connection, and temporary failures of
// Accept (a time-out, no file descriptor left) retried with a growing
// pause instead of ending the listener.
package accept

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Loop accepts connections on ln and hands each to serve on a goroutine
// of its own, until ln fails for good or the server closes. start is
// called before each connection is served and says whether the server
// still takes connections (false: the connection is closed and Loop
// returns net.ErrClosed); closed says whether a failed Accept is the
// server closing ln. protocol names the listener in the log.
func Loop(ln net.Listener, log *slog.Logger, protocol string, start, closed func() bool, serve func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if closed() {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Warn(protocol+" accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !start() {
			nc.Close()
			return net.ErrClosed
		}
		go serve(nc)
	}
}
