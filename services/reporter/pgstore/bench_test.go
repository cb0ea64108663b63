package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// BenchmarkProjection measures, in one run on one stream, the reporter's
// projection against the raw read of the stream it projects (issue 5):
//
//  1. raw consume: bus.Scan over the whole audit stream, decoding and
//     counting (the baseline), and bus.Tail the same way (the reader
//     Project uses);
//  2. reporter.Project into a fresh PostgreSQL store;
//  3. reporter.Project into reporter.NewMemory() (a second reference);
//  4. `runbook replay --rebuild`: store.Reset, then Project again on the
//     same database.
//
// Peak HeapInuse is sampled every 100ms during each projection (and at 10%,
// 50% and 100% of it). The heap includes the embedded NATS server, which
// runs in this process. RUNBOOK_BENCH_EVENTS sets the stream's size
// (default 1,000,000), RUNBOOK_BENCH_BATCH the events per transaction
// (default 5000: of 500, 2000, 5000 and 10000 the fastest that kept the
// peak heap under 400 MB here). Run it with -benchtime 1x
// (`make bench-projection`).
func BenchmarkProjection(b *testing.B) {
	if testing.Short() {
		b.Skip("long benchmark: run without -short")
	}
	n := envInt(b, "RUNBOOK_BENCH_EVENTS", 1_000_000)
	batch := envInt(b, "RUNBOOK_BENCH_BATCH", 5000)
	ctx := context.Background()

	// JetStream in b.TempDir(), fsync off (natstest's NoSync): the stream
	// is loaded fast and then read from the page cache.
	bus := natstest.Bus(b, natstest.Server(b), "bench/load")
	start := time.Now()
	runs, reports := load(b, bus, n)
	loadTime := time.Since(start)
	b.Logf("loaded %d events of %d runs (%d report.ready) in %s (%.0f events/s, async publish, no fsync)",
		n, runs, reports, loadTime.Round(time.Millisecond), float64(n)/loadTime.Seconds())

	// (1) raw consume.
	runtime.GC()
	start = time.Now()
	scanned := 0
	if err := bus.Scan(ctx, nil, 0, func(eventbus.Envelope) error { scanned++; return nil }); err != nil {
		b.Fatal(err)
	}
	raw := float64(scanned) / time.Since(start).Seconds()
	if scanned != n {
		b.Fatalf("scan read %d events, want %d", scanned, n)
	}
	start = time.Now()
	tailed := 0
	err := bus.Tail(ctx, 0, batch, func(bt eventbus.Batch) error {
		tailed += len(bt.Events)
		if bt.LastSeq >= uint64(n) {
			return errDone
		}
		return nil
	})
	if err != errDone || tailed != n {
		b.Fatalf("tail read %d events (%v), want %d", tailed, err, n)
	}
	tail := float64(tailed) / time.Since(start).Seconds()

	// (2) projection into a fresh PostgreSQL store.
	store, err := pgstore.Open(ctx, pgtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	pg := project(b, bus, store, batch, n)
	checkStore(b, store, n, runs, reports)

	// (3) the same into memory.
	mem := project(b, bus, reporter.NewMemory(), batch, n)

	// (4) replay --rebuild: reset, then project again on the same database.
	if err := store.Reset(ctx); err != nil {
		b.Fatal(err)
	}
	rebuild := project(b, bus, store, batch, n)
	checkStore(b, store, n, runs, reports)

	b.Logf("raw consume (bus.Scan):   %8.0f events/s", raw)
	b.Logf("raw consume (bus.Tail):   %8.0f events/s", tail)
	for _, r := range []struct {
		name string
		p    projection
	}{{"project into PostgreSQL", pg}, {"project into memory", mem}, {"replay --rebuild (PG)", rebuild}} {
		b.Logf("%-25s %8.0f events/s  %.2f of raw  heap before %.0f MB, at 10%% %.0f, 50%% %.0f, 100%% %.0f, peak %.0f MB",
			r.name+":", r.p.rate, r.p.rate/raw, mb(r.p.before), mb(r.p.at[0]), mb(r.p.at[1]), mb(r.p.at[2]), mb(r.p.peak))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(raw, "raw_events/s")
	b.ReportMetric(tail, "tail_events/s")
	b.ReportMetric(pg.rate, "pg_events/s")
	b.ReportMetric(pg.rate/raw, "pg/raw")
	b.ReportMetric(mb(pg.peak), "pg_peak_heap_MB")
	b.ReportMetric(mem.rate, "mem_events/s")
	b.ReportMetric(mb(mem.peak), "mem_peak_heap_MB")
	b.ReportMetric(rebuild.rate, "rebuild_events/s")
	b.ReportMetric(rebuild.rate/raw, "rebuild/raw")
	b.ReportMetric(mb(rebuild.peak), "rebuild_peak_heap_MB")
}

var errDone = fmt.Errorf("read to the end")

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func mb(bytes uint64) float64 { return float64(bytes) / (1 << 20) }

// projection is one measured Project call.
type projection struct {
	rate float64
	// before is HeapInuse after a GC before the call, at the heap at 10%,
	// 50% and 100% of the events, peak the highest sample.
	before, peak uint64
	at           [3]uint64
}

func project(b *testing.B, bus *eventbus.Bus, model reporter.ReadModel, batch, n int) projection {
	b.Helper()
	runtime.GC()
	var out projection
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out.before = ms.HeapInuse

	var mu sync.Mutex
	sample := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		out.peak = max(out.peak, ms.HeapInuse)
		mu.Unlock()
		return ms.HeapInuse
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	marks := [3]int{n / 10, n / 2, n}
	next := 0
	p, err := reporter.Project(context.Background(), bus, model, batch, func(p reporter.Progress) {
		for next < len(marks) && p.Events >= marks[next] {
			out.at[next] = sample()
			next++
		}
	})
	close(stop)
	<-done
	if err != nil {
		b.Fatal(err)
	}
	if p.Events != n || p.Seq != uint64(n) {
		b.Fatalf("projected %d events up to %d, want %d", p.Events, p.Seq, n)
	}
	out.rate = p.Rate()
	return out
}

func checkStore(b *testing.B, s *pgstore.Store, n, runs, reports int) {
	b.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM events`, n},
		{`SELECT count(*) FROM runs`, runs},
		{`SELECT count(*) FROM reports`, reports},
		{`SELECT last_seq FROM projection_state`, n},
	} {
		var got int
		if err := s.Pool().QueryRow(ctx, c.sql).Scan(&got); err != nil {
			b.Fatal(err)
		}
		if got != c.want {
			b.Fatalf("%s: %d, want %d", c.sql, got, c.want)
		}
	}
}

// load publishes n events of interleaved runs (32 at a time, like a busy
// installation) asynchronously and returns how many runs and report.ready
// events it published.
func load(b *testing.B, bus *eventbus.Bus, n int) (runs, reports int) {
	b.Helper()
	ctx := context.Background()
	js := bus.JetStream()
	rng := rand.New(rand.NewPCG(5, 5))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var active [][]*runbookv1.Event
	var window []jetstream.PubAckFuture
	flush := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishing stalled for a minute")
		}
		for _, f := range window {
			select {
			case err := <-f.Err():
				b.Fatalf("publish %s: %v", f.Msg().Subject, err)
			default:
			}
		}
		window = window[:0]
	}
	for i := 0; i < n; i++ {
		for len(active) < 32 {
			evs := benchRun(rng, fmt.Sprintf("run-%07d", runs), t0.Add(time.Duration(runs)*time.Second))
			runs++
			if evs[len(evs)-1].GetReportReady() != nil {
				reports++
			}
			active = append(active, evs)
		}
		k := rng.IntN(len(active))
		ev := active[k][0]
		if active[k] = active[k][1:]; len(active[k]) == 0 {
			active[k] = active[len(active)-1]
			active = active[:len(active)-1]
		}
		data, err := eventbus.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		// No Nats-Msg-Id: the ids are unique, and a million-entry
		// duplicate window would sit in this process's heap.
		msg := nats.NewMsg(eventbus.Subject(ev.RunId, ev.Type))
		msg.Data = data
		msg.Header.Set(eventbus.HeaderContentType, eventbus.ContentTypeProto)
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			b.Fatal(err)
		}
		window = append(window, f)
		if len(window) == 2048 {
			flush()
		}
	}
	flush()
	// Runs cut off by the end of the stream published no report.ready.
	// and runs not started yet published nothing.
	for _, evs := range active {
		if evs[len(evs)-1].GetReportReady() != nil {
			reports--
		}
		if evs[0].GetChangeRequested() != nil {
			runs--
		}
	}
	if last, err := bus.LastSeq(ctx); err != nil || last != uint64(n) {
		b.Fatalf("stream ends at %d (%v), want %d", last, err, n)
	}
	return runs, reports
}

// benchRun is one run's events: change.requested with its plan, preflight,
// an assessment, sometimes an approval, a deploy of 3-7 steps that print
// 1-5 lines each, monitor, tests and, for 9 runs in 10, report.ready:
// 20 to 60 events.
func benchRun(rng *rand.Rand, id string, t0 time.Time) []*runbookv1.Event {
	steps := 3 + rng.IntN(5)
	var evs []*runbookv1.Event
	add := func(p any, parts ...any) {
		ev := eventbus.New(id, p, parts...)
		ev.Time = timestamppb.New(t0.Add(time.Duration(len(evs)) * 150 * time.Millisecond))
		ev.Source = "bench/" + strings.SplitN(ev.Type, ".", 2)[0]
		evs = append(evs, ev)
	}
	var plan strings.Builder
	fmt.Fprintf(&plan, "change_request: {id: CR-%s, title: \"rotate the %s certificates\", type: maintenance, priority: low}\n", id, id)
	plan.WriteString("requester: {name: Jane Doe, role: SRE, contact: jane@example.com}\npreflight:\n  checks:\n")
	plan.WriteString("    - {name: api, http: {url: \"https://api.example.com/health\", expect_status: 200}}\n")
	plan.WriteString("    - {name: disk, disk: {path: /var/lib/app, min_free: 10GiB}}\n    - {name: token, env: {required: [DEPLOY_TOKEN]}}\n")
	plan.WriteString("deploy:\n  steps:\n")
	for s := range steps {
		fmt.Fprintf(&plan, "    - {name: step-%d, command: [\"/usr/local/bin/deploy\", \"--stage\", \"%d\", \"--service\", \"billing\"], timeout: 5m}\n", s, s)
	}
	plan.WriteString("monitor: {window: 10m, interval: 30s, thresholds: {error_rate: 0.01, p95_ms: 400}}\n")
	plan.WriteString("rollback:\n  steps:\n    - {name: restore, command: [\"/usr/local/bin/deploy\", \"--rollback\"]}\n")
	add(&runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: plan.String(), PlanSource: "plans/" + id + ".yaml", ChangeId: "CR-" + id,
		Title: "rotate the " + id + " certificates", Requester: "Jane Doe",
		PlanSha256: fmt.Sprintf("%064x", rng.Uint64()),
	}})
	add(&runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 3}})
	add(&runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: []*runbookv1.CheckResult{
		{Name: "api", Kind: "http", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Value: "HTTP 200", Threshold: "200", DurationMs: 12, Blocking: true},
		{Name: "disk", Kind: "disk", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Value: "41 GiB free", Threshold: "10 GiB", DurationMs: 1, Blocking: true},
		{Name: "token", Kind: "env", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Value: "SET", DurationMs: 0, Blocking: true},
	}}})
	add(&runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "LOW", MaxScore: 4, Risks: []*runbookv1.Risk{
		{Id: "R1", Description: "certificate mismatch during rotation", Probability: "low", Impact: "medium", ProbabilityScore: 2, ImpactScore: 2, Score: 4, Level: "LOW"},
	}}})
	if rng.IntN(10) < 3 {
		add(&runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "ops", Approver: "bob"}}, "ops")
	}
	add(&runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: int32(steps)}})
	for s := range steps {
		name := fmt.Sprintf("step-%d", s)
		add(&runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{Index: int32(s), Name: name, Kind: "command", Attempt: 1}}, s, 1)
		for l := range 1 + rng.IntN(5) {
			add(&runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Index: int32(s), Stream: "stdout",
				Text: fmt.Sprintf("2026-11-01T00:00:%02dZ billing: stage %d: updated %d of 12 replicas, healthy", l, s, l+1)}}, s, l)
		}
		add(&runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: int32(s), Name: name, Kind: "command",
			Attempt: 1, DurationMs: int64(200 + rng.IntN(3000)), OutputTail: "updated 12 of 12 replicas, healthy"}}, s, 1)
	}
	add(&runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: int32(steps), DurationMs: 9000}})
	add(&runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "10m", Interval: "30s"}})
	add(&runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{Samples: 20,
		Last: map[string]float64{"error_rate": 0.002, "p95_ms": 212}, Max: map[string]float64{"error_rate": 0.004, "p95_ms": 260}}})
	add(&runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 2}})
	add(&runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 2, Tests: []*runbookv1.TestCase{
		{Name: "login", Type: "smoke", Status: "PASS"}, {Name: "invoice", Type: "smoke", Status: "PASS"},
	}}})
	add(&runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 2}})
	if rng.IntN(10) < 9 {
		report := fmt.Sprintf(`{"run_id":%q,"change_id":"CR-%s","status":"SUCCESS","steps":%d,"preflight":{"passed":3},"monitor":{"samples":20,"violations":0},"tests":{"passed":2,"failed":0}}`, id, id, steps)
		add(&runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "SUCCESS", ReportJson: report,
			QcSummary: strings.Repeat("QC: check passed, nothing to do\n", 12)}})
	}
	return evs
}
