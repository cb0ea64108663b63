package httprun

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// benchTargetEnv makes the test binary a trivial HTTP target instead of
// running tests: the bench starts it as a separate process so that the
// engine's CPU time is its own.
const benchTargetEnv = "RUNBOOK_BENCH_TARGET_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(benchTargetEnv); addr != "" {
		serveBenchTarget(addr)
		return
	}
	os.Exit(m.Run())
}

// serveBenchTarget answers every request with 200 and a 13-byte body.
func serveBenchTarget(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String()) // the bench reads the port
	body := []byte("Hello, world!")
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
}

func startBenchTarget(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchTargetEnv+"=127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("bench target: %v", err)
	}
	return "http://" + strings.TrimSpace(line) + "/"
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var rpsLine = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// runTool runs wrk or hey and reads its Requests/sec and CPU time.
func runTool(b *testing.B, name string, args ...string) (rps float64, cpu time.Duration, ok bool) {
	b.Helper()
	if _, err := exec.LookPath(name); err != nil {
		b.Logf("%s not installed (apt-get install %s): not measured", name, name)
		return 0, 0, false
	}
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	m := rpsLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("%s: no Requests/sec in:\n%s", name, out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	return rps, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), true
}

// BenchmarkLoadEngineVsWrkHey measures, in one run against the same trivial
// HTTP target (this binary, as a separate process), the load engine's
// maximum requests/s (closed model, no think time) beside wrk's and hey's
// with the same number of connections, and each one's CPU time per request.
// RUNBOOK_BENCH_SECONDS sets each tool's duration (default 5),
// RUNBOOK_BENCH_CONNS the connections (default 50, the seed's VUs).
func BenchmarkLoadEngineVsWrkHey(b *testing.B) {
	secs, conns := 5, 50
	if v, err := strconv.Atoi(os.Getenv("RUNBOOK_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	if v, err := strconv.Atoi(os.Getenv("RUNBOOK_BENCH_CONNS")); err == nil && v > 0 {
		conns = v
	}
	url := startBenchTarget(b)
	d := time.Duration(secs) * time.Second
	p, err := Prepare(plan.Request{URL: url}, env(nil))
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		// Warm up the target and the connections.
		if _, err := RunLoad(context.Background(), LoadConfig{VUs: conns, Duration: time.Second, Requests: []*Prepared{p}}, LoadObserver{}); err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuTime()
		rep, err := RunLoad(context.Background(), LoadConfig{VUs: conns, Duration: d, Requests: []*Prepared{p}}, LoadObserver{})
		if err != nil {
			b.Fatal(err)
		}
		cpu := cpuTime() - cpu0
		if rep.Errors > 0 {
			b.Fatalf("engine: %d errors %v", rep.Errors, rep.Stats.ErrorsByKind)
		}
		engine := rep.RPS
		fmt.Printf("| runbook engine (closed, %d VUs, think 0) | %.0f | %.1f µs | p50 %.2f ms, p99 %.2f ms |\n",
			conns, engine, float64(cpu.Microseconds())/float64(rep.Requests), rep.Stats.Overall.P50MS, rep.Stats.Overall.P99MS)
		b.ReportMetric(engine, "engine-req/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(rep.Requests), "engine-cpu-ns/req")

		threads := "2"
		if wrk, wcpu, ok := runTool(b, "wrk", "-t"+threads, "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s", url); ok {
			n := wrk * float64(secs)
			fmt.Printf("| wrk -t%s -c%d -d%ds | %.0f | %.1f µs | |\n", threads, conns, secs, wrk, float64(wcpu.Microseconds())/n)
			fmt.Printf("engine / wrk = %.2f (target ≥ 0.5)\n", engine/wrk)
			b.ReportMetric(wrk, "wrk-req/s")
		}
		if hey, hcpu, ok := runTool(b, "hey", "-z", strconv.Itoa(secs)+"s", "-c", strconv.Itoa(conns), url); ok {
			n := hey * float64(secs)
			fmt.Printf("| hey -z %ds -c %d | %.0f | %.1f µs | |\n", secs, conns, hey, float64(hcpu.Microseconds())/n)
			fmt.Printf("engine / hey = %.2f (target ≥ 1)\n", engine/hey)
			b.ReportMetric(hey, "hey-req/s")
		}
	}
}
