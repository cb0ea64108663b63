// Package planview renders a validated plan as it will run, with its risk
// report: the text `runbook validate` prints. It lives apart from package
// plan because it needs both plan and risk, and risk imports plan (Assess
// takes the plan's risks).
package planview

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
)

// Describe is the plan "as it will run": every check, step, health check,
// rollback step, the monitor's window, baseline, sources and each metric's
// effective gate with the auto-rollback rule they make, the smoke tests,
// the load test's model and gates, the notifications, the risk report (each
// risk's score, level and how its words were scored), the overall level,
// whether executive approval is needed, and the approvals required.
// Defaults are shown as the values that will apply.
func Describe(p *plan.Plan, a risk.Assessment) string {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}

	cr := p.ChangeRequest
	title := strings.TrimSpace(strings.Join(nonEmpty(cr.ID, quoted(cr.Title)), " "))
	if title == "" {
		title = "(no change_request id or title)"
	}
	var kind []string
	if cr.Type != "" {
		kind = append(kind, cr.Type)
	}
	if cr.Priority != "" {
		kind = append(kind, "priority "+cr.Priority)
	}
	if len(kind) > 0 {
		title += " — " + strings.Join(kind, ", ")
	}
	w(0, "CHANGE %s", title)
	if r := p.Requester; r.Name != "" || r.Contact != "" {
		w(1, "requested by %s", strings.Join(nonEmpty(r.Name, paren(strings.Join(nonEmpty(r.Role, r.Contact), ", "))), " "))
	}
	if rv := p.Reverts; rv != nil {
		w(1, "reverts run %s: its rollback steps are this plan's deploy; restore steps and RUNBOOK_BACKUP_DIR read run %s's backup (pre-flight checks it ended SUCCESS and holds every restored file)",
			strings.Join(nonEmpty(rv.Run, paren(rv.ChangeID)), " "), rv.Run)
		if rv.Reason != "" {
			w(2, "why: %s", rv.Reason)
		}
	}
	if t := p.Timeline; t.PlannedStart != "" || t.EstimatedDuration.IsSet() || t.PlannedCompletion != "" || t.WindowEnd != "" {
		var parts []string
		if t.PlannedStart != "" {
			parts = append(parts, "start "+t.PlannedStart)
		}
		if t.EstimatedDuration.IsSet() {
			parts = append(parts, fmt.Sprintf("estimated %s (%s)", t.EstimatedDuration, dur(t.EstimatedDuration.Duration)))
		}
		if t.PlannedCompletion != "" {
			parts = append(parts, "completion "+t.PlannedCompletion)
		}
		if t.WindowEnd != "" {
			parts = append(parts, "window end "+t.WindowEnd+" (not started by then: EXPIRED)")
		}
		w(1, "timeline: %s", strings.Join(parts, ", "))
		for _, m := range t.Milestones {
			w(2, "- %s", m)
		}
	}

	w(0, "")
	w(0, "PRE-FLIGHT")
	if len(p.Preflight.Checks) == 0 {
		w(1, "checks: none")
	}
	for i, c := range p.Preflight.Checks {
		blocking := "blocking"
		if !c.IsBlocking() {
			blocking = "warning only"
		}
		w(1, "%d. %s [%s] %s · timeout %s · %s", i+1, c.Label(i), c.Kind(), checkText(c), dur(c.EffectiveTimeout()), blocking)
	}
	if bk := p.Preflight.Backup; bk != nil {
		w(1, "backup to %s/<run id>-YYYYMMDD_HHMMSS (a new directory per run), with backup_metadata.json:", p.BackupDir())
		describeBackup(w, 2, bk)
	} else if len(p.Backups()) > 0 {
		w(1, "backup: none in pre-flight; the first backup step makes the run's backup directory %s/<run id>-YYYYMMDD_HHMMSS (the deploy's start)", p.BackupDir())
	} else {
		w(1, "backup: none")
	}

	w(0, "")
	w(0, "DEPLOY")
	if len(p.Deploy.Steps) == 0 {
		w(1, "steps: none — nothing will be changed")
	}
	for i, s := range p.Deploy.Steps {
		describeStep(w, 1, i, s)
	}
	if len(p.Deploy.Health) > 0 {
		w(1, "health:")
	}
	for i, h := range p.Deploy.Health {
		w(2, "%d. GET %s until %s: %d attempts every %s after %s (%s each)", i+1, h.URL, expectText(h.Expectation()),
			h.EffectiveAttempts(), dur(h.EffectiveInterval()), dur(h.EffectiveInitialDelay()), dur(h.EffectiveTimeout()))
	}
	if len(p.Deploy.Finally) > 0 {
		w(1, "finally (always, after the steps):")
	}
	for i, s := range p.Deploy.Finally {
		describeStep(w, 2, i, s)
	}

	w(0, "")
	w(0, "ROLLBACK")
	rp, t0 := p.RollbackPlan, p.Test
	if len(rp.TriggerConditions) > 0 {
		w(1, "trigger conditions:")
	}
	for _, t := range rp.TriggerConditions {
		if t.IsText() {
			w(2, "- %s (text: shown to people, not watched)", t)
		} else {
			w(2, "- %s (shown to people: the monitor judges monitor.thresholds and monitor.gates)", t)
		}
	}
	if len(rp.RollbackSteps) == 0 {
		w(1, "steps: none")
	} else {
		w(1, "steps:")
	}
	for i, s := range rp.RollbackSteps {
		describeStep(w, 2, i, s)
	}
	if len(rp.Verify) > 0 {
		steps, _ := t0.SuiteSteps(rp.Verify)
		w(1, "after the rollback: re-run smoke suites %s (%d test(s)): all pass → ROLLED_BACK, any fails → ROLLBACK_FAILED", strings.Join(rp.Verify, ", "), len(steps))
	}
	if rp.EstimatedRollbackTime.IsSet() {
		w(1, "estimated rollback time: %s (%s)", rp.EstimatedRollbackTime, dur(rp.EstimatedRollbackTime.Duration))
	}

	w(0, "")
	w(0, "MONITOR")
	describeMonitor(w, p.Monitor, p.Deploy)

	w(0, "")
	w(0, "TEST")
	t := p.Test
	if t.IsEmpty() {
		w(1, "none — the tests pass at once")
	}
	suite, depth := "", 1
	for i, s := range t.SmokeSteps() {
		if s.Suite != suite {
			suite, depth = s.Suite, 2
			w(1, "suite %s:", suite)
		}
		exp := statusText(s.Expect.Status)
		if s.Expect.MaxMS > 0 {
			exp += fmt.Sprintf(", ≤ %d ms", s.Expect.MaxMS)
		}
		if n := len(s.Expect.JSON) + len(s.Expect.JSONMatch) + len(s.Expect.JSONAbsent); n > 0 {
			keys := append(sortedKeys(s.Expect.JSON), sortedKeys(s.Expect.JSONMatch)...)
			for _, a := range s.Expect.JSONAbsent {
				keys = append(keys, "no "+a)
			}
			exp += ", json " + strings.Join(keys, ", ")
		}
		if n := len(s.Expect.Headers) + len(s.Expect.HeadersMatch); n > 0 {
			exp += ", headers " + strings.Join(append(sortedKeys(s.Expect.Headers), sortedKeys(s.Expect.HeadersMatch)...), ", ")
		}
		if len(s.Expect.BodyContains) > 0 {
			exp += fmt.Sprintf(", body contains %d text(s)", len(s.Expect.BodyContains))
		}
		line := fmt.Sprintf("%d. %s [%s] %s %s → expect %s · timeout %s", i+1, s.EffectiveName(), s.Type, s.Request.EffectiveMethod(), s.Request.URL, exp, dur(s.EffectiveTimeout()))
		if len(s.Capture) > 0 {
			line += " · captures " + strings.Join(sortedKeys(s.Capture), ", ")
		}
		w(depth, "%s", line)
	}
	if l := t.Load; l != nil {
		describeLoad(w, l)
	}
	if len(t.SecretHosts) > 0 {
		w(1, "values from the environment (${env:…}, headers_env) are sent only to %s", strings.Join(t.SecretHosts, ", "))
	}
	if !t.IsEmpty() {
		if t.RollbackOnFailureOr() {
			w(1, "on failure: rollback requested")
		} else {
			w(1, "on failure: no rollback (rollback_on_failure: false)")
		}
	}

	w(0, "")
	w(0, "REPORT")
	if len(p.Report.Notify) == 0 {
		w(1, "notify: nobody (the report is stored with the run)")
	}
	for i, n := range p.Report.Notify {
		var to string
		switch n.Kind() {
		case "slack":
			to = "slack webhook from $" + n.Slack.WebhookEnv
		case "webhook":
			to = "webhook " + n.Webhook.URL
		case "email":
			to = fmt.Sprintf("email to %s via $%s", strings.Join(n.Email.To, ", "), n.Email.SMTPEnv)
		}
		w(1, "%d. %s (%s)", i+1, to, n.When())
	}

	w(0, "")
	w(0, "RISK")
	if len(a.Risks) == 0 {
		w(1, "no risks listed")
	}
	for _, r := range a.Risks {
		w(1, "%s %s: %d × %d = %d %s%s", r.ID, quoted(r.Description), r.ProbabilityScore, r.ImpactScore, r.Score, r.Level, execNote(r.RequiresExecutiveApproval))
		w(2, "scored: %s", r.ScoringNote)
		if r.Mitigation != "" {
			w(2, "mitigation: %s", r.Mitigation)
		}
	}
	exec := "not required"
	if a.RequiresExecutiveApproval {
		exec = "REQUIRED"
	}
	w(1, "overall: %s (max score %d); executive approval %s", a.Level, a.MaxScore, exec)

	w(0, "")
	w(0, "APPROVALS REQUIRED")
	if len(a.ApprovalsRequired) == 0 {
		w(1, "none")
	}
	for _, role := range a.ApprovalsRequired {
		if ap, ok := p.Approval[role]; ok && ap.Approver != "" {
			w(1, "- %s (approver: %s)", role, ap.Approver)
		} else if role == risk.ExecutiveApproval && a.RequiresExecutiveApproval {
			w(1, "- %s (the overall risk is %s)", role, a.Level)
		} else {
			w(1, "- %s", role)
		}
	}
	if p.ApprovalTimeout.IsSet() && len(a.ApprovalsRequired) > 0 {
		w(1, "timeout %s after pre-flight passed: a run still missing an approval then EXPIRES", dur(p.ApprovalTimeout.Duration))
	}
	w(1, "approvals count only as `runbook approve` events")
	return b.String()
}

