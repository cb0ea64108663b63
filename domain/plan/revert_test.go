package plan_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/plan/planview"
	"github.com/kis-core/runbook/domain/risk"
)

// revertedPlan has every part a revert keeps, changes or drops.
const revertedPlan = `change_request: {id: CR-7, title: "release v2.4.1", type: enhancement, priority: high}
requester: {name: Rita Requester, role: SRE, contact: rita@example.com}
description: {summary: "ship v2.4.1"}
scope: {systems_affected: [Orders API]}
timeline:
  planned_start: 2025-09-23T02:00:00Z
  window_end: 2025-09-23T04:00:00Z
  estimated_duration: 2 hours
risks_and_mitigations:
  - {risk: "bad estimates", probability: high, impact: high, mitigation: "rollback"}
rollback_plan:
  trigger_conditions: ["API 응답 시간 > 5초", {metric: error_rate, op: ">", value: 0.01}]
  rollback_steps:
    - "트래픽 차단"
    - name: save the new config
      backup: {steps: [{files: [/etc/app/new.conf]}]}
    - {name: restore config, restore: {file: app.conf, to: /etc/app/app.conf}}
    - name: restart
      command:
        shell: |
          systemctl restart app
          echo "restarted from $RUNBOOK_BACKUP_DIR"
      retries: 2
      idempotent: true
  estimated_rollback_time: 30 minutes
  verify: [old_release]
approval:
  timeout: 4h
  technical_approval: {approver: Lead Architect}
  business_approval: {approver: Bob Business}
preflight:
  checks:
    - {name: api up, http: {url: "http://127.0.0.1:8080/health"}}
  backup:
    dir: /var/backups/app
    steps: [{files: [/etc/app/app.conf]}]
deploy:
  steps:
    - {name: switch, command: {argv: [/usr/bin/switch, v2.4.1]}}
  health: [{url: "http://127.0.0.1:8080/health", attempts: 2, interval: 1s, initial_delay: 0s}]
monitor:
  window: 5m
  thresholds: {error_rate: 0.02}
test:
  secret_hosts: [127.0.0.1]
  smoke: [{name: new release, request: {url: "http://127.0.0.1:8080/version"}, expect: {json: {release: v2.4.1}}}]
  suites:
    - name: new_paths
      steps: [{name: new api, request: {url: "http://127.0.0.1:8080/v2"}}]
    - name: old_release
      steps: [{name: old api, request: {url: "http://127.0.0.1:8080/version"}, expect: {json: {release: v2.4.0}}}]
  load: {vus: 5, duration: 10s, requests: [{url: "http://127.0.0.1:8080/health"}]}
report:
  notify: [{webhook: {url: "https://hooks.example.com/runbook"}}]
`

func mustParse(t *testing.T, name string, data []byte) *plan.Plan {
	t.Helper()
	p, issues := plan.Parse(name, data)
	if p == nil {
		t.Fatalf("%s does not parse: %v\n%s", name, issues, data)
	}
	return p
}

