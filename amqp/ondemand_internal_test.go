package amqp

import (
	"sync"
	"testing"
	"time"
)

// TestWorkerPoolNeverBlocks: run hands work to a waiting worker or a new
// one, so work that waits for later work still finishes, and every piece
// runs once.
func TestWorkerPoolNeverBlocks(t *testing.T) {
	p := workerPool{jobs: make(chan func()), idle: 20 * time.Millisecond}
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
	// Workers wait for more, then end: later work runs all the same.
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
}
