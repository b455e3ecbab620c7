package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Snapshot is a process's resource use at one moment.
type Snapshot struct {
	CPU        time.Duration // user + system CPU time so far
	RSS        int64         // resident set size, bytes (0: unknown)
	Heap       int64         // Go heap objects, bytes (0: unknown)
	Goroutines int
}

// UsageFunc takes a snapshot of the hub's process.
type UsageFunc func() (Snapshot, error)

// Usage is the hub's resource use over one measurement.
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPercent is CPU time over wall time (200 = two cores busy).
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
	HeapBytes  int64   `json:"heap_bytes,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	Note       string  `json:"note,omitempty"`
}

func usageBetween(a, b Snapshot, wall time.Duration, note string) *Usage {
	u := &Usage{CPUSeconds: (b.CPU - a.CPU).Seconds(), RSSBytes: b.RSS, HeapBytes: b.Heap, Goroutines: b.Goroutines, Note: note}
	if wall > 0 {
		u.CPUPercent = 100 * u.CPUSeconds / wall.Seconds()
	}
	return u
}

// SelfUsage measures this process: for a hub running in-process, which
// then shares CPU and memory with the load generator.
func SelfUsage() (Snapshot, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Snapshot{}, err
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	snap := Snapshot{CPU: cpu, Goroutines: runtime.NumGoroutine()}
	if s[0].Value.Kind() == metrics.KindUint64 {
		snap.Heap = int64(s[0].Value.Uint64())
	}
	snap.RSS, _ = procRSS("self")
	return snap, nil
}

// PIDUsage measures another process on this machine through /proc, and
// its Go heap through metricsURL, its Prometheus /metrics, when given
// (go_memstats_heap_alloc_bytes: the objects in the heap, live after a
// collection, as SelfUsage reads them).
func PIDUsage(pid int, metricsURL string) UsageFunc {
	return func() (Snapshot, error) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return Snapshot{}, err
		}
		// Fields after the command name, which is in parentheses.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return Snapshot{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return Snapshot{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		// f[0] is field 3 (state); utime and stime are fields 14 and 15.
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		const ticks = 100 // USER_HZ on Linux
		snap := Snapshot{CPU: time.Duration(ut+st) * time.Second / ticks}
		snap.RSS, _ = procRSS(strconv.Itoa(pid))
		if metricsURL != "" {
			if g, err := metricsGauges(metricsURL, "go_memstats_heap_alloc_bytes", "go_goroutines"); err == nil {
				snap.Heap, snap.Goroutines = int64(g[0]), int(g[1])
			}
		}
		return snap, nil
	}
}

func procRSS(pid string) (int64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, sc.Err()
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs     int       `json:"cpus"`
	CPUModel string    `json:"cpu_model,omitempty"`
	GoVer    string    `json:"go"`
	OS       string    `json:"os"`
	LoadAvg  string    `json:"load_average_start,omitempty"`
	LoadEnd  string    `json:"load_average_end,omitempty"`
	MemTotal string    `json:"mem_total,omitempty"`
	Date     time.Time `json:"date"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVer: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now().UTC()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	m.LoadAvg = loadAvg()
	return m
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
