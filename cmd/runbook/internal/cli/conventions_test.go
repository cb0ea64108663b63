package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/mattn/go-runewidth"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

const waitingPlan = `change_request: {id: CR-W, title: "waits for approval", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
approval:
  technical_approval: {approver: Lead Architect}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// Runs of the fixture: an invalid run with a Korean title long ago, one
// waiting for approval an hour ago, one rolled back two days ago.
const (
	runKorean  = "DEPLOY-20250922-143000"
	runWaiting = "DEPLOY-20261201-100000"
	runRolled  = "DEPLOY-20261130-090000"
	koreanText = "견적 서비스 v2.4.0 재배포"
)

// fixture publishes the three runs and returns the server's URL.
func fixture(t *testing.T) string {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx := context.Background()
	now := time.Now()
	pub := func(run string, at time.Time, payload any) *runbookv1.Event {
		t.Helper()
		ev := eventbus.New(run, payload)
		ev.Time = timestamppb.New(at)
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	cr := func(id, title, planYAML string) any {
		return &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: id, Title: title, Requester: "ops", PlanYaml: planYAML}}
	}

	t0 := mustTime("2025-09-22T14:30:00Z")
	pub(runKorean, t0, cr("CR-2025-101", koreanText, ""))
	pub(runKorean, t0.Add(time.Second), &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{
		Errors: []*runbookv1.PlanError{{Path: "deploy", Message: "required"}}}})
	var evs []*runbookv1.Event
	hist, _ := bus.RunHistory(ctx, runKorean)
	for _, e := range hist {
		evs = append(evs, e.Event)
	}
	res, err := report.Generate(runKorean, evs)
	if err != nil {
		t.Fatal(err)
	}
	pub(runKorean, t0.Add(time.Minute), &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status: string(res.Status), ReportJson: string(res.JSON), QcSummary: res.QCSummary}})

	t1 := now.Add(-time.Hour)
	pub(runWaiting, t1, cr("CR-W", "waits for approval", waitingPlan))
	pub(runWaiting, t1.Add(time.Second), &runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{
		WaitingFor: []string{"technical_approval"}, Deadline: timestamppb.New(mustTime("2026-12-31T23:00:00Z"))}})

	t2 := now.Add(-48 * time.Hour)
	pub(runRolled, t2, cr("CR-R", "rolled back", ""))
	pub(runRolled, t2.Add(time.Second), &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{}})
	pub(runRolled, t2.Add(2*time.Second), &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{RequestedBy: "monitor", Reason: "p95"}})
	pub(runRolled, t2.Add(3*time.Second), &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{}})
	pub(runRolled, t2.Add(4*time.Second), &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{}})
	return s.ClientURL()
}

// runList is what runs -o json prints.
type runList struct {
	Runs []struct {
		RunID      string    `json:"run_id"`
		Status     string    `json:"status"`
		Title      string    `json:"title"`
		Started    time.Time `json:"started"`
		WaitingFor []string  `json:"waiting_for"`
		Expires    time.Time `json:"expires"`
	} `json:"runs"`
}

func (l runList) ids() []string {
	var ids []string
	for _, r := range l.Runs {
		ids = append(ids, r.RunID)
	}
	return ids
}

func mustJSON[T any](t *testing.T, args []string, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("runbook %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// jsonOf runs a command that must succeed and parses its stdout as JSON.
func jsonOf[T any](t *testing.T, args ...string) T {
	t.Helper()
	code, out, errOut := run(t, args...)
	if code != 0 {
		t.Fatalf("runbook %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return mustJSON[T](t, args, out)
}

// Every read command prints -o json that parses, with the run's facts;
// -o yaml is the same document.
func TestReadCommandsJSON(t *testing.T) {
	t.Parallel()
	url := fixture(t)

	all := jsonOf[runList](t, "runs", "-o", "json", "--nats-url", url)
	if want := []string{runWaiting, runRolled, runKorean}; !slices.Equal(all.ids(), want) {
		t.Fatalf("runs -o json: %v, want newest first %v", all.ids(), want)
	}
	if r := all.Runs[2]; r.Title != koreanText || r.Status != "INVALID" || !r.Started.Equal(mustTime("2025-09-22T14:30:00Z")) {
		t.Errorf("runs -o json: %+v", r)
	}
	waiting := jsonOf[runList](t, "runs", "--waiting", "-o", "json", "--nats-url", url)
	if len(waiting.Runs) != 1 || waiting.Runs[0].RunID != runWaiting || waiting.Runs[0].Status != "AWAITING_APPROVAL" ||
		!slices.Equal(waiting.Runs[0].WaitingFor, []string{"technical_approval"}) || !waiting.Runs[0].Expires.Equal(mustTime("2026-12-31T23:00:00Z")) {
		t.Errorf("runs --waiting -o json: %+v", waiting.Runs)
	}
	// -o yaml: the same document.
	code, out, _ := run(t, "runs", "-o", "yaml", "--nats-url", url)
	var fromYAML runList
	if err := yaml.Unmarshal([]byte(out), &fromYAML); code != 0 || err != nil || !slices.Equal(fromYAML.ids(), all.ids()) || fromYAML.Runs[2].Title != koreanText {
		t.Errorf("runs -o yaml: exit %d, %v: %+v\n%s", code, err, fromYAML, out)
	}

	rep := jsonOf[map[string]any](t, "report", runKorean, "-o", "json", "--nats-url", url)
	if rep["summary"] == nil || rep["deployment"] == nil {
		t.Errorf("report -o json: %v", rep)
	}
	code, out, _ = run(t, "report", runKorean, "-o", "yaml", "--nats-url", url)
	var repYAML map[string]any
	if err := yaml.Unmarshal([]byte(out), &repYAML); code != 0 || err != nil || repYAML["summary"] == nil {
		t.Errorf("report -o yaml: exit %d %v\n%s", code, err, out)
	}

	type timeline struct {
		RunID  string `json:"run_id"`
		Status string `json:"status"`
		Events []struct {
			Seq   uint64          `json:"seq"`
			Type  string          `json:"type"`
			Phase string          `json:"phase"`
			Text  string          `json:"text"`
			Time  time.Time       `json:"time"`
			Event json.RawMessage `json:"event"`
		} `json:"events"`
	}
	tl := jsonOf[timeline](t, "replay", runRolled, "-o", "json", "--nats-url", url)
	if tl.RunID != runRolled || tl.Status != "ROLLED_BACK" || len(tl.Events) != 5 || tl.Events[4].Type != "rollback.done" || tl.Events[0].Seq == 0 {
		t.Errorf("replay -o json: %+v", tl)
	}
	var payload struct {
		RunID             string `json:"runId"`
		RollbackRequested struct {
			RequestedBy string `json:"requestedBy"`
		} `json:"rollbackRequested"`
	}
	if err := json.Unmarshal(tl.Events[2].Event, &payload); err != nil || payload.RunID != runRolled || payload.RollbackRequested.RequestedBy != "monitor" {
		t.Errorf("replay -o json: event payload %s (%v)", tl.Events[2].Event, err)
	}

	type validation struct {
		File   string `json:"file"`
		Valid  bool   `json:"valid"`
		Errors []struct {
			Line    int    `json:"line"`
			Path    string `json:"path"`
			Value   string `json:"value"`
			Message string `json:"message"`
		} `json:"errors"`
		Change struct {
			ID string `json:"id"`
		} `json:"change_request"`
		Risk struct {
			Level             string   `json:"level"`
			ApprovalsRequired []string `json:"approvals_required"`
		} `json:"risk"`
	}
	good, _ := filepath.Abs("../../../../examples/plans/good.yaml")
	v := jsonOf[validation](t, "validate", good, "-o", "json")
	if !v.Valid || v.File != good || v.Change.ID != "CR-2025-101" || v.Risk.Level == "" || len(v.Errors) != 0 {
		t.Errorf("validate -o json: %+v", v)
	}
	bad := writePlan(t, "change_request: {id: CR-1, title: t, type: enhancment, priority: low}\nrequester: {name: a}\ndeploy:\n  steps:\n    - name: x\n      command: {argv: [\"true\"]}\n")
	args := []string{"validate", bad, "-o", "json"}
	code, out, errOut := run(t, args...)
	v = mustJSON[validation](t, args, out)
	if code != 1 || v.Valid || len(v.Errors) != 1 || v.Errors[0].Path != "change_request.type" || v.Errors[0].Value != "enhancment" || v.Errors[0].Line != 1 ||
		!strings.Contains(errOut, "is invalid") {
		t.Errorf("validate -o json of a bad plan: exit %d %+v %q", code, v, errOut)
	}

	type retro struct {
		Retrospective struct {
			DeploymentID string `json:"deployment_id"`
		} `json:"retrospective"`
		WhatWentWrong   []string `json:"what_went_wrong"`
		MetricsAnalysis struct {
			TestPassRate map[string]string `json:"test_pass_rate"`
		} `json:"metrics_analysis"`
	}
	rj := jsonOf[retro](t, "retro", runRolled, "-o", "json", "--nats-url", url)
	if rj.Retrospective.DeploymentID != runRolled || len(rj.WhatWentWrong) == 0 || !strings.Contains(rj.WhatWentWrong[0], "ROLLED_BACK") ||
		rj.MetricsAnalysis.TestPassRate["smoke_tests"] != "n/a" {
		t.Errorf("retro -o json: %+v", rj)
	}
	// The default (the template with comments) is the same document.
	code, out, _ = run(t, "retro", runRolled, "--nats-url", url)
	var ry retro
	if err := yaml.Unmarshal([]byte(out), &ry); code != 0 || err != nil || !slices.Equal(ry.WhatWentWrong, rj.WhatWentWrong) {
		t.Errorf("retro: exit %d %v %+v", code, err, ry)
	}

	vj := jsonOf[buildinfo.Info](t, "version", "-o", "json")
	if vj.GoVersion != runtime.Version() || vj.Version == "" || vj.Commit == "" {
		t.Errorf("version -o json: %+v", vj)
	}
}

// runs --status, --since and --limit select runs as the read API does.
func TestRunsFilters(t *testing.T) {
	t.Parallel()
	url := fixture(t)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--status", "rolled_back"}, []string{runRolled}},
		{[]string{"--status", "INVALID"}, []string{runKorean}},
		{[]string{"--since", "24h"}, []string{runWaiting}},
		{[]string{"--since", "2026-01-01T00:00:00Z"}, []string{runWaiting, runRolled}},
		{[]string{"--limit", "2"}, []string{runWaiting, runRolled}},
		{[]string{"--since", "72h", "--limit", "1"}, []string{runWaiting}},
		{[]string{"--status", "FAILED"}, nil},
	} {
		l := jsonOf[runList](t, append([]string{"runs", "-o", "json", "--nats-url", url}, c.args...)...)
		if !slices.Equal(l.ids(), c.want) {
			t.Errorf("runs %v: %v, want %v", c.args, l.ids(), c.want)
		}
	}
	code, out, _ := run(t, "runs", "--status", "failed", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "(no run matches)") {
		t.Errorf("runs --status failed: exit %d\n%s", code, out)
	}
}

// The runs table lines up by display width: a Korean title takes two
// columns a character, and the column after it starts at the same place
// on every line. Times are UTC ISO 8601 unless --local.
func TestRunsTable(t *testing.T) {
	t.Parallel()
	url := fixture(t)
	code, out, errOut := run(t, "runs", "--nats-url", url)
	if code != 0 {
		t.Fatalf("runs: exit %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("runs: want a header and 3 runs\n%s", out)
	}
	// STARTED is the last column: its display column is the same on every line.
	col := func(line, value string) int {
		i := strings.LastIndex(line, value)
		if i < 0 {
			t.Fatalf("%q not in %q", value, line)
		}
		return runewidth.StringWidth(line[:i])
	}
	want := col(lines[0], "STARTED")
	korean := lines[3]
	if !strings.Contains(korean, koreanText) || !strings.HasSuffix(korean, "2025-09-22T14:30:00Z") {
		t.Fatalf("the Korean run's line: %q", korean)
	}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		if got := col(line, fields[len(fields)-1]); got != want {
			t.Errorf("STARTED at display column %d, want %d:\n%s", got, want, out)
		}
	}
	if !strings.Contains(lines[1], "approval: technical_approval; expires 2026-12-31T23:00:00Z") {
		t.Errorf("the waiting run's line: %q", lines[1])
	}
}

// --local prints times in the local zone, with its offset. The command
// runs in a child process with TZ set: time.Local is the process's.
func TestLocalTimes(t *testing.T) {
	t.Parallel()
	if _, err := time.LoadLocation("Asia/Seoul"); err != nil {
		t.Skipf("no tz database: %v", err)
	}
	url := fixture(t)
	inSeoul := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		js, _ := json.Marshal(args)
		cmd.Env = append(os.Environ(), "TZ=Asia/Seoul", execEnv+"="+string(js))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("runbook %v in Seoul: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := inSeoul("runs", "--local", "--status", "invalid", "--nats-url", url); !strings.Contains(out, "2025-09-22T23:30:00+09:00") {
		t.Errorf("runs --local:\n%s", out)
	}
	if out := inSeoul("replay", runKorean, "--local", "--nats-url", url); !strings.Contains(out, "2025-09-22T23:30:00.000+09:00") {
		t.Errorf("replay --local:\n%s", out)
	}
	// Without --local: UTC, whatever the zone.
	if out := inSeoul("runs", "--status", "invalid", "--nats-url", url); !strings.Contains(out, "2025-09-22T14:30:00Z") {
		t.Errorf("runs in Seoul:\n%s", out)
	}
}

// replay takes the run as its argument, as every other command does; the
// old --run still works.
func TestReplayPositional(t *testing.T) {
	t.Parallel()
	url := fixture(t)
	code, out, errOut := run(t, "replay", runRolled, "--nats-url", url)
	if code != 0 || !strings.Contains(out, "5 events; status ROLLED_BACK") || !strings.Contains(out, "Z  ") {
		t.Fatalf("replay RUN: exit %d %s\n%s", code, errOut, out)
	}
	code, out2, _ := run(t, "replay", "--run", runRolled, "--nats-url", url)
	if code != 0 || out2 != out {
		t.Errorf("replay --run RUN: exit %d\n%s", code, out2)
	}
	code, _, errOut = run(t, "replay", "--nats-url", url)
	if code != 2 || !strings.Contains(errOut, "replay needs a RUN or --rebuild") {
		t.Errorf("replay without a run: exit %d %q", code, errOut)
	}
}

// validate - and submit - read the plan from stdin.
func TestValidateStdin(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile("../../../../examples/plans/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := cli.ExecuteIO(context.Background(), []string{"validate", "-"}, bytes.NewReader(good), &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "<stdin> is valid") {
		t.Fatalf("validate - : exit %d %s\n%s", code, errOut.String(), out.String())
	}
	out.Reset()
	errOut.Reset()
	code = cli.ExecuteIO(context.Background(), []string{"validate", "-"}, strings.NewReader("change_request: {id: X}\nbogus: 1\n"), &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "<stdin>:2:1: error: ") || !strings.Contains(errOut.String(), "<stdin> is invalid") {
		t.Errorf("validate - of a bad plan: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

// Usage errors exit 2 with one line naming what was wrong and where help is.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"runs", "-x"}, "unknown shorthand flag: 'x' in -x"},
		{[]string{"runs", "--bogus"}, "unknown flag: --bogus (see runbook runs --help)"},
		{[]string{"runs", "-o", "xml"}, `-o/--output "xml": want table, json or yaml`},
		{[]string{"runs", "--status", "done"}, `--status: status "done": want one of SUBMITTED`},
		{[]string{"runs", "--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time`},
		{[]string{"runs", "extra"}, `unknown command "extra" for "runbook runs"`},
		{[]string{"watch"}, "accepts 1 arg(s), received 0"},
		{[]string{"report", "A", "B"}, "accepts 1 arg(s), received 2"},
		{[]string{"report", "R", "-o", "json", "--format", "markdown"}, "-o json and --format markdown contradict each other"},
		{[]string{"approve", "R"}, `required flag(s) "role" not set`},
		{[]string{"rnus"}, `unknown command "rnus" for "runbook" (did you mean runs?)`},
		{[]string{"audit", "verfy"}, `unknown command "verfy" for "runbook audit"`},
		{[]string{"serve", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"validate", "-", "-o", "csv"}, `-o/--output "csv"`},
	} {
		code, out, errOut := run(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || !strings.HasPrefix(errOut, "runbook: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || out != "" {
			t.Errorf("runbook %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
	for _, args := range [][]string{{}, {"--help"}, {"runs", "--help"}, {"audit"}} {
		if code, out, errOut := run(t, args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("runbook %v: exit %d %q %q", args, code, out, errOut)
		}
	}
}

// --version and runbook version print the version, commit and Go version.
func TestVersion(t *testing.T) {
	oldV, oldC := buildinfo.Version, buildinfo.Commit
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit = oldV, oldC })
	buildinfo.Version, buildinfo.Commit = "v2.0.1", "feedfacecafebeef"
	want := "runbook v2.0.1 (commit feedfacecafe, " + runtime.Version() + ")\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if code, out, _ := run(t, args...); code != 0 || out != want {
			t.Errorf("runbook %v: exit %d %q, want %q", args, code, out, want)
		}
	}
}

