package hub

import (
	"sync"
	"testing"

	"github.com/twinhub/twinhub"
)

// TestKeyLocks: writers of one identity take turns, writers of others do
// not wait for them, and no lock is kept once its writers are done.
func TestKeyLocks(t *testing.T) {
	var l keyLocks
	l.init()
	a, b := twinhub.DeviceKey("a"), twinhub.ModuleKey("a", "m")
	unlockA := l.lock(a)
	l.lock(b)() // another identity: not held up by a
	got := make(chan int, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer l.lock(a)()
		got <- 2
	})
	got <- 1
	unlockA()
	wg.Wait()
	if first, second := <-got, <-got; first != 1 || second != 2 {
		t.Fatalf("the second writer of a ran first (%d, %d)", first, second)
	}
	var inside, most int
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for range 100 {
				unlock := l.lock(a)
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				unlock()
			}
		})
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d writers of one identity at once, want 1", most)
	}
	for i := range l.shards {
		if n := len(l.shards[i].locks); n != 0 {
			t.Errorf("shard %d keeps %d locks after their writers are done", i, n)
		}
	}
}
