package hub

import "testing"

// TestFanout: each function gets the events of its key until cancelled,
// in any order of cancellation; sendAll reaches every one.
func TestFanout(t *testing.T) {
	var f fanout[string, int]
	got := map[string][]int{}
	cancels := map[string]func(){}
	for _, name := range []string{"a1", "a2", "a3", "b"} {
		key := name[:1]
		cancels[name] = f.add(key, func(v int) { got[name] = append(got[name], v) })
	}
	f.send("a", 1)
	cancels["a2"]()
	cancels["a2"]() // twice does nothing more
	f.send("a", 2)
	f.send("b", 3)
	cancels["a1"]()
	f.sendAll(4)
	cancels["a3"]()
	cancels["b"]()
	f.send("a", 5)
	want := map[string][]int{"a1": {1, 2}, "a2": {1}, "a3": {1, 2, 4}, "b": {3, 4}}
	for name, w := range want {
		if len(got[name]) != len(w) {
			t.Errorf("%s got %v, want %v", name, got[name], w)
			continue
		}
		for i := range w {
			if got[name][i] != w[i] {
				t.Errorf("%s got %v, want %v", name, got[name], w)
			}
		}
	}
	if len(f.fns) != 0 {
		t.Errorf("keys left after every cancel: %v", f.fns)
	}
}
