package jetstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestSettingsAgree: nodes that start at once with different proposals
// all get the one stored first, and a replacement at a stale revision is
// refused.
func TestSettingsAgree(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	s, err := OpenSettings(ctx, e.Conn, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, found, err := s.Get(ctx, "hub"); err != nil || found {
		t.Fatalf("Get of a new bucket: found %v, %v", found, err)
	}
	const n = 8
	got := make([]string, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, _, c, err := s.Agree(ctx, "hub", []byte(fmt.Sprintf(`{"node":%d}`, i)))
			if err != nil {
				t.Error(err)
			}
			got[i], created[i] = string(data), c
		}()
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if got[i] != got[0] {
			t.Errorf("node %d agreed on %s, node 0 on %s", i, got[i], got[0])
		}
		if created[i] {
			winners++
			if want := fmt.Sprintf(`{"node":%d}`, i); got[i] != want {
				t.Errorf("node %d created the setting but got %s, not its own %s", i, got[i], want)
			}
		}
	}
	if winners != 1 {
		t.Errorf("%d nodes say they stored the setting, want 1", winners)
	}

	data, rev, found, err := s.Get(ctx, "hub")
	if err != nil || !found || string(data) != got[0] {
		t.Fatalf("Get after Agree: %q found %v, %v", data, found, err)
	}
	if err := s.Replace(ctx, "hub", []byte(`{"node":"renamed"}`), rev); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, "hub", []byte(`{"node":"stale"}`), rev); err == nil {
		t.Error("Replace at a stale revision succeeded")
	}
	if data, _, _, _ := s.Get(ctx, "hub"); string(data) != `{"node":"renamed"}` {
		t.Errorf("after the replacements the setting is %s", data)
	}
}
