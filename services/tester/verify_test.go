package tester_test

import (
	"strings"
	"testing"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester"
)

// verifyPlan re-runs critical_paths after a rollback; {{STEP}} is its
// second step's path on the target (health passes, broken answers 500).
const verifyPlan = `
change_request: {id: CR-T-V, title: rollback verification}
rollback_plan:
  verify: [critical_paths]
test:
  smoke: [{name: Release Only, request: {url: "{{URL}}/broken"}}]
  suites:
    - name: critical_paths
      steps:
        - name: Version
          request: {url: "{{URL}}/health"}
          capture: {version: $.version}
        - name: Uses Version
          request: {url: "{{URL}}/v/${version}/{{STEP}}"}
    - name: other
      steps: [{name: Other, request: {url: "{{URL}}/other/health"}}]
  load: {vus: 1, duration: 1s, requests: [{url: "{{URL}}/load/health"}]}
`

func (h *harness) rolledBack(run string, verify []string, parts ...any) uint64 {
	h.t.Helper()
	if len(parts) == 0 {
		h.publish(eventbus.New(run, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
			Reason: "error_rate 30%", RequestedBy: "monitor", Steps: 1, Verify: verify}}))
	}
	return h.publish(eventbus.New(run, &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}, parts...))
}

// After rollback.done the tester re-runs exactly the suites rollback.started
// names (captures and all; not test.smoke, not the other suites, not the
// load test) and publishes one outcome per run: rollback.verified, or
// rollback.verify.failed with the failing case. A redelivered rollback.done
// changes nothing; a rollback without verify names needs no tester.
func TestRollbackVerification(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.submit("vpass", strings.ReplaceAll(verifyPlan, "{{STEP}}", "health"))
	h.submit("vfail", strings.ReplaceAll(verifyPlan, "{{STEP}}", "broken"))
	h.submit("vnone", strings.ReplaceAll(verifyPlan, "{{STEP}}", "health"))
	h.rolledBack("vpass", []string{"critical_paths"})
	h.rolledBack("vfail", []string{"critical_paths"})
	noneSeq := h.rolledBack("vnone", nil)

	t.Run("passing suites", func(t *testing.T) {
		evs := h.waitFor("vpass", "rollback.verified", "rollback.verify.failed")
		out := find(evs, "rollback.verified")
		if out == nil {
			t.Fatalf("events %v", types(evs))
		}
		r := out.GetRollbackVerified()
		var got []string
		for _, c := range r.GetTests() {
			got = append(got, c.GetName()+":"+c.GetStatus())
		}
		if strings.Join(got, " ") != "Version:PASS Uses Version:PASS" || r.GetPassed() != 2 || r.GetFailed() != 0 {
			t.Fatalf("verification %v passed %d failed %d", got, r.GetPassed(), r.GetFailed())
		}
		if out.GetId() != "vpass/"+tester.VerificationOutcomeID || out.GetCausationId() != find(evs, "rollback.done").GetId() {
			t.Errorf("outcome id %q causation %q", out.GetId(), out.GetCausationId())
		}
		if h.tg.count("/vpass/health") != 1 || h.tg.count("/vpass/v/2.0.0/health") != 1 {
			t.Errorf("critical_paths not run once with its capture: health %d, v/2.0.0/health %d", h.tg.count("/vpass/health"), h.tg.count("/vpass/v/2.0.0/health"))
		}
		for _, p := range []string{"/vpass/broken", "/vpass/other/health", "/vpass/load/health"} {
			if n := h.tg.count(p); n != 0 {
				t.Errorf("%s hit %d times: only the listed suites re-run", p, n)
			}
		}
		for _, e := range evs {
			if strings.HasPrefix(e.GetType(), "test.") || e.GetType() == "rollback.requested" {
				t.Errorf("the verification published %s", e.GetType())
			}
		}

		// A second rollback.done (redelivered, or published again): nothing
		// new, nothing re-run.
		before := len(evs)
		seq := h.rolledBack("vpass", nil, "again")
		h.waitAcked(seq)
		after := h.history("vpass")
		if len(after) != before+1 || h.tg.count("/vpass/health") != 1 {
			t.Errorf("second rollback.done re-verified: %v", types(after[before:]))
		}
	})

	t.Run("failing suite", func(t *testing.T) {
		evs := h.waitFor("vfail", "rollback.verified", "rollback.verify.failed")
		out := find(evs, "rollback.verify.failed")
		if out == nil || find(evs, "rollback.verified") != nil {
			t.Fatalf("events %v", types(evs))
		}
		r := out.GetRollbackVerifyFailed()
		if len(r.GetTests()) != 2 || r.GetPassed() != 1 || r.GetFailed() != 1 {
			t.Fatalf("verification %v", r)
		}
		if c := r.GetTests()[1]; c.GetName() != "Uses Version" || c.GetStatus() != "FAIL" || !strings.Contains(c.GetError(), "HTTP 500") {
			t.Errorf("failing case %v", c)
		}
		if out.GetId() != "vfail/"+tester.VerificationOutcomeID {
			t.Errorf("outcome id %q", out.GetId())
		}
		if find(evs, "rollback.requested") != nil {
			t.Error("a failed verification asked for another rollback")
		}
	})

	t.Run("no verify", func(t *testing.T) {
		h.waitAcked(noneSeq)
		evs := h.history("vnone")
		if got := types(evs); len(got) != 3 {
			t.Errorf("events %v: the tester published for a rollback without verify", got)
		}
		if n := h.tg.count("/vnone/health"); n != 0 {
			t.Errorf("target hit %d times", n)
		}
	})
}
