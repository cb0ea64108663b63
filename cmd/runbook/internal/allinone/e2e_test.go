package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/examples/estimator"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// repoRoot finds the repository root (where go.work is).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found")
		}
		dir = parent
	}
}

// target is the demo estimator, in-process, on a real HTTP server.
type target struct {
	url, stateDir string
}

func startTarget(t *testing.T) *target {
	t.Helper()
	dir := t.TempDir()
	h, err := estimator.New(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &target{url: srv.URL, stateDir: dir}
}

func (tg *target) release(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(tg.url + "/api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Release any `json:"release"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	return fmt.Sprint(body.Release) + " " + string(b)
}

// examplePlan loads examples/plans/<name> pointed at tg.
func examplePlan(t *testing.T, name string, tg *target, edit func(string) string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "plans", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "http://127.0.0.1:18080", tg.url)
	s = strings.ReplaceAll(s, "127.0.0.1:18080", strings.TrimPrefix(tg.url, "http://"))
	s = strings.ReplaceAll(s, ".demo/estimator", tg.stateDir)
	if edit != nil {
		s = edit(s)
	}
	return []byte(s)
}

type pipeline struct {
	srv  *allinone.Server
	bus  *eventbus.Bus
	stop func() // shuts the pipeline down and waits; safe to call twice
}

func startPipeline(t testing.TB, tweak func(*allinone.Options)) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := allinone.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", NoSync: true}
	if tweak != nil {
		tweak(&o)
	}
	srv, err := allinone.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// The test acts as admin (it publishes what people and services would).
	var copts []nats.Option
	var signer nkeys.KeyPair
	if c := srv.Creds("admin"); c != "" {
		id, err := auth.Open(c)
		if err != nil {
			t.Fatal(err)
		}
		copts, signer = id.Options(), id.KP
	}
	if o.TLS.CA != "" {
		topts, err := auth.ClientOptions(o.TLS.CA)
		if err != nil {
			t.Fatal(err)
		}
		copts = append(copts, topts...)
	}
	nc, err := eventbus.Connect(srv.NATSURL(), "e2e", copts...)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			nc.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "e2e", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline{srv: srv, bus: bus, stop: stop}
}

func (p *pipeline) submit(t testing.TB, data []byte) string {
	t.Helper()
	pl, issues := plan.Parse("test.yaml", data)
	if pl == nil {
		t.Fatalf("plan invalid: %v", issues)
	}
	return p.submitParsed(t, data, pl)
}

// submitParsed submits a plan already parsed (the benchmarks submit one
// plan many times: what is measured is the pipeline, not the CLI's YAML
// parser).
func (p *pipeline) submitParsed(t testing.TB, data []byte, pl *plan.Plan) string {
	t.Helper()
	run, err := cli.Submit(context.Background(), p.bus, "test.yaml", data, pl, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// report waits for the run's report.ready.
func (p *pipeline) report(t testing.TB, run string, d time.Duration) *runbookv1.ReportReady {
	t.Helper()
	var rr *runbookv1.ReportReady
	natstest.Eventually(t, d, "report.ready of "+run, func() bool {
		e, err := p.bus.LastEvent(context.Background(), run, "report.ready")
		if err == nil && e != nil {
			rr = e.Event.GetReportReady()
		}
		return rr != nil
	})
	return rr
}

func (p *pipeline) history(t testing.TB, run string) []*runbookv1.Event {
	t.Helper()
	h, err := p.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*runbookv1.Event, len(h))
	for i, e := range h {
		out[i] = e.Event
	}
	return out
}

func types(evs []*runbookv1.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func index(evs []*runbookv1.Event, typ string) int {
	for i, e := range evs {
		if e.Type == typ {
			return i
		}
	}
	return -1
}

func countType(evs []*runbookv1.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func noDuplicateIDs(t testing.TB, evs []*runbookv1.Event) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.Id] {
			t.Errorf("event id %s appears twice", e.Id)
		}
		seen[e.Id] = true
	}
}

// shorten makes the example plans quick for tests: a shorter watch window
// and load test.
func shorten(s string) string {
	s = strings.Replace(s, "window: 12s", "window: 4s", 1)
	s = strings.Replace(s, "interval: 2s", "interval: 1s", 1)
	s = strings.Replace(s, "duration: 5s", "duration: 1s", 1)
	return s
}

