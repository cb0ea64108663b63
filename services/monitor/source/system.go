package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/kis-core/runbook/domain/plan"
)

// System samples the host (CPU %, memory %, disk %) or one process by its
// pid file (CPU % of the host's CPUs, memory % of the host's memory, RSS
// bytes), from the proc filesystem and statfs.
type System struct {
	name     string
	proc     string
	pidFile  string
	diskPath string

	prevHost *CPUTimes
	prevProc *procReading
}

type procReading struct {
	pid  int
	stat ProcStat
	host CPUTimes
}

// NewSystem builds a system source.
func NewSystem(p plan.SystemSource, c Config) (*System, error) {
	c = c.withDefaults()
	s := &System{proc: c.Proc, pidFile: p.PidFile}
	if p.PidFile != "" {
		s.name = KindSystem + " pid_file " + p.PidFile
		return s, nil
	}
	s.diskPath = p.EffectiveDiskPath()
	s.name = KindSystem + " host " + s.diskPath
	return s, nil
}

func (s *System) Kind() string { return KindSystem }
func (s *System) Name() string { return s.name }

// Collect reads the proc filesystem once. CPU % needs two readings: the
// first round has none, and is not missing it either.
func (s *System) Collect(ctx context.Context) ([]Sample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	host, err := s.readHostCPU()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	b, err := os.ReadFile(filepath.Join(s.proc, "meminfo"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	mem, err := ParseMeminfo(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if s.pidFile != "" {
		return s.collectProcess(host, mem)
	}
	var out []Sample
	if s.prevHost != nil {
		if v, ok := CPUPercent(*s.prevHost, host); ok {
			out = append(out, Sample{Metric: plan.MetricCPU, Value: v})
		}
	}
	s.prevHost = &host
	out = append(out, Sample{Metric: plan.MetricMemory, Value: mem.UsedPercent()})
	disk, err := DiskUsedPercent(s.diskPath)
	if err != nil {
		return out, missing(s.name, map[string]error{plan.MetricDisk: err})
	}
	return append(out, Sample{Metric: plan.MetricDisk, Value: disk}), nil
}

func (s *System) readHostCPU() (CPUTimes, error) {
	b, err := os.ReadFile(filepath.Join(s.proc, "stat"))
	if err != nil {
		return CPUTimes{}, err
	}
	return ParseProcStat(b)
}

// collectProcess samples the pid file's process. A process that is gone
// (or a pid file that names none) is an error: the target stopped, which
// the monitor counts as missing data, never as a quiet process.
func (s *System) collectProcess(host CPUTimes, mem MemInfo) ([]Sample, error) {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	pid, err := ParsePidFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	b, err = os.ReadFile(filepath.Join(s.proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, fmt.Errorf("%s: process %d: %w", s.name, pid, err)
	}
	st, err := ParseProcPidStat(b)
	if err != nil {
		return nil, fmt.Errorf("%s: process %d: %w", s.name, pid, err)
	}
	cur := &procReading{pid: pid, stat: st, host: host}
	rss := float64(st.RSSPages) * float64(os.Getpagesize())
	out := []Sample{
		{Metric: plan.MetricMemory, Value: rss / float64(mem.Total) * 100},
		{Metric: plan.MetricProcessRSS, Value: rss},
	}
	if p := s.prevProc; p != nil && p.pid == pid && p.stat.Start == st.Start && host.Total > p.host.Total && st.CPU >= p.stat.CPU {
		// The process's CPU jiffies over all CPUs' jiffies: a share of the
		// whole host, like the host's own cpu_utilization.
		v := float64(st.CPU-p.stat.CPU) / float64(host.Total-p.host.Total) * 100
		out = append([]Sample{{Metric: plan.MetricCPU, Value: min(v, 100)}}, out...)
	}
	s.prevProc = cur
	return out, nil
}

// DiskUsedPercent is the used share of the filesystem holding path, as df
// computes it: used / (used + available to unprivileged users).
func DiskUsedPercent(path string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	used := float64(st.Blocks - st.Bfree)
	avail := float64(st.Bavail)
	if used+avail <= 0 {
		return 0, fmt.Errorf("statfs %s: the filesystem has no blocks", path)
	}
	return used / (used + avail) * 100, nil
}
