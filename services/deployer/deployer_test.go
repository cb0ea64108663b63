package deployer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer"
)

// planWith returns a plan whose steps append their name to log, so the test
// can count what really ran.
func planWith(log string, deploySteps, rollbackSteps string) string {
	return fmt.Sprintf(`change_request: {id: CR-T, title: deployer test, type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
rollback_plan:
  rollback_steps:
%s
deploy:
  steps:
%s
`, strings.ReplaceAll(rollbackSteps, "LOG", log), strings.ReplaceAll(deploySteps, "LOG", log))
}

func step(name string, extra string) string {
	return fmt.Sprintf(`    - name: %s
      command: {argv: [sh, -c, 'echo %s >> "$0"', LOG]}
%s`, name, name, extra)
}

type harness struct {
	bus *eventbus.Bus
	log string
}

func start(t *testing.T) *harness {
	t.Helper()
	return startLogged(t, testLog(t))
}

// startLogged starts the deployer logging to log.
func startLogged(t *testing.T, log *slog.Logger) *harness {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx, cancel := context.WithCancel(context.Background())
	svc := deployer.New(natstest.Bus(t, s, "deployer"), deployer.Options{DeployOutcomeWait: 300 * time.Millisecond, Consumer: eventbus.ConsumerOptions{Backoff: []time.Duration{20 * time.Millisecond}}}, log, nil, nil)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{bus: bus, log: filepath.Join(t.TempDir(), "ran.log")}
}

func (h *harness) publish(t *testing.T, evs ...*runbookv1.Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := h.bus.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) waitFor(t *testing.T, run, typ string) {
	t.Helper()
	natstest.Eventually(t, 15*time.Second, run+" "+typ, func() bool {
		e, err := h.bus.LastEvent(context.Background(), run, typ)
		return err == nil && e != nil
	})
}

func (h *harness) ran(t *testing.T) []string {
	b, _ := os.ReadFile(h.log)
	return strings.Fields(string(b))
}

func (h *harness) count(t *testing.T, run, typ string) int {
	hist, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range hist {
		if e.Event.Type == typ {
			n++
		}
	}
	return n
}

func changeRequested(run, planYAML string) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanYaml: planYAML}})
}

func preflightPassed(run string) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}})
}

func rollbackRequested(run, by string) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{RequestedBy: by, Reason: "test by " + by}}, by)
}

func TestDeploysStepsInOrder(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, step("one", "")+step("two", ""), step("undo", ""))
	h.publish(t, changeRequested("R1", p), preflightPassed("R1"))
	h.waitFor(t, "R1", "deploy.done")
	if got := strings.Join(h.ran(t), ","); got != "one,two" {
		t.Fatalf("ran %s", got)
	}
}

func TestFailedDeployRollsBackOnce(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, step("one", "")+"    - name: broken\n      command: {argv: [\"false\"]}\n      retries: 1\n", step("undo", "")+"    - \"call the on-call DBA\"\n")
	h.publish(t, changeRequested("R2", p), preflightPassed("R2"))
	h.waitFor(t, "R2", "rollback.done")
	if got := strings.Join(h.ran(t), ","); got != "one,undo" {
		t.Fatalf("ran %s", got)
	}
	if n := h.count(t, "R2", "deploy.step.failed"); n != 2 {
		t.Errorf("broken step failed %d times, want 2 (retries: 1)", n)
	}
	failed, _ := h.bus.LastEvent(context.Background(), "R2", "deploy.failed")
	if failed == nil || failed.Event.GetDeployFailed().GetFailedStep() != "broken" {
		t.Fatalf("deploy.failed: %+v", failed)
	}
	manual, _ := h.bus.LastEvent(context.Background(), "R2", "rollback.step.succeeded")
	if se := manual.Event.GetRollbackStepSucceeded(); !se.GetManual() || se.GetKind() != "manual" || !strings.Contains(se.GetOutputTail(), "MANUAL") {
		t.Errorf("text rollback step not reported as manual: %+v", manual.Event)
	}
	hist, _ := h.bus.RunHistory(context.Background(), "R2")
	for _, e := range hist {
		if se := eventbus.Payload(e.Event); se != nil {
			if st, ok := se.(*runbookv1.StepEvent); ok && st.GetList() == "rollback" && st.GetManual() != (st.GetIndex() == 1) {
				t.Errorf("%s of rollback step %d: manual = %v", e.Event.Type, st.GetIndex(), st.GetManual())
			}
		}
	}
	// The described step was not executed: the rollback did one step.
	done, _ := h.bus.LastEvent(context.Background(), "R2", "rollback.done")
	if n := done.Event.GetRollbackDone().GetStepsSucceeded(); n != 1 {
		t.Errorf("rollback.done counts %d step(s), want 1 (the described step is not executed)", n)
	}
}