func TestGoodPlanSucceedsBadPlanRollsBack(t *testing.T) {
	tg := startTarget(t)
	p := startPipeline(t, nil)

	good := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	rr := p.report(t, good, 60*time.Second)
	evs := p.history(t, good)
	if rr.Status != "SUCCESS" {
		t.Fatalf("good plan ended %s:\n%s\nevents: %v", rr.Status, rr.QcSummary, types(evs))
	}
	// Every phase, in causal order.
	order := []string{"change.requested", "preflight.started", "plan.assessed", "preflight.passed", "deploy.started",
		"deploy.step.started", "deploy.step.succeeded", "deploy.done", "report.ready"}
	last := -1
	for _, typ := range order {
		i := index(evs, typ)
		if i <= last {
			t.Fatalf("%s at %d, not after the previous phase (%d): %v", typ, i, last, types(evs))
		}
		last = i
	}
	for _, typ := range []string{"monitor.started", "monitor.completed", "test.started", "test.smoke.passed", "test.load.passed", "test.passed"} {
		if i := index(evs, typ); i < index(evs, "deploy.started") || i > index(evs, "report.ready") {
			t.Errorf("%s at %d: not between deploy.started and report.ready: %v", typ, i, types(evs))
		}
	}
	if index(evs, "rollback.requested") >= 0 {
		t.Errorf("good plan asked for a rollback: %v", types(evs))
	}
	if lines := strings.Split(rr.QcSummary, "\n"); len(lines) != 14 || !strings.HasPrefix(lines[3], "Status: SUCCESS") {
		t.Errorf("QC summary:\n%s", rr.QcSummary)
	}
	noDuplicateIDs(t, evs)

	bad := p.submit(t, examplePlan(t, "bad-release.yaml", tg, shorten))
	rr = p.report(t, bad, 60*time.Second)
	evs = p.history(t, bad)
	if rr.Status != "ROLLED_BACK" {
		t.Fatalf("bad plan ended %s:\n%s\nevents: %v", rr.Status, rr.QcSummary, types(evs))
	}
	if n := strings.Count(strings.Join(types(evs), " "), "rollback.started"); n != 1 {
		t.Errorf("rollback.started %d times", n)
	}
	if index(evs, "rollback.done") < index(evs, "rollback.started") {
		t.Errorf("no rollback.done after rollback.started: %v", types(evs))
	}
	noDuplicateIDs(t, evs)
	if rel := tg.release(t); !strings.Contains(rel, "v2.4.0") || strings.Contains(rel, "bad") {
		t.Errorf("after the rollback the target answers %s, want the good release v2.4.0", rel)
	}
}

func TestJSONChangeRequestedFromPlainNATS(t *testing.T) {
	// The wire format from a script, on an open server (--insecure-no-auth):
	// with authentication a change request must also be signed.
	p := startPipeline(t, func(o *allinone.Options) { o.InsecureNoAuth = true })
	nc, err := nats.Connect(p.srv.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	planYAML := `change_request: {id: CR-JSON-1, title: "from a script", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - name: noop
      command: {argv: ["true"]}
`
	body, _ := json.Marshal(map[string]any{
		"id": "JSON-RUN-1/change.requested", "runId": "JSON-RUN-1", "type": "change.requested",
		"time":            time.Now().UTC().Format(time.RFC3339Nano),
		"changeRequested": map[string]any{"planYaml": planYAML, "planSource": "script"},
	})
	msg := nats.NewMsg("runbook.JSON-RUN-1.change.requested")
	msg.Header.Set("Content-Type", "application/json")
	msg.Data = body
	js, _ := nc.JetStream()
	if _, err := js.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	rr := p.report(t, "JSON-RUN-1", 30*time.Second)
	if rr.Status != "SUCCESS" {
		t.Fatalf("JSON-submitted run ended %s: %v", rr.Status, types(p.history(t, "JSON-RUN-1")))
	}
}

func TestInvalidPlanIsRejectedAndServiceGoesOn(t *testing.T) {
	p := startPipeline(t, nil)
	bad := `change_request: {id: CR-BAD, title: bad, type: enhancment, priority: urgent}
requester: {name: ops}
deploy:
  steps:
    - name: typo
      comand: {argv: ["true"]}
`
	ev := eventbus.New("BAD-RUN-1", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanYaml: bad, PlanSource: "bad.yaml"}})
	if err := p.bus.Sign(ev, plan.Hash([]byte(bad)), "requester"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.bus.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	rr := p.report(t, "BAD-RUN-1", 30*time.Second)
	if rr.Status != "INVALID" {
		t.Fatalf("invalid plan ended %s", rr.Status)
	}
	rej, _ := p.bus.LastEvent(context.Background(), "BAD-RUN-1", "change.rejected")
	if rej == nil {
		t.Fatal("no change.rejected")
	}
	var paths []string
	for _, e := range rej.Event.GetChangeRejected().GetErrors() {
		paths = append(paths, fmt.Sprintf("%s@%d", e.GetPath(), e.GetLine()))
	}
	got := strings.Join(paths, " ")
	for _, want := range []string{"change_request.type@1", "change_request.priority@1", "comand@6"} {
		if !strings.Contains(got, want) {
			t.Errorf("change.rejected errors %q do not name %s", got, want)
		}
	}
	// The pipeline keeps serving the next run.
	ok := p.submit(t, []byte(strings.NewReplacer("enhancment", "enhancement", "urgent", "high", "comand", "command").Replace(bad)))
	if rr := p.report(t, ok, 30*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("next run ended %s", rr.Status)
	}
}

