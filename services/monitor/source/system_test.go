package source

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text  string
		total, idle uint64
		errHas      string
	}{
		{"linux 5.x", "cpu  100 5 50 800 20 1 2 3 40 0\ncpu0 50 2 25 400 10 0 1 1 20 0\nintr 1\n", 981, 820, ""},
		{"old kernel, 4 times", "cpu 10 0 10 80\n", 100, 80, ""},
		{"no cpu line", "intr 1 2 3\n", 0, 0, "no cpu line"},
		{"too short", "cpu 1 2\n", 0, 0, "fields"},
		{"not a number", "cpu 1 2 x 4\n", 0, 0, `"x"`},
	}
	for _, tt := range tests {
		got, err := ParseProcStat([]byte(tt.text))
		if tt.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("%s: err = %v; want %q", tt.name, err, tt.errHas)
			}
			continue
		}
		if err != nil || got.Total != tt.total || got.Idle != tt.idle {
			t.Errorf("%s: %+v, %v; want total %d idle %d", tt.name, got, err, tt.total, tt.idle)
		}
	}
}

func TestCPUPercent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		prev, cur CPUTimes
		want      float64
		ok        bool
	}{
		{CPUTimes{1000, 800}, CPUTimes{1100, 850}, 50, true},
		{CPUTimes{1000, 800}, CPUTimes{1100, 900}, 0, true},
		{CPUTimes{1000, 800}, CPUTimes{1000, 800}, 0, false},  // no time passed
		{CPUTimes{1000, 800}, CPUTimes{900, 700}, 0, false},   // counters went back
		{CPUTimes{1000, 800}, CPUTimes{1100, 799}, 100, true}, // idle stepped back (tickless kernels): no idle time
	} {
		got, ok := CPUPercent(tt.prev, tt.cur)
		if ok != tt.ok || got != tt.want {
			t.Errorf("CPUPercent(%v, %v) = %v, %v; want %v, %v", tt.prev, tt.cur, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	t.Parallel()
	m, err := ParseMeminfo([]byte("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n"))
	if err != nil || m.Total != 16000000*1024 || m.UsedPercent() != 75 {
		t.Errorf("meminfo = %+v (%v%%), %v; want 75%% used", m, m.UsedPercent(), err)
	}
	for text, has := range map[string]string{
		"MemFree: 1 kB\n":                      "no MemTotal",
		"MemTotal: 100 kB\n":                   "no MemAvailable",
		"MemTotal: x kB\nMemAvailable: 1 kB\n": "not a number",
		"MemTotal:\nMemAvailable: 1 kB\n":      "no value",
	} {
		if _, err := ParseMeminfo([]byte(text)); err == nil || !strings.Contains(err.Error(), has) {
			t.Errorf("%q: err = %v; want %q", text, err, has)
		}
	}
}

func TestParseProcPidStat(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses: fields count from the last ')'.
	line := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 500 0 0 0 120 30 0 0 20 0 4 0 98765 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p, err := ParseProcPidStat([]byte(line))
	if err != nil || p.CPU != 150 || p.Start != 98765 || p.RSSPages != 2500 {
		t.Errorf("stat = %+v, %v; want cpu 150, start 98765, rss 2500 pages", p, err)
	}
	for _, bad := range []string{"", "4242 cmd S 1", "1 (x) S 1 2 3", strings.Replace(line, " 120 ", " -5 ", 1)} {
		if _, err := ParseProcPidStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParsePidFile(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]int{"1234\n": 1234, "  77  ": 77, "5 extra\n": 5, "": 0, "abc": 0, "-3": 0, "0": 0} {
		got, err := ParsePidFile([]byte(text))
		if (want == 0) != (err != nil) || got != want {
			t.Errorf("ParsePidFile(%q) = %d, %v; want %d", text, got, err, want)
		}
	}
}

// The host and this test process, from the machine's real /proc.
func TestSystemSourceLive(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc: not Linux")
	}
	host, err := NewSystem(plan.SystemSource{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := host.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v := samplesByMetric(first); len(v) != 2 || !(v[plan.MetricMemory] > 0 && v[plan.MetricMemory] <= 100) || !(v[plan.MetricDisk] > 0 && v[plan.MetricDisk] <= 100) {
		t.Errorf("first host round = %v; want memory and disk in (0, 100] and no cpu yet", v)
	}
	burn(t)
	second, err := host.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := samplesByMetric(second)[plan.MetricCPU]; !ok || v < 0 || v > 100 {
		t.Errorf("second host round cpu = %v (present %v); want a percentage", v, ok)
	}

	pidFile := filepath.Join(t.TempDir(), "test.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := NewSystem(plan.SystemSource{PidFile: pidFile}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The share needs the host's jiffies to move too; on a tickless kernel
	// /proc/stat's total can lag the process's by a tick, and the source
	// then (rightly) reports no share: burn again, a few rounds at most.
	var v map[string]float64
	for round := 0; round < 5; round++ {
		burn(t)
		ss, err := proc.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if v = samplesByMetric(ss); v[plan.MetricCPU] > 0 {
			break
		}
	}
	if rss := v[plan.MetricProcessRSS]; rss < 1<<20 {
		t.Errorf("process RSS = %v bytes; a Go test process has more than 1 MiB", rss)
	}
	if cpu, ok := v[plan.MetricCPU]; !ok || !(cpu > 0) || cpu > 100 {
		t.Errorf("process cpu = %v (present %v); want > 0 after burning CPU", cpu, ok)
	}

	// A pid file naming no process: the round measured nothing (the
	// target is gone), an error, not a quiet process.
	if err := os.WriteFile(pidFile, []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ss, err := proc.Collect(context.Background()); err == nil {
		t.Errorf("gone process: samples %v and no error", ss)
	}
}

// burn spends CPU until /proc/self/stat's CPU time has moved.
func burn(t *testing.T) {
	t.Helper()
	read := func() uint64 {
		b, err := os.ReadFile("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseProcPidStat(b)
		if err != nil {
			t.Fatal(err)
		}
		return p.CPU
	}
	start, x := read(), 0.0
	for i := 0; read() < start+2; i++ {
		for j := range 100000 {
			x += math.Sqrt(float64(i + j))
		}
	}
	_ = x
}