func checkText(c plan.Check) string {
	switch c.Kind() {
	case "http":
		s := fmt.Sprintf("%s %s → %s", c.HTTP.EffectiveMethod(), c.HTTP.URL, statusText(c.HTTP.ExpectStatus))
		if c.HTTP.MaxMS > 0 {
			s += fmt.Sprintf(", ≤ %d ms", c.HTTP.MaxMS)
		}
		if c.HTTP.BodyContains != "" {
			s += fmt.Sprintf(", body contains %q", c.HTTP.BodyContains)
		}
		return s
	case "tcp":
		return "connect " + c.TCP.Address
	case "env":
		return "set: " + strings.Join(c.Env.Required, ", ")
	case "command":
		return argv(c.Command)
	case "postgres":
		return fmt.Sprintf("connect $%s, run %s", c.Postgres.DSNEnv, c.Postgres.EffectiveQuery())
	case "redis":
		s := "PING " + c.Redis.Address
		if c.Redis.AddressEnv != "" {
			s = "PING $" + c.Redis.AddressEnv
		}
		if c.Redis.PasswordEnv != "" {
			s += ", AUTH with $" + c.Redis.PasswordEnv
		}
		return s
	case "nats":
		if c.NATS.URLEnv != "" {
			return "connect $" + c.NATS.URLEnv
		}
		return "connect " + c.NATS.URL
	case "resources":
		r := c.Resources
		return fmt.Sprintf("CPU ≤ %s%%, memory ≤ %s%%, disk %s ≤ %s%%", num(r.EffectiveCPU()), num(r.EffectiveMemory()), r.EffectiveDiskPath(), num(r.EffectiveDisk()))
	case "file":
		return "exists and readable " + c.File.Path
	}
	return ""
}

