package allinone_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// BenchmarkClusterVsAllInOne runs the same runs, in the same process run,
// on `runbook serve` (one process, embedded NATS, R1) and on the shape of
// deploy/compose's cluster file: three NATS nodes with R3 streams (every
// write fsynced on each) and the five services as separate processes, two
// replicas each, everything authenticated. Per mode: runs/s and events/s
// for N runs submitted at once, change.requested → first deploy step
// unqueued (runs one after another) and queued (under the N), and the CPU
// per event of every process involved (the NATS nodes, the services and
// the submitting client).
func BenchmarkClusterVsAllInOne(b *testing.B) {
	n := 50
	if v, err := strconv.Atoi(os.Getenv("RUNBOOK_BENCH_RUNS")); err == nil && v > 0 {
		n = v
	}
	const sequential = 10
	data := []byte(fmt.Sprintf(benchPlan, stepsYAML(1)))
	for _, mode := range []string{"allinone", "cluster"} {
		b.Run(mode, func(b *testing.B) {
			var p *pipeline
			var cpu func() time.Duration
			switch mode {
			case "allinone":
				p = startPipeline(b, func(o *allinone.Options) { o.NoSync = false })
				cpu = processCPU
			case "cluster":
				p, cpu = startClusterPipeline(b)
			}
			var unqueued, queued []float64
			var events int
			var busy time.Duration
			var elapsed time.Duration
			for range b.N {
				for range sequential {
					run := p.submit(b, data)
					if rr := p.report(b, run, 60*time.Second); rr.Status != "SUCCESS" {
						b.Fatalf("run %s ended %s", run, rr.Status)
					}
					unqueued = append(unqueued, firstStepMS(b, p, run))
				}
				cpu0, t0 := cpu(), time.Now()
				runs := make([]string, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { runs[i] = p.submit(b, data) })
				}
				wg.Wait()
				for _, r := range runs {
					if rr := p.report(b, r, 180*time.Second); rr.Status != "SUCCESS" {
						b.Fatalf("run %s ended %s: %s", r, rr.Status, strings.Join(types(p.history(b, r)), " "))
					}
				}
				elapsed += time.Since(t0)
				busy += cpu() - cpu0
				for _, r := range runs {
					h := p.history(b, r)
					events += len(h)
					if c := countType(h, "report.ready"); c != 1 {
						b.Errorf("run %s: %d reports", r, c)
					}
					queued = append(queued, firstStepMS(b, p, r))
				}
			}
			secs := elapsed.Seconds()
			b.ReportMetric(float64(n*b.N)/secs, "runs/s")
			b.ReportMetric(float64(events)/secs, "events/s")
			b.ReportMetric(median(unqueued), "ms-to-first-step-p50")
			b.ReportMetric(median(queued), "ms-to-first-step-under-load-p50")
			b.ReportMetric(float64(busy.Microseconds())/1000/float64(events), "cpu-ms/event")
		})
	}
}

// firstStepMS is change.requested → the first deploy.step.started of run,
// from the events' own times.
func firstStepMS(b *testing.B, p *pipeline, run string) float64 {
	b.Helper()
	return firstStepOf(p.history(b, run))
}

// firstStepOf is change.requested → the first deploy.step.started of a
// run's events, in ms.
func firstStepOf(evs []*runbookv1.Event) float64 {
	var req, step time.Time
	for _, e := range evs {
		if e.Type == "change.requested" {
			req = e.Time.AsTime()
		}
		if e.Type == "deploy.step.started" && step.IsZero() {
			step = e.Time.AsTime()
		}
	}
	return float64(step.Sub(req).Microseconds()) / 1000
}

// startClusterPipeline starts the cluster (startCluster, the read model in
// memory) and returns its pipeline with the CPU time of this process (the
// NATS nodes, the client) and of the service processes.
func startClusterPipeline(b *testing.B) (*pipeline, func() time.Duration) {
	b.Helper()
	rig := startCluster(b, "")
	ctx := context.Background()
	// Every service's consumer is up before the clock starts.
	durables := map[string]bool{"preflight": true, "deployer": true, "monitor": true, "tester": true, "notifier": true}
	natstest.Eventually(b, 60*time.Second, "the services' consumers", func() bool {
		st, err := rig.js.Stream(ctx, eventbus.AuditStream)
		if err != nil {
			return false
		}
		n := 0
		names := st.ConsumerNames(ctx)
		for name := range names.Name() {
			if durables[name] {
				n++
			}
		}
		return n == len(durables)
	})
	cpu := func() time.Duration {
		total := processCPU()
		for _, pr := range rig.procs {
			pr.mu.Lock()
			if pr.cmd != nil && pr.cmd.Process != nil {
				total += pidCPU(pr.cmd.Process.Pid)
			}
			pr.mu.Unlock()
		}
		return total
	}
	return rig.p, cpu
}

// clusterRig is deploy/compose's cluster shape in a test: three
// authenticated NATS nodes with R3 streams, the five services as separate
// processes, two of each, and a pipeline submitting as requester alice.
type clusterRig struct {
	c     *natstest.SecureCluster
	js    jetstream.JetStream // as admin
	procs []*proc
	p     *pipeline
}

// startCluster starts a clusterRig; with dbURL the reporters project into
// PostgreSQL, else in memory. A failing test logs every process's tail.
func startCluster(t testing.TB, dbURL string) *clusterRig {
	t.Helper()
	bin, services := buildServices(t)
	c := natstest.NewSecureCluster(t, 3, "alice")
	admin := c.ConnAs(t, "admin")
	natstest.WaitReady(t, admin)
	ctx := context.Background()
	js, _ := jetstream.New(admin)
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	var procs []*proc
	for _, name := range services {
		for r := 1; r <= 2; r++ {
			a := []string{"--nats-url", c.URLs(), "--metrics-listen", "127.0.0.1:0",
				"--creds", c.Store.SeedPath(name), "--keyring", c.Store.KeyringPath()}
			if name == "reporter" && dbURL != "" {
				a = append(a, "--database-url", dbURL)
			}
			procs = append(procs, startProc(t, filepath.Join(bin, name), filepath.Join(bin, fmt.Sprintf("%s-%d.log", name, r)), a...))
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				b, _ := os.ReadFile(p.log.Name())
				if len(b) > 20000 {
					b = b[len(b)-20000:]
				}
				t.Logf("%s (tail):\n%s", filepath.Base(p.log.Name()), b)
			}
		}
	})
	alice, err := auth.Open(c.Store.SeedPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := eventbus.NewBus(ctx, c.ConnAs(t, "alice"), eventbus.Options{Source: "cli/alice", Signer: alice.KP})
	if err != nil {
		t.Fatal(err)
	}
	return &clusterRig{c: c, js: js, procs: procs, p: &pipeline{bus: bus}}
}

// pidCPU is the user + system CPU time of a running process and of its
// children that ended (its step commands; from /proc/<pid>/stat, in clock
// ticks of 1/100 s); 0 when it cannot be read.
func pidCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime: fields 14-17
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
