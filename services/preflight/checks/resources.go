package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// DefaultCPUSample is the gap between the two /proc/stat samples.
const DefaultCPUSample = 200 * time.Millisecond

// usage is what the resources check measures, in percent.
type usage struct {
	CPU, Memory, Disk float64
}

// resources is the seed's resource usage check: CPU, memory and disk
// against the plan's limits (default 80, 85, 90 %). Over a limit is a
// warning, as in the seed, unless the plan makes the check blocking.
//
//   - CPU: the share of non-idle time between two samples of /proc/stat's
//     "cpu" line taken CPUSample apart (all CPUs together; idle and iowait
//     count as idle). The seed reads top's "us" column, which is user time
//     only and misses system time.
//   - memory: (MemTotal - MemAvailable) / MemTotal from /proc/meminfo, as
//     free(1) computes "used".
//   - disk: statfs of disk_path, used / (used + available to users),
//     rounded up, as df(1) prints Use%.
func (r *Runner) resources(ctx context.Context, c *plan.ResourcesCheck, res *runbookv1.CheckResult) error {
	limits := usage{CPU: c.EffectiveCPU(), Memory: c.EffectiveMemory(), Disk: c.EffectiveDisk()}
	path := c.EffectiveDiskPath()
	res.Threshold = fmt.Sprintf("CPU ≤ %s%%, memory ≤ %s%%, disk ≤ %s%%", pct(limits.CPU), pct(limits.Memory), pct(limits.Disk))
	u, err := r.measure(ctx, path)
	if err != nil {
		return err
	}
	res.Value = fmt.Sprintf("CPU %.1f%%, memory %.1f%%, disk %s%%", u.CPU, u.Memory, pct(u.Disk))
	if high := overLimits(u, limits, path); len(high) > 0 {
		return errors.New(strings.Join(high, "; "))
	}
	res.Message = fmt.Sprintf("CPU, memory and disk (%s) within limits", path)
	return nil
}

// overLimits lists what is over its limit, in the seed's words. Values are
// compared as shown (one decimal; disk in whole percent).
func overLimits(u, limits usage, path string) []string {
	var high []string
	if u.CPU > limits.CPU {
		high = append(high, fmt.Sprintf("High CPU usage: %.1f%% > %s%%", u.CPU, pct(limits.CPU)))
	}
	if u.Memory > limits.Memory {
		high = append(high, fmt.Sprintf("High memory usage: %.1f%% > %s%%", u.Memory, pct(limits.Memory)))
	}
	if u.Disk > limits.Disk {
		high = append(high, fmt.Sprintf("High disk usage on %s: %s%% > %s%%", path, pct(u.Disk), pct(limits.Disk)))
	}
	return high
}

func (r *Runner) measure(ctx context.Context, diskPath string) (usage, error) {
	proc := r.Proc
	if proc == "" {
		proc = "/proc"
	}
	gap := r.CPUSample
	if gap <= 0 {
		gap = DefaultCPUSample
	}
	pause := r.pause
	if pause == nil {
		pause = sleep
	}
	var u usage
	// statfs can hang on a dead network file system: ask it aside.
	type diskOutcome struct {
		pct float64
		err error
	}
	disk := make(chan diskOutcome, 1)
	go func() {
		p, err := diskUsage(diskPath)
		disk <- diskOutcome{p, err}
	}()

	statPath := filepath.Join(proc, "stat")
	first, err := readCPU(statPath)
	if err != nil {
		return u, err
	}
	if err := pause(ctx, gap); err != nil {
		return u, fmt.Errorf("sampling CPU usage: %w", err)
	}
	second, err := readCPU(statPath)
	if err != nil {
		return u, err
	}
	u.CPU = round1(cpuPercent(first, second))

	memPath := filepath.Join(proc, "meminfo")
	data, err := os.ReadFile(memPath)
	if err != nil {
		return u, fmt.Errorf("cannot read memory usage: %w", err)
	}
	mem, err := memPercent(data)
	if err != nil {
		return u, fmt.Errorf("%s: %w", memPath, err)
	}
	u.Memory = round1(mem)

	select {
	case d := <-disk:
		if d.err != nil {
			return u, d.err
		}
		u.Disk = d.pct
	case <-ctx.Done():
		return u, fmt.Errorf("statfs %s: no answer from the file system: %w", diskPath, ctx.Err())
	}
	return u, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuTimes are the jiffies of /proc/stat's "cpu" line: all of them, and
// the idle ones (idle + iowait).
type cpuTimes struct {
	total, idle uint64
}

func readCPU(path string) (cpuTimes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("cannot read CPU usage: %w", err)
	}
	t, err := parseCPU(data)
	if err != nil {
		return t, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// parseCPU reads the aggregate "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal [guest guest_nice]. guest and guest_nice
// are already counted in user and nice, so they are left out.
func parseCPU(data []byte) (cpuTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return cpuTimes{}, fmt.Errorf("the cpu line has %d fields, want at least 4 numbers", len(f))
		}
		var t cpuTimes
		for i, s := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("the cpu line's field %d is %q, not a number", i+1, s)
			}
			t.total += n
			if i == 3 || i == 4 { // idle, iowait
				t.idle += n
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New(`no "cpu" line`)
}

// cpuPercent is the busy share between two samples; 0 when no time passed.
func cpuPercent(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	total := float64(b.total - a.total)
	idle := float64(b.idle) - float64(a.idle)
	if idle < 0 {
		idle = 0
	}
	p := (total - idle) / total * 100
	return math.Max(0, math.Min(100, p))
}

// memPercent is (MemTotal - MemAvailable) / MemTotal from /proc/meminfo;
// without MemAvailable (kernels before 3.14), MemFree + Buffers + Cached
// stands in for it.
func memPercent(data []byte) (float64, error) {
	kb := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			kb[name] = n
		}
	}
	total := kb["MemTotal"]
	if total == 0 {
		return 0, errors.New("no MemTotal")
	}
	avail, ok := kb["MemAvailable"]
	if !ok {
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	if avail > total {
		avail = total
	}
	return float64(total-avail) / float64(total) * 100, nil
}

func diskUsage(path string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return diskPercent(st.Blocks, st.Bfree, st.Bavail), nil
}

// diskPercent is df's Use%: used / (used + available to unprivileged
// users), rounded up to a whole percent.
func diskPercent(blocks, free, avail uint64) float64 {
	if blocks < free {
		free = blocks
	}
	used := blocks - free
	if used+avail == 0 {
		return 0
	}
	n := used + avail
	return float64((used*100 + n - 1) / n)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// pct prints a percentage without trailing zeros: 80, 12.5.
func pct(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
