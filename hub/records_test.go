package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/hub"
	"github.com/twinhub/twinhub/internal/hubtest"
	"github.com/twinhub/twinhub/jetstream"
)

// gettingStore counts the records read from the store.
type gettingStore struct {
	*jetstream.Store
	gets atomic.Int64
}

func (s *gettingStore) Get(ctx context.Context, k twinhub.Key) (*twinhub.Record, uint64, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, k)
}

// TestSoleWriterWritesFromTheIndex: a hub that is its store's only writer,
// without a record cache, starts its writes from its query index's copy of
// each record: one writer a twin reads (nearly) nothing from the store,
// and with two writers a twin (conflicts, retried from the store) every
// update still lands.
func TestSoleWriterWritesFromTheIndex(t *testing.T) {
	var store *gettingStore
	h := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.SoleWriter = true
		c.RecordCacheBytes = -1
		store = &gettingStore{Store: c.Store.(*jetstream.Store)}
		c.Store = store
	})).Hub
	ctx := context.Background()
	const devices, rounds = 4, 40
	for d := range devices {
		if _, err := h.CreateDevice(ctx, twinhub.Device{DeviceID: fmt.Sprintf("w%d", d)}); err != nil {
			t.Fatal(err)
		}
	}
	for phase, writers := range []int{devices, 2 * devices} {
		store.gets.Store(0)
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			k := twinhub.DeviceKey(fmt.Sprintf("w%d", w%devices))
			wg.Go(func() {
				for n := 1; n <= rounds; n++ {
					u := twinhub.TwinUpdate{Tags: map[string]any{fmt.Sprintf("t%d", w): float64(100*phase + n)}, Desired: map[string]any{fmt.Sprintf("d%d", w): float64(n)}}
					if _, err := h.UpdateTwin(ctx, k, u, ""); err != nil {
						errs <- err
						return
					}
					if _, err := h.UpdateReported(ctx, k, map[string]any{fmt.Sprintf("r%d", w): float64(100*phase + n)}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for d := range devices {
			data, err := h.TwinJSON(ctx, twinhub.DeviceKey(fmt.Sprintf("w%d", d)))
			if err != nil {
				t.Fatal(err)
			}
			var twin struct {
				Tags       map[string]any
				Properties struct{ Desired, Reported map[string]any }
			}
			if err := json.Unmarshal(data, &twin); err != nil {
				t.Fatal(err)
			}
			last := float64(100*phase + rounds)
			for w := d; w < writers; w += devices {
				if twin.Tags[fmt.Sprintf("t%d", w)] != last || twin.Properties.Reported[fmt.Sprintf("r%d", w)] != last {
					t.Errorf("phase %d: w%d lost writer %d's last updates: %s", phase, d, w, data)
				}
			}
			// Every desired patch so far (one writer a twin, then two), on
			// top of the first version.
			if v, want := twin.Properties.Desired["$version"], float64(1+rounds*(1+2*phase)); v != want {
				t.Errorf("w%d: desired $version %v, want %v", d, v, want)
			}
		}
		writes := int64(2 * writers * rounds)
		t.Logf("%d writers, %d writes: %d records read from the store", writers, writes, store.gets.Load())
		if phase == 0 && store.gets.Load() > writes/4 {
			t.Errorf("%d writes read %d records from the store: the index's copies were not used", writes, store.gets.Load())
		}
	}
}
