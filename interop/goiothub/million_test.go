package goiothub

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinhub/twinhub/internal/servetest"
)

// TestBenchMillionSmoke runs `twinhub bench million` at 20,000 twins with
// a hub process of its own, as a smoke test of the scenario and its
// restart: every phase must count operations without errors. The figures
// at 1,000,000 twins are in BENCHMARKS.md; no timing is checked here.
func TestBenchMillionSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 20,000 twins into a hub of its own")
	}
	results, out := runBench(t, "million", "--twins", "20000", "--duration", "2s", "--hub-process")
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Name] = true
		if r.Errors != 0 || (r.Name != "million/memory" && r.Ops == 0) {
			t.Errorf("%s: %d operations, %d errors", r.Name, r.Ops, r.Errors)
		}
	}
	for _, name := range []string{"million/load", "million/updates-rest", "million/by-id", "million/selective", "million/reported-mqtt", "million/memory", "million/restart"} {
		if !seen[name] {
			t.Errorf("no result %s:\n%s", name, out)
		}
	}
}

// TestBenchBareServersOfTheirOwn runs the https and tls baselines as
// `bench --hub-process` does: each bare server in a process of its own
// (twinhub bench-bare-server), as the hub, its CPU read from /proc apart
// from the load generator's. No timing is checked.
func TestBenchBareServersOfTheirOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and two bare servers")
	}
	results, out := runBench(t, "https", "tls", "--quick", "--duration", "1s", "--hub-process")
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Name] = true
		if r.Ops == 0 || r.Errors != 0 {
			t.Errorf("%s: %d operations, %d errors", r.Name, r.Ops, r.Errors)
		}
		if r.Hub == nil || r.Hub.CPUSeconds <= 0 || r.Generator == nil || r.Generator.CPUSeconds <= 0 {
			t.Errorf("%s: the server's and the client's CPU apart: %+v and %+v", r.Name, r.Hub, r.Generator)
		}
		if !strings.Contains(strings.Join(r.Notes, "; "), "server in a process of its own") {
			t.Errorf("%s: notes %q", r.Name, r.Notes)
		}
	}
	for _, name := range []string{"https-get", "tls-handshake/tls1.2", "tls-handshake/tls1.3"} {
		if !seen[name] {
			t.Errorf("no result %s:\n%s", name, out)
		}
	}
}

// benchResult is what these tests read of a result of `twinhub bench
// --json`.
type benchResult struct {
	Name      string    `json:"name"`
	Ops       int64     `json:"ops"`
	Errors    int64     `json:"errors"`
	Rate      float64   `json:"rate_per_s"`
	Hub       *benchCPU `json:"hub"`
	Generator *benchCPU `json:"generator"`
	Notes     []string  `json:"notes"`
}

type benchCPU struct {
	CPUSeconds float64 `json:"cpu_seconds"`
}

// runBench runs `twinhub bench` with args and a data folder of its own,
// and returns the results of its JSON report and what it printed.
func runBench(t *testing.T, args ...string) ([]benchResult, []byte) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(servetest.Binary(t), append([]string{"--data", t.TempDir(), "bench"}, append(args, "--json", report)...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("twinhub bench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Results []benchResult `json:"results"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Results, out
}
