package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twinhub/twinhub"
)

// TestUploadsLimit: a device has at most max uploads under way; one that
// ends or expires frees its place; uploads begun at once from many
// goroutines (nodes) are counted exactly.
func TestUploadsLimit(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	u, err := OpenUploads(ctx, e.Conn, 1)
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour)
	for i := range 3 {
		if err := u.Begin(ctx, "dev", fmt.Sprint("c", i), hour, 3); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	if err := u.Begin(ctx, "dev", "c3", hour, 3); !errors.Is(err, twinhub.ErrTooManyUploads) {
		t.Fatalf("a 4th upload of 3: %v", err)
	}
	if err := u.Begin(ctx, "other", "c0", hour, 3); err != nil {
		t.Errorf("another device's upload: %v", err)
	}
	if err := u.End(ctx, "dev", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := u.End(ctx, "dev", "never-begun"); err != nil {
		t.Fatal(err)
	}
	if err := u.Begin(ctx, "dev", "c3", hour, 3); err != nil {
		t.Errorf("an upload after one ended: %v", err)
	}
	for _, id := range []string{"c0", "c2", "c3"} {
		if err := u.End(ctx, "dev", id); err != nil {
			t.Fatal(err)
		}
	}
	// Expired uploads are not counted.
	if err := u.Begin(ctx, "dev", "old", time.Now().Add(-time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if err := u.Begin(ctx, "dev", "new", hour, 1); err != nil {
		t.Errorf("an upload after the only one expired: %v", err)
	}
	// Many at once: exactly max get a place.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := u.Begin(ctx, "busy", fmt.Sprint("b", i), hour, 10)
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, twinhub.ErrTooManyUploads) {
				t.Errorf("Begin: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 {
		t.Errorf("%d of 20 uploads begun at once, want 10", ok)
	}
}
