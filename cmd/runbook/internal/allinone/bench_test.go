package allinone_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/embedded"
)

// BenchmarkRawJetStream is the ceiling: publish and consume (with acks) on
// the embedded server, no runbook code, with and without fsync per write.
func BenchmarkRawJetStream(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", fsync), func(b *testing.B) {
			s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: b.TempDir(), NoSync: !fsync, InsecureNoAuth: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Shutdown()
			nc := natsConn(b, s.ClientURL())
			js, _ := jetstream.New(nc)
			ctx := context.Background()
			st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage})
			if err != nil {
				b.Fatal(err)
			}
			cons, _ := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024})
			payload := make([]byte, 300) // about the size of a step event
			got := make(chan struct{}, 1024)
			cc, err := cons.Consume(func(m jetstream.Msg) { _ = m.Ack(); got <- struct{}{} })
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()
			b.ResetTimer()
			pubErr := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if _, err := js.PublishAsync(fmt.Sprintf("raw.%d", i%64), payload); err != nil {
						pubErr <- err
						return
					}
					if i%256 == 255 { // a bounded window of unacknowledged publishes
						<-js.PublishAsyncComplete()
					}
				}
			}()
			for i := 0; i < b.N; i++ {
				select {
				case <-got:
				case err := <-pubErr:
					b.Fatalf("publish: %v", err)
				case <-time.After(30 * time.Second):
					b.Fatalf("no message for 30s after %d of %d", i, b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

const benchPlan = `change_request: {id: CR-BENCH, title: "bench", type: maintenance, priority: low}
requester: {name: bench, role: SRE, contact: bench@example.com}
preflight:
  checks:
    - {name: path, env: {required: [PATH]}}
deploy:
  steps:
%s`

func stepsYAML(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "    - {name: s%d, command: {argv: [\"true\"]}}\n", i)
	}
	return b.String()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// BenchmarkPipeline submits N runs of a plan with a trivial check and step
// at once and waits for every report: throughput in runs/s and events/s,
// plus the median time from change.requested to the first deploy step.
func BenchmarkPipeline(b *testing.B) {
	for _, n := range []int{1, 50, 200} {
		for _, fsync := range []bool{true, false} {
			b.Run(fmt.Sprintf("runs=%d/sync=%v", n, fsync), func(b *testing.B) {
				p := startPipeline(b, func(o *allinone.Options) { o.NoSync = !fsync })
				data := []byte(fmt.Sprintf(benchPlan, stepsYAML(1)))
				pl, issues := plan.Parse("test.yaml", data)
				if pl == nil {
					b.Fatalf("plan invalid: %v", issues)
				}
				var events int
				var firstStep []float64
				lost := 0
				var cpu, cmdCPU time.Duration
				// hops: the time between consecutive events of a run, by
				// the pair of types — where a run's time goes under load.
				hops := map[string][]float64{}
				b.ResetTimer()
				for range b.N {
					reported := watchReports(b, p)
					stopProfile := profileTimed(b)
					cpu0, cmd0 := processCPU(), commandsCPU()
					runs := make([]string, n)
					var wg sync.WaitGroup
					for i := range n {
						wg.Add(1)
						go func() { defer wg.Done(); runs[i] = p.submitParsed(b, data, pl) }()
					}
					wg.Wait()
					reported.wait(b, runs, 120*time.Second)
					cpu += processCPU() - cpu0
					cmdCPU += commandsCPU() - cmd0
					b.StopTimer()
					stopProfile()
					reported.stop()
					for _, r := range runs {
						if rr := p.report(b, r, 120*time.Second); rr.Status != "SUCCESS" {
							lost++
							b.Logf("run %s ended %s: %s", r, rr.Status, strings.Join(types(p.history(b, r)), " "))
						}
					}
					for _, r := range runs {
						h := p.history(b, r)
						events += len(h)
						if c := countType(h, "report.ready"); c != 1 {
							b.Errorf("run %s: %d reports", r, c)
						}
						firstStep = append(firstStep, firstStepOf(h))
						for i := 1; i < len(h); i++ {
							hop := h[i-1].Type + " → " + h[i].Type
							hops[hop] = append(hops[hop], float64(h[i].Time.AsTime().Sub(h[i-1].Time.AsTime()).Microseconds())/1000)
						}
					}
					b.StartTimer()
				}
				b.StopTimer()
				if lost > 0 {
					b.Fatalf("%d runs did not end SUCCESS", lost)
				}
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(n*b.N)/secs, "runs/s")
				b.ReportMetric(float64(events)/secs, "events/s")
				b.ReportMetric(median(firstStep), "ms-to-first-step-under-load-p50")
				b.ReportMetric(float64(cpu.Microseconds())/1000/float64(events), "cpu-ms/event")
				// Of which the step commands themselves (`true`): the
				// baseline of running the command, measured in the same run.
				b.ReportMetric(float64(cmdCPU.Microseconds())/1000/float64(n*b.N), "cmd-cpu-ms/run")
				logHops(b, hops)
			})
		}
	}
}

// profileTimed, with RUNBOOK_BENCH_CPUPROFILE=file, profiles the CPU of
// the timed part only (go test's -cpuprofile also takes in the start and
// the checks after each iteration); iterations after the first append
// numbered files (file.2, ...).
func profileTimed(b *testing.B) (stop func()) {
	b.Helper()
	path := os.Getenv("RUNBOOK_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	profiled++
	if profiled > 1 {
		path = fmt.Sprintf("%s.%d", path, profiled)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

var profiled int

// reportWatch sees each report.ready as it is published, through a plain
// subscription: waiting for the runs costs the server next to nothing (a
// history read per run and poll would be part of what is measured).
type reportWatch struct {
	sub  *nats.Subscription
	runs chan string
	seen map[string]bool
}

func watchReports(b *testing.B, p *pipeline) *reportWatch {
	b.Helper()
	w := &reportWatch{runs: make(chan string, 4096), seen: map[string]bool{}}
	sub, err := p.bus.Conn().Subscribe(eventbus.TypeSubjects("report.ready"), func(m *nats.Msg) {
		if run, _, err := eventbus.ParseSubject(m.Subject); err == nil {
			w.runs <- run
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.bus.Conn().Flush(); err != nil {
		b.Fatal(err)
	}
	w.sub = sub
	return w
}

// wait returns once every run has published its report.ready.
func (w *reportWatch) wait(b *testing.B, runs []string, d time.Duration) {
	b.Helper()
	timeout := time.After(d)
	for _, r := range runs {
		for !w.seen[r] {
			select {
			case run := <-w.runs:
				w.seen[run] = true
			case <-timeout:
				b.Fatalf("no report.ready of %s after %s", r, d)
			}
		}
	}
}

func (w *reportWatch) stop() { _ = w.sub.Unsubscribe() }

// logHops logs, slowest first, the median time between consecutive events
// of a run by the pair of their types (hops seen in at least a tenth of
// the runs).
func logHops(b *testing.B, hops map[string][]float64) {
	b.Helper()
	most := 0
	for _, xs := range hops {
		most = max(most, len(xs))
	}
	type hop struct {
		name   string
		p50, n float64
	}
	var out []hop
	for name, xs := range hops {
		if len(xs)*10 >= most {
			out = append(out, hop{name, median(xs), float64(len(xs))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p50 > out[j].p50 })
	var sb strings.Builder
	for _, h := range out {
		fmt.Fprintf(&sb, "\n  %8.1f ms  %s (%d runs)", h.p50, h.name, int(h.n))
	}
	b.Logf("time between consecutive events of a run, p50:%s", sb.String())
}

// processCPU is the CPU time (user + system) this process has used — the
// embedded NATS server, the five services and the benchmark's own clients —
// and its children that ended: the step commands (`true` costs 1.2–2 ms of
// CPU per start on the project's VM, a third of a run's CPU).
// CPU per event is the figure that holds on a shared machine, where
// wall-clock throughput depends on what else runs.
func processCPU() time.Duration {
	return rusageCPU(syscall.RUSAGE_SELF) + commandsCPU()
}

// commandsCPU is the CPU time of this process's children that ended: the
// step commands.
func commandsCPU() time.Duration { return rusageCPU(syscall.RUSAGE_CHILDREN) }

func rusageCPU(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFirstStepLatency submits runs one after another (no queueing) and
// measures, from the events' own times, change.requested → the first
// deploy.step.started.
// auth=true is the default (nkeys, permissions, every event signed by its
// publisher and checked by its consumers, decisions signed); auth=false is
// --insecure-no-auth, measured in the same run as its baseline.
func BenchmarkFirstStepLatency(b *testing.B) {
	const runs = 20
	for _, cfg := range []struct{ auth, fsync bool }{{true, true}, {false, true}, {true, false}, {false, false}} {
		fsync := cfg.fsync
		b.Run(fmt.Sprintf("auth=%v/sync=%v", cfg.auth, fsync), func(b *testing.B) {
			p := startPipeline(b, func(o *allinone.Options) { o.NoSync = !fsync; o.InsecureNoAuth = !cfg.auth })
			data := []byte(fmt.Sprintf(benchPlan, stepsYAML(1)))
			var lat []float64
			for range b.N {
				for range runs {
					run := p.submit(b, data)
					p.report(b, run, 30*time.Second)
					lat = append(lat, firstStepMS(b, p, run))
				}
			}
			b.ReportMetric(median(lat), "ms-to-first-step-p50")
			sort.Float64s(lat)
			b.ReportMetric(lat[len(lat)*9/10], "ms-to-first-step-p90")
		})
	}
}

// BenchmarkStepOverhead runs a deploy of 50 `true` steps and compares the
// time per step in the pipeline with running `true` directly.
func BenchmarkStepOverhead(b *testing.B) {
	for _, authOn := range []bool{true, false} {
		b.Run(fmt.Sprintf("auth=%v", authOn), func(b *testing.B) { stepOverhead(b, authOn) })
	}
}

func stepOverhead(b *testing.B, authOn bool) {
	const steps = 50
	p := startPipeline(b, func(o *allinone.Options) { o.NoSync = false; o.InsecureNoAuth = !authOn })
	data := []byte(fmt.Sprintf(benchPlan, stepsYAML(steps)))
	var direct, piped, shellLoop []float64
	for range b.N {
		t0 := time.Now()
		if err := exec.Command("sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", steps)).Run(); err != nil {
			b.Fatal(err)
		}
		shellLoop = append(shellLoop, float64(time.Since(t0).Microseconds())/1000/steps)
		for range steps {
			t0 := time.Now()
			if err := exec.Command("true").Run(); err != nil {
				b.Fatal(err)
			}
			direct = append(direct, float64(time.Since(t0).Microseconds())/1000)
		}
		run := p.submit(b, data)
		p.report(b, run, 120*time.Second)
		var starts []time.Time
		for _, e := range p.history(b, run) {
			if s := e.GetDeployStepStarted(); s != nil && s.GetList() == "steps" {
				starts = append(starts, e.Time.AsTime())
			}
		}
		for i := 1; i < len(starts); i++ {
			piped = append(piped, float64(starts[i].Sub(starts[i-1]).Microseconds())/1000)
		}
	}
	d, pp := median(direct), median(piped)
	b.ReportMetric(median(shellLoop), "ms/step-shell-loop")
	b.ReportMetric(d, "ms/step-direct-p50")
	b.ReportMetric(pp, "ms/step-runbook-p50")
	b.ReportMetric(pp-d, "ms/step-overhead-p50")
}
