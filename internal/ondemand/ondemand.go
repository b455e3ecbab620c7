// Package ondemand runs a piece of work on a goroutine that exists only
// while there is work, on a pool of workers shared by the process.
//
// The protocol front ends keep one for each thing a connection may have
// to do later: an AMQP link's queue (its worker, its method calls, its
// desired pushes), a C2D receiver over AMQP or MQTT, the settlement of an
// AMQP connection's deliveries. Thousands of idle devices then hold no
// goroutine, and no goroutine's stack: a goroutine that waited for each
// device's C2D messages was about 10 KB of RSS a connected MQTT device
// (mqtt/c2d.go).
package ondemand

import (
	"sync"
	"sync/atomic"
)

// Runner runs its work when kicked. The work drains what is there and
// returns; a kick while it runs has it run once more before the goroutine
// ends, so nothing kicked is left behind. The zero Runner is ready after
// Init.
type Runner struct {
	mu      sync.Mutex
	running bool
	again   bool
	stopped bool

	// wg counts the goroutine while it runs; loop is what it runs: work
	// until no kick is left. Both are set once (Init), so that a kick
	// allocates nothing: a connection's settlements kick at every
	// message.
	wg   *sync.WaitGroup
	loop func()
}

// Init sets the work that kicks run, on goroutines counted in wg. It
// comes before the first kick.
func (r *Runner) Init(wg *sync.WaitGroup, work func()) {
	r.wg = wg
	r.loop = func() {
		defer wg.Done()
		for {
			work()
			r.mu.Lock()
			if !r.again || r.stopped {
				r.running = false
				r.mu.Unlock()
				return
			}
			r.again = false
			r.mu.Unlock()
		}
	}
}

// Kick runs the work on a worker, unless it is running (it then runs
// once more). It never blocks. After Stop it does nothing: Stop comes
// before the owner waits for wg, so no goroutine is added to wg after
// that.
func (r *Runner) Kick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if r.running {
		r.again = true
		return
	}
	r.running = true
	r.wg.Add(1)
	workers.run(r.loop)
}

// Stop has Kick do nothing from now on; a running work ends by itself.
func (r *Runner) Stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

// Stopped reports whether Stop was called.
func (r *Runner) Stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// workers runs the work of every Runner on goroutines that outlive one
// burst of work: a twin request's work needs a deeper stack than a new
// goroutine has, and growing it for each request took 13% of the hub's
// CPU in bench reported-amqp. A worker keeps its stack from one piece of
// work to the next. At most maxIdleWorkers wait for work, without a
// timer (an idle timer cost a lock of the runtime's timers at every
// wait, that is, every message): more end after their work, so that the
// pool is bounded by the work at once, not by the connections.
var workers = workerPool{jobs: make(chan func())}

const maxIdleWorkers = 64

type workerPool struct {
	jobs chan func() // unbuffered: a send succeeds when a worker waits
	idle atomic.Int32
}

// run runs f on a waiting worker, or on a new one when none waits. It
// never blocks.
func (p *workerPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		go p.work(f)
	}
}

// work runs f, then the jobs handed to it, unless maxIdleWorkers already
// wait.
func (p *workerPool) work(f func()) {
	for {
		f()
		if p.idle.Add(1) > maxIdleWorkers {
			p.idle.Add(-1)
			return
		}
		f = <-p.jobs
		p.idle.Add(-1)
	}
}