// The revert of a run is its rollback steps as a change of their own: the
// same approvals, risk, scope, monitor and notifications; deploy steps =
// the rollback steps as written; tests = the verify suites; no window; a
// described rollback; and the reference to the reverted run.
func TestRevertPlan(t *testing.T) {
	t.Parallel()
	orig := mustParse(t, "orig", []byte(revertedPlan))
	data, err := plan.Revert([]byte(revertedPlan), plan.RevertOf{Run: "DEPLOY-20250923-020000", Reason: "customers see wrong estimates", Requester: "oncall"})
	if err != nil {
		t.Fatal(err)
	}
	rp, issues := plan.Parse("revert", data)
	if rp == nil {
		t.Fatalf("revert plan invalid: %v\n%s", issues, data)
	}

	if want := (plan.ChangeRequest{ID: "REVERT-CR-7", Title: "Revert DEPLOY-20250923-020000: release v2.4.1", Type: "enhancement", Priority: "high"}); rp.ChangeRequest != want {
		t.Errorf("change_request = %+v, want %+v", rp.ChangeRequest, want)
	}
	if rp.Requester.Name != "oncall" || rp.Description.BusinessJustification != "customers see wrong estimates" ||
		!strings.Contains(rp.Description.Summary, "Revert of run DEPLOY-20250923-020000, change CR-7 (release v2.4.1)") {
		t.Errorf("requester %+v, description %+v", rp.Requester, rp.Description)
	}
	if want := (plan.Reverts{Run: "DEPLOY-20250923-020000", ChangeID: "CR-7", Reason: "customers see wrong estimates"}); rp.Reverts == nil || *rp.Reverts != want {
		t.Errorf("reverts = %+v, want %+v", rp.Reverts, want)
	}

	// The same approvals and risk.
	if !reflect.DeepEqual(rp.Approval, orig.Approval) || rp.ApprovalTimeout != orig.ApprovalTimeout {
		t.Errorf("approval = %+v (timeout %v), want %+v (%v)", rp.Approval, rp.ApprovalTimeout, orig.Approval, orig.ApprovalTimeout)
	}
	ra, oa := risk.Assess(rp.RisksAndMitigations, rp.Approval), risk.Assess(orig.RisksAndMitigations, orig.Approval)
	if !reflect.DeepEqual(ra, oa) || oa.Level != "HIGH" {
		t.Errorf("risk = %+v, want %+v", ra, oa)
	}
	// Kept as they are.
	for name, pair := range map[string][2]any{
		"scope":              {rp.Scope, orig.Scope},
		"monitor":            {rp.Monitor, orig.Monitor},
		"report":             {rp.Report, orig.Report},
		"preflight.checks":   {rp.Preflight.Checks, orig.Preflight.Checks},
		"trigger_conditions": {rp.RollbackPlan.TriggerConditions, orig.RollbackPlan.TriggerConditions},
		"secret_hosts":       {rp.Test.SecretHosts, orig.Test.SecretHosts},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s = %+v, want the original's %+v", name, pair[0], pair[1])
		}
	}

	// Deploy: the rollback steps, as written; the backup step's backup goes
	// under the original's backup dir.
	if len(rp.Deploy.Steps) != len(orig.RollbackPlan.RollbackSteps) || len(rp.Deploy.Health) != 0 || len(rp.Deploy.Finally) != 0 {
		t.Fatalf("deploy = %+v", rp.Deploy)
	}
	for i, want := range orig.RollbackPlan.RollbackSteps {
		if want.Backup != nil {
			b := *want.Backup
			b.Dir = "/var/backups/app"
			want.Backup = &b
		}
		if got := rp.Deploy.Steps[i]; !reflect.DeepEqual(got, want) {
			t.Errorf("deploy.steps[%d] = %+v, want %+v", i, got, want)
		}
	}
	if !rp.Deploy.Steps[0].IsManual() || rp.Deploy.Steps[3].Command.Shell != "systemctl restart app\necho \"restarted from $RUNBOOK_BACKUP_DIR\"\n" {
		t.Errorf("steps %+v", rp.Deploy.Steps)
	}
	if rp.Preflight.Backup != nil {
		t.Errorf("preflight.backup = %+v: a revert restores the reverted run's backup", rp.Preflight.Backup)
	}
	if rp.BackupDir() != "/var/backups/app" {
		t.Errorf("backup dir %q", rp.BackupDir())
	}

	// Tests: the verify suites only.
	if len(rp.Test.Suites) != 1 || rp.Test.Suites[0].Name != "old_release" || len(rp.Test.Smoke) != 0 || rp.Test.Load != nil {
		t.Errorf("test = %+v", rp.Test)
	}
	// Rollback: one described step; a failure ends FAILED, nothing undone.
	if len(rp.RollbackPlan.RollbackSteps) != 1 || rp.RollbackPlan.RollbackSteps[0].Text != plan.RevertManualStep ||
		len(rp.RollbackPlan.Verify) != 0 || !rp.NothingUndoneOnFailure() {
		t.Errorf("rollback_plan = %+v", rp.RollbackPlan)
	}
	var warned bool
	for _, i := range issues {
		warned = warned || (i.Warning && i.Path == "rollback_plan.rollback_steps" && strings.HasPrefix(i.Message, plan.NoExecutableRollbackWarning))
	}
	if !warned {
		t.Errorf("validate does not say that a failed revert undoes nothing: %v", issues)
	}
	// No window: it runs once approved; it takes the rollback's time.
	if rp.Timeline.PlannedStart != "" || rp.Timeline.WindowEnd != "" || rp.Timeline.EstimatedDuration.Raw != "30 minutes" {
		t.Errorf("timeline = %+v", rp.Timeline)
	}

	// validate says what it reverts, and that its own rollback is by hand.
	view := planview.Describe(rp, ra)
	for _, want := range []string{
		"reverts run DEPLOY-20250923-020000 (CR-7): its rollback steps are this plan's deploy; restore steps and RUNBOOK_BACKUP_DIR read run DEPLOY-20250923-020000's backup",
		"why: customers see wrong estimates",
		plan.RevertManualStep,
	} {
		if !strings.Contains(view, want) {
			t.Errorf("validate's view does not say %q:\n%s", want, view)
		}
	}

	// Deterministic: the same inputs give the same plan (and plan sha256).
	again, err := plan.Revert([]byte(revertedPlan), plan.RevertOf{Run: "DEPLOY-20250923-020000", Reason: "customers see wrong estimates", Requester: "oncall"})
	if err != nil || string(again) != string(data) {
		t.Errorf("a second derivation differs: %v\n%s\n---\n%s", err, data, again)
	}
}

