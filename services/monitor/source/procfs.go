package source

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// CPUTimes are the host's CPU times from /proc/stat's "cpu" line, in
// jiffies summed over all CPUs.
type CPUTimes struct {
	Total, Idle uint64
}

// ParseProcStat reads /proc/stat's first "cpu" line: total is user + nice
// + system + idle + iowait + irq + softirq + steal (guest time is already
// in user), idle is idle + iowait.
func ParseProcStat(b []byte) (CPUTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return CPUTimes{}, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 4 times", len(f)-1)
		}
		var t CPUTimes
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu time %q: %w", s, err)
			}
			t.Total += v
			if i == 3 || i == 4 { // idle, iowait
				t.Idle += v
			}
		}
		return t, nil
	}
	return CPUTimes{}, fmt.Errorf("/proc/stat has no cpu line")
}

// CPUPercent is the share of busy time between two readings, in percent;
// false when no time passed (or the counters went back).
func CPUPercent(prev, cur CPUTimes) (float64, bool) {
	if cur.Total <= prev.Total {
		return 0, false
	}
	// Linux's idle (+ iowait) counter can step back a little on tickless
	// kernels: a decrease counts as no idle time, not as a failed reading.
	dt, di := float64(cur.Total-prev.Total), 0.0
	if cur.Idle > prev.Idle {
		di = float64(cur.Idle - prev.Idle)
	}
	return min(max((dt-di)/dt*100, 0), 100), true
}

// MemInfo is what /proc/meminfo says of the memory, in bytes.
type MemInfo struct {
	Total, Available uint64
}

// ParseMeminfo reads MemTotal and MemAvailable (kB) from /proc/meminfo.
func ParseMeminfo(b []byte) (MemInfo, error) {
	var m MemInfo
	var seenTotal, seenAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return MemInfo{}, fmt.Errorf("/proc/meminfo: %s has no value", name)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || v > 1<<53 {
			return MemInfo{}, fmt.Errorf("/proc/meminfo: %s %q is not a number of kB", name, f[0])
		}
		if name == "MemTotal" {
			m.Total, seenTotal = v*1024, true
		} else {
			m.Available, seenAvail = v*1024, true
		}
	}
	switch {
	case !seenTotal || m.Total == 0:
		return MemInfo{}, fmt.Errorf("/proc/meminfo has no MemTotal")
	case !seenAvail:
		return MemInfo{}, fmt.Errorf("/proc/meminfo has no MemAvailable (Linux ≥ 3.14 has it)")
	}
	return m, nil
}

// UsedPercent is the memory in use (not available), in percent.
func (m MemInfo) UsedPercent() float64 {
	if m.Available >= m.Total {
		return 0
	}
	return float64(m.Total-m.Available) / float64(m.Total) * 100
}

// ProcStat is what /proc/<pid>/stat says of a process.
type ProcStat struct {
	// CPU is utime + stime, in jiffies.
	CPU uint64
	// RSSPages is the resident set, in pages.
	RSSPages uint64
	// Start is the process's start time since boot, in jiffies: a pid
	// reused by another process has another start.
	Start uint64
}

// ParseProcPidStat reads /proc/<pid>/stat. The command name (field 2) is
// in parentheses and may hold spaces and parentheses: the fields are
// counted from the last ')'.
func ParseProcPidStat(b []byte) (ProcStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("/proc/<pid>/stat has no (comm)")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, starttime 22, rss 24.
	if len(f) < 22 {
		return ProcStat{}, fmt.Errorf("/proc/<pid>/stat has %d fields after the command, want at least 22", len(f))
	}
	num := func(field int) (uint64, error) {
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/stat field %d %q: %w", field, f[field-3], err)
		}
		return v, nil
	}
	var p ProcStat
	var vals [4]uint64
	for k, field := range []int{14, 15, 22, 24} {
		v, err := num(field)
		if err != nil {
			return ProcStat{}, err
		}
		vals[k] = v
	}
	p.CPU, p.Start, p.RSSPages = vals[0]+vals[1], vals[2], vals[3]
	return p, nil
}

// ParsePidFile reads a pid file: a positive decimal number, blanks around.
func ParsePidFile(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexAny(s, " \t\n"); i >= 0 {
		s = s[:i]
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%q is not a pid", abbrev([]byte(s)))
	}
	return pid, nil
}

// abbrev bounds what an error quotes of a file or an answer.
func abbrev(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
