package amqp

import "sync"

// onDemand runs a piece of work on a goroutine that exists only while
// there is work: a link's worker, a C2D receiver, the desired pushes of a
// twin channel, the settlement of a connection's deliveries. Thousands of
// idle devices multiplexed on connections then hold no goroutine. The
// work drains what is there and returns; a kick while it runs has it run
// once more before the goroutine ends, so nothing kicked is left behind.
type onDemand struct {
	mu      sync.Mutex
	running bool
	again   bool
	stopped bool
}

// kick runs work on a goroutine of its own, counted in wg, unless one is
// running (which then runs work once more). It never blocks. After stop
// it does nothing: stop comes before the connection waits for wg, so no
// goroutine is added to wg after that.
func (d *onDemand) kick(wg *sync.WaitGroup, work func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.running {
		d.again = true
		return
	}
	d.running = true
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			work()
			d.mu.Lock()
			if !d.again || d.stopped {
				d.running = false
				d.mu.Unlock()
				return
			}
			d.again = false
			d.mu.Unlock()
		}
	}()
}

// stop has kick do nothing from now on; a running goroutine ends after
// its work.
func (d *onDemand) stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
}

// isStopped reports whether stop was called.
func (d *onDemand) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}
