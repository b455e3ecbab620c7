package main

import "testing"

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{
		"2GiB": 2 << 30, "512MiB": 512 << 20, "1.5gib": 3 << 29, "2GB": 2e9, "100": 100, "64 MiB": 64 << 20, "1TiB": 1 << 40,
	} {
		if got, err := parseSize(s); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GiB", "2 parsecs", "-1GiB", "1e30GiB"} {
		if got, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", s, got)
		}
	}
	if machineMemory() <= 0 {
		t.Errorf("the machine's memory is unknown here")
	}
}
