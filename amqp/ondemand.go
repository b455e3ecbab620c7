package amqp

import (
	"sync"
	"sync/atomic"
)

// onDemand runs a piece of work on a goroutine that exists only while
// there is work: a link's queue (sendQueue: its worker, its method calls,
// its desired pushes), a C2D receiver, the settlement of a connection's
// deliveries. Thousands of
// idle devices multiplexed on connections then hold no goroutine. The
// work drains what is there and returns; a kick while it runs has it run
// once more before the goroutine ends, so nothing kicked is left behind.
type onDemand struct {
	mu      sync.Mutex
	running bool
	again   bool
	stopped bool

	// wg counts the goroutine while it runs; loop is what it runs: work
	// until no kick is left. Both are set once (init), so that a kick
	// allocates nothing: a connection's settlements kick at every
	// message.
	wg   *sync.WaitGroup
	loop func()
}

// init sets the work that kicks run, on goroutines counted in wg. It
// comes before the first kick.
func (d *onDemand) init(wg *sync.WaitGroup, work func()) {
	d.wg = wg
	d.loop = func() {
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
	}
}

// kick runs the work on a goroutine of its own, unless one is running
// (which then runs it once more). It never blocks. After stop it does
// nothing: stop comes before the connection waits for wg, so no
// goroutine is added to wg after that.
func (d *onDemand) kick() {
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
	d.wg.Add(1)
	workers.run(d.loop)
}

// workers runs the work of every onDemand on goroutines that outlive one
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

// sendQueue is a queue of what a link has to carry out in order: what the
// hub hands it from its own goroutines (method calls, desired changes), or
// the messages a client sent on it (a link's worker, worker.go). A
// goroutine that runs only while the queue has some (onDemand) takes them
// one at a time.
type sendQueue[T any] struct {
	max int // how many may wait; 0: no bound (the link's credit bounds them)
	// send carries out v, with waiting more behind it, on the queue's
	// goroutine; an error stops the queue.
	send func(v T, waiting int) error

	mu    sync.Mutex
	items []T
	run   onDemand
}

// newSendQueue makes a queue of at most max items (0: no bound) that
// send carries out on a goroutine counted in wg.
func newSendQueue[T any](max int, wg *sync.WaitGroup, send func(v T, waiting int) error) *sendQueue[T] {
	q := &sendQueue[T]{max: max, send: send}
	q.run.init(wg, q.drain)
	return q
}

// add queues v to be sent, or reports false when max wait already. It
// never blocks.
func (q *sendQueue[T]) add(v T) bool {
	q.mu.Lock()
	if q.max > 0 && len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.run.kick()
	return true
}

// drain sends what is queued, in order, until the queue is empty or a send
// fails.
func (q *sendQueue[T]) drain() {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.items = nil // let a burst's array go
			q.mu.Unlock()
			return
		}
		v := q.items[0]
		var zero T
		q.items[0] = zero
		q.items = q.items[1:]
		waiting := len(q.items)
		q.mu.Unlock()
		if err := q.send(v, waiting); err != nil {
			q.stop()
			return
		}
	}
}

// stop drops what is queued and sends nothing more.
func (q *sendQueue[T]) stop() {
	q.run.stop()
	q.mu.Lock()
	q.items = nil
	q.mu.Unlock()
}
