package checks

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "proc", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCPUAndPercent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		dir  string
		want float64
	}{
		{"idle", 12.5},       // guest time is inside user time: not counted twice
		{"busy", 90},         // irq and softirq count as busy
		{"old-kernel", 50.0}, // only user nice system idle
	} {
		a, err := parseCPU(fixture(t, c.dir+"/stat.before"))
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		b, err := parseCPU(fixture(t, c.dir+"/stat.after"))
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if got := cpuPercent(a, b); got != c.want {
			t.Errorf("%s: CPU %v%%, want %v%%", c.dir, got, c.want)
		}
	}
	if got := cpuPercent(cpuTimes{100, 50}, cpuTimes{100, 50}); got != 0 {
		t.Errorf("no time passed: %v", got)
	}
	for _, in := range []string{"", "cpu0 1 2 3 4\n", "cpu  1 2 3\n", "cpu  1 x 3 4\n"} {
		if _, err := parseCPU([]byte(in)); err == nil {
			t.Errorf("parseCPU(%q): no error", in)
		}
	}
}

func TestMemPercent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		dir  string
		want float64
	}{{"idle", 40.1}, {"busy", 90}, {"old-kernel", 50}} {
		got, err := memPercent(fixture(t, c.dir+"/meminfo"))
		if err != nil || round1(got) != c.want {
			t.Errorf("%s: memory %v%% (%v), want %v%%", c.dir, got, err, c.want)
		}
	}
	if _, err := memPercent([]byte("MemFree: 1 kB\n")); err == nil {
		t.Error("meminfo without MemTotal: no error")
	}
}

func TestDiskPercent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		blocks, free, avail uint64
		want                float64
	}{
		{1000, 370, 370, 63},        // 630 used of 1000
		{1000, 370, 320, 67},        // 50 blocks reserved for root: df counts used / (used + avail) = 630/950 = 66.3 → 67
		{1000, 1000, 1000, 0},       // empty
		{1000, 0, 0, 100},           // full
		{0, 0, 0, 0},                // no blocks (a pseudo file system)
		{1000000, 99999, 99999, 91}, // 900001/1000000 = 90.0001 → 91, as df rounds up
	} {
		if got := diskPercent(c.blocks, c.free, c.avail); got != c.want {
			t.Errorf("diskPercent(%d, %d, %d) = %v, want %v", c.blocks, c.free, c.avail, got, c.want)
		}
	}
}

// TestResourcesFixtures runs the whole check on fixture /proc files: the
// first /proc/stat sample is stat.before, and the pause between the two
// samples puts stat.after in its place. The disk is the real statfs of a
// temporary directory, so its limit is kept at 100 %.
func TestResourcesFixtures(t *testing.T) {
	t.Parallel()
	yes := true
	cases := []struct {
		name      string
		dir       string
		check     plan.ResourcesCheck
		blocking  *bool
		status    runbookv1.CheckStatus
		value     string
		fragments []string
	}{
		{"idle machine, default CPU and memory limits", "idle", plan.ResourcesCheck{DiskPercent: 100}, nil, pass,
			`^CPU 12\.5%, memory 40\.1%, disk \d+%$`, []string{"within limits"}},
		{"busy machine warns, as in the seed", "busy", plan.ResourcesCheck{DiskPercent: 100}, nil, warn,
			`^CPU 90\.0%, memory 90\.0%, disk \d+%$`, []string{"High CPU usage: 90.0% > 80%", "High memory usage: 90.0% > 85%"}},
		{"busy machine fails when the plan says blocking", "busy", plan.ResourcesCheck{DiskPercent: 100}, &yes, bad,
			`^CPU 90\.0%`, []string{"High CPU usage: 90.0% > 80%"}},
		{"plan limits above the usage", "busy", plan.ResourcesCheck{CPUPercent: 95, MemoryPercent: 90, DiskPercent: 100}, nil, pass,
			`^CPU 90\.0%, memory 90\.0%`, []string{"within limits"}}, // 90.0 is not over 90
		{"only memory over", "old-kernel", plan.ResourcesCheck{MemoryPercent: 49.9, DiskPercent: 100}, nil, warn,
			`^CPU 50\.0%, memory 50\.0%`, []string{"High memory usage: 50.0% > 49.9%"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			put := func(from, to string) {
				if err := os.WriteFile(filepath.Join(root, to), fixture(t, c.dir+"/"+from), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			put("stat.before", "stat")
			put("meminfo", "meminfo")
			rc := c.check
			rc.DiskPath = root
			r := &Runner{Proc: root, CPUSample: time.Millisecond, pause: func(ctx context.Context, d time.Duration) error {
				put("stat.after", "stat")
				return nil
			}}
			res := r.Run(context.Background(), 0, plan.Check{Blocking: c.blocking, Resources: &rc})
			expect(t, res, c.status, nil, c.fragments...)
			if !regexp.MustCompile(c.value).MatchString(res.Value) {
				t.Errorf("value %q does not match %s", res.Value, c.value)
			}
			if res.Blocking != (c.blocking != nil) {
				t.Errorf("blocking %v", res.Blocking)
			}
		})
	}
}

func TestResourcesThreshold(t *testing.T) {
	t.Parallel()
	res := (&Runner{Proc: filepath.Join("testdata", "proc", "no-such-dir")}).Run(context.Background(), 0, plan.Check{Resources: &plan.ResourcesCheck{}})
	if res.Threshold != "CPU ≤ 80%, memory ≤ 85%, disk ≤ 90%" {
		t.Errorf("threshold %q", res.Threshold)
	}
	// /proc cannot be read: a warning (the check is not blocking), saying so.
	expect(t, res, warn, nil, "cannot read CPU usage")
}

// TestResourcesRealMachine measures this machine: /proc, statfs of /, the
// real 200ms CPU sample. Its load is unknown, so the status may be PASS or
// WARN, never FAIL (not blocking); a disk limit of 0.5 % is surely exceeded.
func TestResourcesRealMachine(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res := (&Runner{}).Run(context.Background(), 0, plan.Check{Resources: &plan.ResourcesCheck{}})
	t.Logf("%s: value %q, threshold %q, message %q", res.Status, res.Value, res.Threshold, res.Message)
	if !regexp.MustCompile(`^CPU \d+\.\d%, memory \d+\.\d%, disk \d+%$`).MatchString(res.Value) {
		t.Errorf("value %q", res.Value)
	}
	if res.Status == bad || res.Blocking {
		t.Errorf("a resources check is a warning by default: %v blocking %v", res.Status, res.Blocking)
	}
	if d := time.Since(start); d < DefaultCPUSample {
		t.Errorf("took %s: the CPU was not sampled over %s", d, DefaultCPUSample)
	}
	full := (&Runner{CPUSample: 10 * time.Millisecond}).Run(context.Background(), 0, plan.Check{Resources: &plan.ResourcesCheck{CPUPercent: 100, MemoryPercent: 100, DiskPercent: 0.5}})
	expect(t, full, warn, nil, "High disk usage on /: ", "% > 0.5%")
}