// A failed deploy whose plan has no executable rollback step (none, or
// only described ones) ends FAILED with run.failed: nothing was undone,
// the reason says why and lists the described steps as the operator's
// to-do; no rollback starts and no rollback step is reported.
func TestNoExecutableRollbackStepFails(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, rollback string
		todo           []string
	}{
		{"described steps only", "    - \"트래픽 차단\"\n    - \"call the on-call DBA\"\n", []string{"1. 트래픽 차단", "2. call the on-call DBA"}},
		{"no rollback steps", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := start(t)
			run := "R7-" + strings.ReplaceAll(c.name, " ", "-")
			p := planWith(h.log, step("one", "")+"    - name: broken\n      command: {argv: [\"false\"]}\n", c.rollback)
			h.publish(t, changeRequested(run, p), preflightPassed(run))
			h.waitFor(t, run, "run.failed")
			f, _ := h.bus.LastEvent(context.Background(), run, "run.failed")
			reason := f.Event.GetRunFailed().GetReason()
			if !strings.HasPrefix(reason, "no rollback steps: nothing was undone — manual action needed") ||
				!strings.Contains(reason, "deploy failed at broken") {
				t.Errorf("run.failed reason %q", reason)
			}
			for _, todo := range c.todo {
				if !strings.Contains(reason, todo) {
					t.Errorf("run.failed reason %q lacks the to-do %q", reason, todo)
				}
			}
			if len(c.todo) == 0 && strings.Contains(reason, "to do by hand") {
				t.Errorf("run.failed reason %q lists a to-do the plan does not have", reason)
			}
			// A second request (the tester's, say) changes nothing.
			h.publish(t, rollbackRequested(run, "tester"))
			natstest.Eventually(t, 5*time.Second, "consumer caught up", func() bool {
				info, err := h.bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, deployer.Durable)
				if err != nil {
					return false
				}
				ci, err := info.Info(context.Background())
				return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
			})
			for _, typ := range []string{"rollback.started", "rollback.step.started", "rollback.step.succeeded", "rollback.done"} {
				if n := h.count(t, run, typ); n != 0 {
					t.Errorf("%d %s for a run with nothing to undo", n, typ)
				}
			}
			if n := h.count(t, run, "run.failed"); n != 1 {
				t.Errorf("run.failed %d times, want 1", n)
			}
			if got := strings.Join(h.ran(t), ","); got != "one" {
				t.Errorf("ran %s", got)
			}
			hist, _ := h.bus.RunHistory(context.Background(), run)
			evs := make([]*runbookv1.Event, 0, len(hist))
			for _, e := range hist {
				evs = append(evs, e.Event)
			}
			if st := runstate.Fold(run, evs); st.Status != runstate.Failed || st.FinalReason != reason {
				t.Errorf("status %s (%q), want FAILED with the run.failed reason", st.Status, st.FinalReason)
			}
		})
	}
}