// A handler fails once in the middle of the deploy: the message is
// redelivered, the run still ends right, and no event id appears twice.
func TestCrashMidPhaseIsRedelivered(t *testing.T) {
	tg := startTarget(t)
	var failed atomic.Bool
	p := startPipeline(t, func(o *allinone.Options) {
		o.DeployerStepFault = func(run, list string, index int) error {
			if list == "steps" && index == 0 && failed.CompareAndSwap(false, true) {
				return fmt.Errorf("injected crash after the first deploy step")
			}
			return nil
		}
		o.Deployer.Backoff = []time.Duration{50 * time.Millisecond}
	})
	run := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	rr := p.report(t, run, 60*time.Second)
	if !failed.Load() {
		t.Fatal("the fault was never injected")
	}
	evs := p.history(t, run)
	if rr.Status != "SUCCESS" {
		t.Fatalf("ended %s: %v", rr.Status, types(evs))
	}
	noDuplicateIDs(t, evs)
	// The step that finished before the crash was not run again.
	started := 0
	for _, e := range evs {
		if s := e.GetDeployStepStarted(); s != nil && s.GetList() == "steps" && s.GetIndex() == 0 {
			started++
		}
	}
	if started != 1 {
		t.Errorf("first deploy step started %d times, want 1 (it had finished before the crash)", started)
	}
}

func TestFiftyRunsAtOnce(t *testing.T) {
	p := startPipeline(t, nil)
	planYAML := []byte(`change_request: {id: CR-LOAD, title: "trivial", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
preflight:
  checks:
    - {name: path set, env: {required: [PATH]}}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`)
	const n = 50
	runs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); runs[i] = p.submit(t, planYAML) }()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r] {
			t.Fatalf("run id %s given twice", r)
		}
		seen[r] = true
	}
	for _, r := range runs {
		if rr := p.report(t, r, 90*time.Second); rr.Status != "SUCCESS" {
			t.Errorf("run %s ended %s", r, rr.Status)
		}
	}
	for _, r := range runs {
		evs := p.history(t, r)
		noDuplicateIDs(t, evs)
		if c := strings.Count(strings.Join(types(evs), " "), "report.ready"); c != 1 {
			t.Errorf("run %s has %d report.ready", r, c)
		}
	}
}

// natsConn connects as the admin of srv (anonymously when srv has no
// authentication).
func natsConn(t testing.TB, url string, creds ...string) *nats.Conn {
	t.Helper()
	var opts []nats.Option
	for _, c := range creds {
		if c == "" {
			continue
		}
		id, err := auth.Open(c)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, id.Options()...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitFor waits until run has an event of type typ.
func (p *pipeline) waitFor(t testing.TB, run, typ string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, run+" "+typ, func() bool {
		e, err := p.bus.LastEvent(context.Background(), run, typ)
		return err == nil && e != nil
	})
}