// What cannot be reverted says why.
func TestRevertRefused(t *testing.T) {
	t.Parallel()
	reverted, err := plan.Revert([]byte(revertedPlan), plan.RevertOf{Run: "R-1", Reason: "why"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		yaml string
		of   plan.RevertOf
		want []string
	}{
		{"no reason", revertedPlan, plan.RevertOf{Run: "R-1", Reason: " "}, []string{"a reason is required (--reason)"}},
		{"bad run id", revertedPlan, plan.RevertOf{Run: "R 1", Reason: "why"}, []string{`run id "R 1" is not a run id`}},
		{"nothing executable", "deploy: {steps: [{command: {argv: [\"true\"]}}]}\nrollback_plan: {rollback_steps: \"1. 트래픽 차단 2. call the DBA\"}\n",
			plan.RevertOf{Run: "R-1", Reason: "why"}, []string{"revert R-1: its plan has no executable rollback step, so runbook has nothing to run to undo it", "트래픽 차단; call the DBA"}},
		{"no rollback at all", "deploy: {steps: [{command: {argv: [\"true\"]}}]}\n", plan.RevertOf{Run: "R-1", Reason: "why"}, []string{"no executable rollback step"}},
		{"a revert", string(reverted), plan.RevertOf{Run: "R-2", Reason: "why"}, []string{"revert R-2: it is itself the revert of run R-1"}},
		{"approver asks", revertedPlan, plan.RevertOf{Run: "R-1", Reason: "why", Requester: "Lead Architect"}, []string{
			"the revert plan is not valid", `"Lead Architect" is the requester (requester.name): the requester cannot approve their own change`}},
		{"invalid original", "deploy: {steps: [{comand: {}}]}\n", plan.RevertOf{Run: "R-1", Reason: "why"}, []string{"revert R-1: its plan does not parse"}},
	}
	for _, c := range cases {
		_, err := plan.Revert([]byte(c.yaml), c.of)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
}

// The reverts section as validate reads it: a run id; described steps in
// deploy.steps and restores without a backup of the plan's own are a
// revert's (and only a revert's).
func TestRevertsSection(t *testing.T) {
	t.Parallel()
	const steps = "deploy:\n  steps:\n    - \"트래픽 차단\"\n    - {restore: {file: app.conf, to: /etc/app/app.conf}}\n"
	if p, issues := plan.Parse("p", []byte(steps+"reverts: {run: DEPLOY-1, change_id: CR-1, reason: why}\n")); p == nil {
		t.Errorf("a revert's described step and restore: %v", issues)
	}
	_, issues := plan.Parse("p", []byte(steps))
	if got := plan.Errors(issues); !strings.Contains(got, "deploy.steps[0]: a step here must be a mapping") || !strings.Contains(got, `restore of "app.conf" needs a backup to restore from`) {
		t.Errorf("without reverts: %s", got)
	}
	_, issues = plan.Parse("p", []byte(steps+"reverts: {run: \"DEPLOY 1\"}\n"))
	if got := plan.Errors(issues); !strings.Contains(got, `reverts.run: "DEPLOY 1" is not a run id`) {
		t.Errorf("bad run id: %s", got)
	}
	_, issues = plan.Parse("p", []byte(steps+"reverts: {reason: why}\n"))
	if got := plan.Errors(issues); !strings.Contains(got, "reverts.run: run (the id of the run this plan reverts") {
		t.Errorf("no run: %s", got)
	}
}