func TestRollbackRequestedTwiceRunsOnce(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, step("one", ""), step("undo", ""))
	h.publish(t, changeRequested("R3", p), eventbus.New("R3", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}),
		rollbackRequested("R3", "monitor"), rollbackRequested("R3", "tester"))
	h.waitFor(t, "R3", "rollback.done")
	// Give the second request every chance to (wrongly) run too: wait until
	// the consumer has acked both.
	natstest.Eventually(t, 10*time.Second, "both requests handled", func() bool {
		return h.count(t, "R3", "rollback.requested") == 2
	})
	if got := h.ran(t); len(got) != 1 || got[0] != "undo" {
		t.Fatalf("rollback steps ran %v, want exactly one undo", got)
	}
	if n := h.count(t, "R3", "rollback.started"); n != 1 {
		t.Fatalf("rollback.started %d times", n)
	}
}

// A step that started before a crash and never finished is re-run only when
// it is idempotent; otherwise the run goes to rollback.
func TestResumeAfterCrash(t *testing.T) {
	t.Parallel()
	for _, idem := range []bool{true, false} {
		t.Run(fmt.Sprintf("idempotent=%v", idem), func(t *testing.T) {
			t.Parallel()
			h := start(t)
			run := fmt.Sprintf("R4-%v", idem)
			extra := ""
			if idem {
				extra = "      idempotent: true\n"
			}
			p := planWith(h.log, step("one", "")+step("two", extra), step("undo", ""))
			// History as a crashed deployer left it: step one done, step two started.
			// preflight.passed comes last, so the deployer sees the whole history.
			h.publish(t, changeRequested(run, p),
				eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 2}}),
				eventbus.New(run, &runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 0, Attempt: 1}}, "steps", 0, "attempt-1"),
				eventbus.New(run, &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{List: "steps", Index: 0, Attempt: 1}}, "steps", 0, "attempt-1"),
				eventbus.New(run, &runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 1, Attempt: 1}}, "steps", 1, "attempt-1"),
				preflightPassed(run),
			)
			if idem {
				h.waitFor(t, run, "deploy.done")
				if got := strings.Join(h.ran(t), ","); got != "two" {
					t.Fatalf("ran %s, want only the interrupted idempotent step", got)
				}
				return
			}
			h.waitFor(t, run, "rollback.done")
			if got := strings.Join(h.ran(t), ","); got != "undo" {
				t.Fatalf("ran %s, want no re-run and a rollback", got)
			}
			f, _ := h.bus.LastEvent(context.Background(), run, "deploy.failed")
			if !strings.Contains(f.Event.GetDeployFailed().GetError(), "not marked idempotent") {
				t.Fatalf("deploy.failed says %q", f.Event.GetDeployFailed().GetError())
			}
		})
	}
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Rollback of a run that never deployed anything is a no-op that says so.
func TestRollbackOfUndeployedRunIsNoop(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, step("one", ""), step("undo", ""))
	h.publish(t, changeRequested("R5", p), rollbackRequested("R5", "operator"))
	h.waitFor(t, "R5", "rollback.done")
	if got := h.ran(t); len(got) != 0 {
		t.Fatalf("ran %v for a run that never deployed", got)
	}
	rs, _ := h.bus.LastEvent(context.Background(), "R5", "rollback.started")
	if r := rs.Event.GetRollbackStarted(); r.GetSteps() != 0 || !strings.Contains(r.GetReason(), "nothing was deployed") {
		t.Fatalf("rollback.started: %+v", r)
	}
	// The run is stopped: a late preflight.passed deploys nothing.
	h.publish(t, preflightPassed("R5"))
	natstest.Eventually(t, 5*time.Second, "consumer caught up", func() bool {
		info, err := h.bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, deployer.Durable)
		if err != nil {
			return false
		}
		ci, err := info.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	if got := h.ran(t); len(got) != 0 {
		t.Fatalf("deployed %v after the rollback", got)
	}
}
