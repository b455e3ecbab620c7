package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// applyMemoryLimit applies --memory-limit: Go's soft memory limit
// (debug.SetMemoryLimit), under which the hub keeps its memory by
// collecting garbage more often as it nears the limit, and giving freed
// memory back to the system. "auto" is half the machine's memory (or of
// the cgroup's limit, when lower), unless GOMEMLIMIT is set, which then
// stays; "off" sets none. It returns the limit in force (0: none).
func applyMemoryLimit(value string, log *slog.Logger) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(value)) {
	case "off", "0":
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, nil
	case "auto", "":
		if os.Getenv("GOMEMLIMIT") != "" {
			return debug.SetMemoryLimit(-1), nil
		}
		total := machineMemory()
		if total <= 0 {
			log.Warn("--memory-limit auto: the machine's memory is unknown; no limit")
			return 0, nil
		}
		debug.SetMemoryLimit(total / 2)
		return total / 2, nil
	}
	n, err := parseSize(value)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %v (a size such as 2GiB or 512MiB, auto, or off)", value, err)
	}
	if n < 64<<20 {
		return 0, fmt.Errorf("--memory-limit %q: below 64 MiB, the hub could not even hold its index", value)
	}
	debug.SetMemoryLimit(n)
	return n, nil
}

// parseSize reads a byte size: a number with an optional unit, B, KB,
// MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (of 1024), in any
// case.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	mult := map[string]float64{"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	if f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(f * mult), nil
}

// machineMemory is the memory the hub may use: the machine's
// (/proc/meminfo), or the cgroup v2 limit when lower; 0 when unknown.
func machineMemory() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
					total = kb << 10
				}
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}
