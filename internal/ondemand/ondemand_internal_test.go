package ondemand

import (
	"sync"
	"testing"
	"time"
)

// TestWorkerPoolNeverBlocks: run hands work to a waiting worker or a new
// one, so work that waits for later work still finishes, and every piece
// runs once.
func TestWorkerPoolNeverBlocks(t *testing.T) {
	p := workerPool{jobs: make(chan func())}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := map[int]int{}
	release := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		p.run(func() {
			defer wg.Done()
			if i < 25 {
				<-release // held until the second half has run
			}
			mu.Lock()
			ran[i]++
			mu.Unlock()
			if i == 49 {
				close(release)
			}
		})
	}
	wg.Wait()
	for i := range 50 {
		if ran[i] != 1 {
			t.Errorf("work %d ran %d times", i, ran[i])
		}
	}
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
}

// TestWorkerPoolBounded: of more workers than maxIdleWorkers, busy at
// once, maxIdleWorkers wait for work once it is done; the others end.
func TestWorkerPoolBounded(t *testing.T) {
	p := workerPool{jobs: make(chan func())}
	var started, finished sync.WaitGroup
	release := make(chan struct{})
	for range 2 * maxIdleWorkers {
		started.Add(1)
		finished.Add(1)
		p.run(func() {
			defer finished.Done()
			started.Done()
			<-release // all busy at once: each needs a worker of its own
		})
	}
	started.Wait()
	close(release)
	finished.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for p.idle.Load() != maxIdleWorkers {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers wait, want %d", p.idle.Load(), maxIdleWorkers)
		}
		time.Sleep(time.Millisecond)
	}
}