// describeBackup lists a backup's steps (preflight.backup's or a backup
// step's) at indent.
func describeBackup(w writer, indent int, b *plan.Backup) {
	for i, s := range b.Steps {
		what := ""
		switch s.Kind() {
		case "command":
			what = argv(s.Command)
		case "files":
			what = strings.Join(s.Files, ", ")
		}
		if s.Stdout != "" {
			what += " > " + s.Stdout
		}
		w(indent, "%d. %s [%s] %s · timeout %s", i+1, s.Label(i), s.Kind(), what, dur(s.EffectiveTimeout()))
	}
}

// describeStep writes step i of a list at indent; under a backup step,
// what it backs up.
func describeStep(w writer, indent, i int, s plan.Step) {
	w(indent, "%d. %s", i+1, stepText(s))
	if s.Backup != nil {
		describeBackup(w, indent+1, s.Backup)
	}
}

func stepText(s plan.Step) string {
	if s.IsManual() {
		return "[manual] " + s.Text + " (described, done by people)"
	}
	var what string
	switch s.Kind() {
	case "command":
		what = argv(s.Command)
	case "http":
		what = fmt.Sprintf("%s %s → %s", s.HTTP.EffectiveMethod(), s.HTTP.URL, expectText(s.HTTP.Expectation()))
	case "wait":
		if u := s.Wait.Until; u != nil {
			limit := dur(s.EffectiveTimeout())
			if u.Timeout.IsSet() {
				limit = dur(u.Timeout.Duration)
			}
			every := "every " + dur(u.EffectiveInterval())
			if n := u.EffectiveSuccesses(); n > 1 {
				every = fmt.Sprintf("%d checks in a row, %s", n, every)
			}
			return fmt.Sprintf("%s [wait] until GET %s → %s, %s, at most %s", s.Label(), u.URL, expectText(u.Expectation()), every, limit)
		}
		return fmt.Sprintf("%s [wait] %s", s.Label(), dur(s.Wait.Duration.Duration))
	case "sql":
		src := s.SQL.File
		if src != "" && s.SQL.IfExists {
			src += " if it exists (else: no pending migrations)"
		}
		if src == "" {
			src = fmt.Sprintf("%d statement(s)", len(s.SQL.Statements))
		}
		what = fmt.Sprintf("%s in one transaction on $%s (rolled back on any error)", src, s.SQL.DSNEnv)
	case "restore":
		what = fmt.Sprintf("%s from the run's backup → %s", s.Restore.File, s.Restore.To)
	case "backup":
		what = "now, into the run's backup directory (pre-flight's, else made now); its files join backup_metadata.json once all are saved"
	}
	idem := "not idempotent"
	if s.SafeToRerun() {
		idem = "idempotent"
	}
	retries := fmt.Sprintf("retries %d", s.Retries)
	if s.Retries > 0 && s.RetryDelay.IsSet() {
		retries += fmt.Sprintf(" (backoff %s, doubling)", dur(s.EffectiveRetryDelay()))
	}
	return fmt.Sprintf("%s [%s] %s · timeout %s · %s · %s", s.Label(), s.Kind(), what, dur(s.EffectiveTimeout()), retries, idem)
}

func argv(c *plan.Command) string {
	if c == nil {
		return ""
	}
	if c.Shell != "" {
		return "/bin/sh -c " + strconv.Quote(strings.TrimSpace(c.Shell)) + " (the plan's own script; run data only as RUNBOOK_* environment)"
	}
	parts := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	s := strings.Join(parts, " ")
	if c.Dir != "" {
		s += " (in " + c.Dir + ")"
	}
	if c.ExpectExit != 0 {
		s += fmt.Sprintf(" (exit %d expected)", c.ExpectExit)
	}
	return s
}

func dur(d time.Duration) string { return plan.FormatDuration(d) }

func statusText(expect int) string {
	if expect == 0 {
		return "2xx"
	}
	return strconv.Itoa(expect)
}

func execNote(b bool) string {
	if b {
		return " — executive approval required"
	}
	return ""
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// sortedKeys lists m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