// Shell completion asks the stream for run ids, the run for its roles;
// statuses and formats are fixed; an unreachable NATS gives no
// suggestions and no error.
func TestCompletion(t *testing.T) {
	t.Parallel()
	url := fixture(t)
	complete := func(args ...string) []string {
		t.Helper()
		code, out, errOut := run(t, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v: exit %d %s", args, code, errOut)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "-") { // cobra also offers required flags
				got = append(got, strings.SplitN(line, "\t", 2)[0])
			}
		}
		return got
	}
	ids := []string{runWaiting, runRolled, runKorean}
	for _, cmd := range []string{"watch", "report", "retro", "replay", "approve", "reject", "rollback", "cancel"} {
		if got := complete("--nats-url", url, cmd, ""); !slices.Equal(got, ids) {
			t.Errorf("%s <TAB>: %v, want %v", cmd, got, ids)
		}
	}
	if got := complete("--nats-url", url, "approve", runWaiting, "--role", ""); !slices.Equal(got, []string{"technical_approval"}) {
		t.Errorf("approve RUN --role <TAB>: %v", got)
	}
	if got := complete("runs", "--status", ""); !slices.Contains(got, "ROLLED_BACK") || !slices.Contains(got, "AWAITING_APPROVAL") {
		t.Errorf("runs --status <TAB>: %v", got)
	}
	if got := complete("runs", "-o", ""); !slices.Equal(got, []string{"table", "json", "yaml"}) {
		t.Errorf("runs -o <TAB>: %v", got)
	}
	if got := complete("identity", "create", "ann", "--role", ""); !slices.Contains(got, "approver") {
		t.Errorf("identity create --role <TAB>: %v", got)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	if got := complete("--nats-url", "nats://"+closed, "watch", ""); len(got) != 0 {
		t.Errorf("watch <TAB> with NATS down: %v", got)
	}
}

// execEnv, when set to a JSON list of arguments, makes the test binary
// the runbook command run with them (TestLocalTimes).
const execEnv = "RUNBOOK_CLI_TEST_EXEC"

func TestMain(m *testing.M) {
	if js := os.Getenv(execEnv); js != "" {
		var args []string
		if err := json.Unmarshal([]byte(js), &args); err != nil {
			panic(err)
		}
		os.Exit(cli.Execute(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
