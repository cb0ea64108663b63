package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errorsOf(issues []Issue) []Issue {
	var out []Issue
	for _, i := range issues {
		if !i.Warning {
			out = append(out, i)
		}
	}
	return out
}

func warningsOf(issues []Issue) []Issue {
	var out []Issue
	for _, i := range issues {
		if i.Warning {
			out = append(out, i)
		}
	}
	return out
}

// seedSHA256 pins testdata/seed_template.yml to the bytes of the seed's
// change_plan_template.yml (09_Runbook.md), broken UTF-8 and trailing
// spaces included. Regenerate only with testdata/extract-seed.sh.
const seedSHA256 = "c568a42a1fe555629a5954fb7ad7c247f3217b16c696c5d50718277ba4efd252"

// THE acceptance test: the seed's template, unchanged, parses with no error.
func TestSeedTemplate(t *testing.T) {
	t.Parallel()
	data := read(t, "seed_template.yml")
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != seedSHA256 {
		t.Fatalf("testdata/seed_template.yml is not the seed's bytes (sha256 %x): re-extract it with testdata/extract-seed.sh", sum)
	}
	p, issues := Parse("seed_template.yml", data)
	if errs := errorsOf(issues); len(errs) > 0 || p == nil {
		t.Fatalf("seed template has errors: %v", errs)
	}

	// Exactly the expected warnings.
	want := []struct {
		path string
		line int
		text string
	}{
		{"rollback_plan.rollback_steps", 66, "one text, read as 5 described manual step(s)"},
		{"approval.technical_approval.status", 77, `status "pending": never trusted: approvals exist only as ` + "`runbook approve`" + ` events`},
		{"approval.business_approval.status", 82, `status "approved" and timestamp "2025-09-22T10:30:00Z"`},
		{"approval.security_approval.status", 87, `never trusted`},
		{"deploy.steps", 0, "nothing executable"},
	}
	warns := warningsOf(issues)
	if len(warns) != len(want) {
		t.Fatalf("warnings: got %d, want %d: %v", len(warns), len(want), warns)
	}
	for i, w := range want {
		got := warns[i]
		if got.Path != w.path || got.Line != w.line || !strings.Contains(got.Message, w.text) {
			t.Errorf("warning %d = %v, want %s at line %d containing %q", i, got, w.path, w.line, w.text)
		}
	}

	// The seed's values, decoded.
	if p.ChangeRequest.ID != "CR-2025-001" || p.ChangeRequest.Type != "enhancement" || p.ChangeRequest.Priority != "medium" {
		t.Errorf("change_request = %+v", p.ChangeRequest)
	}
	if p.Timeline.EstimatedDuration.Duration != 2*time.Hour || p.Timeline.EstimatedDuration.Raw != "2 hours" {
		t.Errorf("estimated_duration = %+v", p.Timeline.EstimatedDuration)
	}
	if len(p.Timeline.Milestones) != 5 || len(p.Scope.SystemsAffected) != 3 || len(p.Scope.ComponentsModified) != 3 || len(p.Scope.DataChanges) != 2 {
		t.Errorf("timeline/scope lists = %+v %+v", p.Timeline, p.Scope)
	}
	if !strings.Contains(p.Description.TechnicalDetails, "API 호환성 유지") {
		t.Errorf("technical_details = %q", p.Description.TechnicalDetails)
	}
	if len(p.RisksAndMitigations) != 2 || p.RisksAndMitigations[0].Probability != "low" || p.RisksAndMitigations[0].Impact != "high" ||
		p.RisksAndMitigations[1].Probability != "medium" || p.RisksAndMitigations[1].Impact != "medium" {
		t.Errorf("risks = %+v", p.RisksAndMitigations)
	}
	rp := p.RollbackPlan
	if len(rp.TriggerConditions) != 3 || rp.TriggerConditions[2].Text != "AI 예측 정확\ufffd < 90%" {
		t.Errorf("trigger_conditions = %+v", rp.TriggerConditions)
	}
	if len(rp.RollbackSteps) != 5 {
		t.Fatalf("rollback_steps = %+v", rp.RollbackSteps)
	}
	for i, s := range rp.RollbackSteps {
		if s.Kind() != "manual" || s.Text == "" || strings.ContainsAny(s.Text, `"`) {
			t.Errorf("rollback step %d = %+v", i, s)
		}
	}
	if rp.RollbackSteps[3].Text != "테스트 실행" {
		t.Errorf("rollback step 4 = %q, want 테스트 실행", rp.RollbackSteps[3].Text)
	}
	if rp.EstimatedRollbackTime.Duration != 30*time.Minute {
		t.Errorf("estimated_rollback_time = %+v", rp.EstimatedRollbackTime)
	}
	if len(p.Approval) != 3 || p.Approval["technical_approval"].Approver != "Lead Architect" || p.Approval["technical_approval"].Timestamp != "" ||
		p.Approval["security_approval"].Timestamp != "2025-09-22T11:00:00Z" {
		t.Errorf("approval = %+v", p.Approval)
	}
}

// A plan with every executable part passes with no issue at all.
func TestFullPlan(t *testing.T) {
	t.Parallel()
	p, issues := Parse("full_plan.yml", read(t, "full_plan.yml"))
	if len(issues) > 0 || p == nil {
		t.Fatalf("full plan: %v", issues)
	}
	if got := len(p.Preflight.Checks); got != 9 {
		t.Fatalf("checks = %d", got)
	}
	var kinds []string
	for _, c := range p.Preflight.Checks {
		kinds = append(kinds, c.Kind())
	}
	if got := strings.Join(kinds, ","); got != "http,tcp,env,command,postgres,redis,nats,resources,file" {
		t.Errorf("check kinds = %s", got)
	}
	if p.Preflight.Checks[0].HTTP.JSON["status"] != "ok" || p.Preflight.Checks[0].HTTP.HeadersEnv["Authorization"] != "API_TOKEN" {
		t.Errorf("http check = %+v", p.Preflight.Checks[0].HTTP)
	}
	steps := p.Deploy.Steps
	if len(steps) != 3 || steps[0].Kind() != "http" || steps[1].Kind() != "command" || steps[2].Kind() != "wait" {
		t.Fatalf("deploy steps = %+v", steps)
	}
	// The merge key brought retries and timeout from x-common.
	if steps[1].Retries != 2 || steps[1].EffectiveTimeout() != 2*time.Minute || !steps[1].Idempotent {
		t.Errorf("merged step = %+v", steps[1])
	}
	if steps[2].Wait.Duration.Duration != 30*time.Second {
		t.Errorf("wait = %+v", steps[2].Wait)
	}
	h := p.Deploy.Health[0]
	if h.EffectiveAttempts() != 5 || h.EffectiveInterval() != 2*time.Second || h.EffectiveInitialDelay() != 0 || h.EffectiveTimeout() != DefaultHealthTimeout {
		t.Errorf("health = %+v", h)
	}
	rs := p.RollbackPlan.RollbackSteps
	if len(rs) != 3 || rs[0].Kind() != "manual" || rs[0].Text != "트래픽 차단" || rs[1].Kind() != "command" || rs[1].Command.Env["MODEL_DIR"] != "/srv/model" || rs[2].Kind() != "wait" {
		t.Errorf("rollback steps = %+v", rs)
	}
	tc := p.RollbackPlan.TriggerConditions
	if len(tc) != 2 || !tc[0].IsText() || tc[1].Metric != MetricErrorRate || tc[1].Op != ">" || tc[1].Value != 0.01 || !tc[1].Holds(0.02) || tc[1].Holds(0.01) {
		t.Errorf("trigger conditions = %+v", tc)
	}
	m := p.Monitor
	if m.EffectiveWindow() != 10*time.Minute || m.EffectiveInterval() != 15*time.Second || len(m.Sources) != 2 ||
		m.Sources[0].Kind() != "http_probe" || m.Sources[1].Kind() != "prometheus_scrape" ||
		m.Sources[1].PrometheusScrape.EffectiveRequestsCounter() != "http_request_duration_seconds_count" {
		t.Errorf("monitor = %+v", m)
	}
	for _, l := range m.Limits() {
		if l.Rollback != (l.Metric == MetricP95) || (l.Rollback && l.Critical != 3600) {
			t.Errorf("limit %+v; want only p95 to roll back, above 3600", l)
		}
	}
	if p.Test.RollbackOnFailureOr() {
		t.Error("rollback_on_failure: false not honoured")
	}
	l := p.Test.Load
	if l.EffectiveVUs() != 10 || l.EffectiveDuration() != time.Minute || l.EffectiveThinkTime() != 0 {
		t.Errorf("load = %+v", l)
	}
	if g := l.EffectiveGates(); g.P95MS != 1500 || g.ErrorRate != 0 {
		t.Errorf("gates = %+v (error_rate: 0 written must mean no errors allowed)", g)
	}
	smoke := p.Test.Smoke[0]
	if smoke.Expect.Status != 201 || smoke.Expect.JSON["id"] != "*" || smoke.Request.Headers["Content-Type"] != "application/json" {
		t.Errorf("smoke = %+v", smoke)
	}
	if items, ok := smoke.Request.JSON.(map[string]any)["items"].([]any); !ok || len(items) != 2 {
		t.Errorf("smoke json = %#v", smoke.Request.JSON)
	}
	n := p.Report.Notify
	if len(n) != 3 || n[0].When() != NotifyAlways || !n[0].ShouldSend(false) || n[1].ShouldSend(false) || !n[2].ShouldSend(false) || n[2].ShouldSend(true) {
		t.Errorf("notify = %+v", n)
	}
	if !p.Preflight.Checks[0].IsBlocking() || p.Preflight.Checks[7].IsBlocking() || p.Preflight.Checks[8].IsBlocking() {
		t.Error("blocking defaults wrong")
	}
	if p.Preflight.Checks[1].EffectiveTimeout() != 3*time.Second || p.Preflight.Checks[2].EffectiveTimeout() != DefaultCheckTimeout {
		t.Error("check timeouts wrong")
	}
}

type wantIssue struct {
	path     string
	line     int
	column   int
	value    string
	contains []string
}

// Each fixture in testdata/invalid has exactly the listed errors (warnings
// are not counted), at their path, line and column, saying what is wrong
// and what is allowed.
func TestInvalid(t *testing.T) {
	t.Parallel()
	src := func(name string) string { return "invalid/" + name + ".yml" }
	cases := []struct {
		file string
		want []wantIssue
	}{
		{"unknown_top", []wantIssue{{"chnage_request", 1, 1, "chnage_request", []string{`unknown field "chnage_request" at the top level`, `did you mean "change_request"?`, "allowed fields are change_request, requester"}}}},
		{"unknown_nested", []wantIssue{{"deploy.steps[0].timout", 5, 7, "timout", []string{`unknown field "timout" in deploy.steps[0]`, `did you mean "timeout"?`, "name, timeout, retries, idempotent, command, http, wait"}}}},
		// The typo is the one error: argv is not also reported missing.
		{"unknown_in_command", []wantIssue{{"preflight.checks[0].command.args", 5, 9, "args", []string{`did you mean "argv"?`, "allowed fields are argv, shell, dir, env, expect_exit"}}}},
		{"enum_type", []wantIssue{{"change_request.type", 3, 9, "feature", []string{`"feature" is not a change type`, "maintenance, bugfix, enhancement, emergency"}}}},
		{"enum_priority", []wantIssue{{"change_request.priority", 2, 13, "urgent", []string{`"urgent" is not a priority`, "low, medium, high, critical"}}}},
		{"enum_probability", []wantIssue{{"risks_and_mitigations[0].probability", 3, 18, "likely", []string{`"likely" is not a probability`, "very_low, low, medium, high, very_high"}}}},
		{"enum_impact", []wantIssue{{"risks_and_mitigations[0].impact", 4, 13, "huge", []string{`"huge" is not an impact`, "negligible, minor, moderate, major, severe", "low, medium, high, critical"}}}},
		{"risk_missing_impact", []wantIssue{{"risks_and_mitigations[0].impact", 2, 5, "", []string{"impact", "is required", "negligible"}}}},
		{"duration_bad", []wantIssue{{"deploy.steps[0].timeout", 5, 16, "2 hourz", []string{`"2 hourz" is not a duration`, `30s, 5m, 1h30m, "2 hours"`}}}},
		{"duration_no_unit", []wantIssue{{"monitor.window", 2, 11, "30", []string{`"30" is not a duration`}}}},
		{"duration_negative", []wantIssue{{"deploy.steps[0].wait.duration", 3, 38, "-5s", []string{"negative", "0 or more"}}}},
		{"url_scheme", []wantIssue{{"deploy.health[0].url", 5, 12, "ftp://api.internal/health", []string{"not an http:// or https:// URL with a host", "https://api.example.com/health"}}}},
		{"url_no_host", []wantIssue{{"report.notify[0].webhook.url", 3, 22, "https:///hook", []string{"with a host"}}}},
		{"check_no_kind", []wantIssue{{"preflight.checks[0]", 3, 7, "", []string{"needs exactly one of http, tcp, env, command, postgres, redis, nats, resources, file", "none is set"}}}},
		{"check_two_kinds", []wantIssue{{"preflight.checks[0]", 3, 7, "", []string{"sets http and tcp", "exactly one of"}}}},
		{"step_no_kind", []wantIssue{{"deploy.steps[0]", 3, 7, "", []string{"exactly one of command, http, wait", "none is set"}}}},
		{"step_two_kinds", []wantIssue{{"deploy.steps[0]", 3, 7, "", []string{"sets command and wait"}}}},
		{"step_text_in_deploy", []wantIssue{{"deploy.steps[0]", 3, 7, "restart the service", []string{"must be a mapping with exactly one of command, http, wait, restore, sql, backup;", "only in rollback_plan.rollback_steps"}}}},
		{"finally_text", []wantIssue{{"deploy.finally[0]", 5, 7, "restore traffic", []string{"only in rollback_plan.rollback_steps"}}}},
		{"argv_empty", []wantIssue{{"deploy.steps[0].command.argv", 4, 23, "", []string{"argv must list the program and its arguments", "without a shell"}}}},
		{"argv_string", []wantIssue{{"deploy.steps[0].command.argv", 5, 15, "systemctl restart api", []string{"must be a list", `got the text "systemctl restart api"`}}}},
		{"http_method", []wantIssue{{"deploy.steps[0].http.method", 4, 22, "FETCH", []string{`"FETCH" is not an HTTP method`, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}}}},
		{"http_body_json", []wantIssue{{"deploy.steps[0].http", 4, 13, "", []string{"body or json, not both"}}}},
		{"threshold_negative", []wantIssue{{"monitor.thresholds.error_rate", 5, 17, "-0.5", []string{"must not be negative", "0 or more"}}}},
		{"threshold_unknown", []wantIssue{{"monitor.thresholds.eror_rate", 3, 16, "0.02", []string{`"eror_rate" is not a metric`, `did you mean "error_rate"?`, "api_response_time_p95, error_rate, cpu_utilization, memory_usage, active_connections"}}}},
		{"source_none", []wantIssue{{"monitor.sources[0]", 3, 7, "", []string{"exactly one of http_probe, prometheus_scrape", "none is set"}}}},
		{"source_two", []wantIssue{{"monitor.sources[0]", 3, 7, "", []string{"sets http_probe and prometheus_scrape"}}}},
		{"load_vus", []wantIssue{{"test.load.vus", 3, 10, "0", []string{"vus must be more than 0"}}}},
		{"load_no_requests", []wantIssue{{"test.load.requests", 3, 5, "", []string{"a load test needs requests"}}}},
		{"timeline_start", []wantIssue{{"timeline.planned_start", 2, 18, "23/09/2025 02:00", []string{"not an RFC 3339 time", "2025-09-23T02:00:00Z"}}}},
		{"timeline_order", []wantIssue{{"timeline.planned_completion", 3, 23, "2025-09-23T02:00:00Z", []string{"is before planned start"}}}},
		{"notify_when", []wantIssue{{"report.notify[0].slack.when", 3, 53, "sometimes", []string{`"sometimes" is not a notify condition`, "always, failure, success"}}}},
		{"env_name", []wantIssue{{"report.notify[0].slack.webhook_env", 4, 22, "https://hooks.slack.com/services/T000/B000/XXX", []string{"not an environment variable name", "[A-Z_][A-Z0-9_]*"}}}},
		{"env_dsn", []wantIssue{{"preflight.checks[0].postgres.dsn_env", 3, 27, "postgres://u:p@db/app", []string{"not an environment variable name", "the value itself never goes in the plan"}}}},
		{"headers_env", []wantIssue{{"test.smoke[0].request.headers_env.Authorization", 5, 38, "api_token", []string{`"api_token" is not an environment variable name`}}}},
		{"type_int", []wantIssue{{"deploy.steps[0].retries", 5, 16, "three", []string{"must be a whole number", `got the text "three"`}}}},
		{"type_bool", []wantIssue{{"deploy.steps[0].idempotent", 5, 19, "yes", []string{"must be true or false"}}}},
		{"type_list", []wantIssue{{"deploy.steps", 3, 5, "", []string{"must be a list", "got a mapping"}}}},
		{"trigger_structured", []wantIssue{
			{"rollback_plan.trigger_conditions[0].value", 3, 7, "", []string{"value is required"}},
			{"rollback_plan.trigger_conditions[0].op", 3, 32, "=>", []string{`"=>" is not a comparison`, ">, >=, <, <="}},
		}},
		{"command_argv_and_shell", []wantIssue{{"deploy.steps[0].command", 4, 16, "", []string{"argv or shell, not both"}}}},
		{"shell_in_check", []wantIssue{{"preflight.checks[0].command.shell", 3, 24, "test -f /etc/app.conf", []string{"shell is allowed only in deploy, rollback and finally steps", "argv"}}}},
		{"sql_no_source", []wantIssue{{"deploy.steps[0].sql", 3, 12, "", []string{"needs file", "or statements", "one transaction"}}}},
		{"sql_both", []wantIssue{
			{"deploy.steps[0].sql", 4, 9, "", []string{"file or statements, not both"}},
			{"deploy.steps[0].sql.dsn_env", 4, 18, "postgres://u:p@db/app", []string{"not an environment variable name", "the value itself never goes in the plan"}},
		}},
		{"wait_until", []wantIssue{
			{"deploy.steps[0].wait.until.url", 3, 27, "ftp://api.internal/ready", []string{"not an http:// or https:// URL"}},
			{"deploy.steps[0].wait.until.expect_status", 3, 70, "999", []string{"not an HTTP status"}},
			{"deploy.steps[0].wait.until.interval", 3, 85, "0s", []string{"is zero"}},
		}},
		{"wait_both", []wantIssue{{"deploy.steps[0].wait", 3, 13, "", []string{"duration or until, not both"}}}},
		{"retry_delay", []wantIssue{{"deploy.steps[0].retry_delay", 3, 48, "-1s", []string{"negative"}}}},
		{"wait_no_duration", []wantIssue{{"deploy.steps[0].wait.duration", 3, 27, "", []string{"wait needs a duration"}}}},
		// References: a restore names a file the run's backup makes.
		{"restore_not_in_backup", []wantIssue{{"rollback_plan.rollback_steps[1].restore.file", 11, 23, "nginx.cof", []string{`"nginx.cof" is not in the backup`, `did you mean "nginx.conf"?`, "the plan's backups save nginx.conf, production.json"}}}},
		{"restore_no_backup", []wantIssue{{"rollback_plan.rollback_steps[0].restore.file", 5, 15, "model.bin", []string{"needs a backup to restore from", "the plan has none: add preflight.backup (or a backup step before the change)"}}}},
		{"restore_fields", []wantIssue{
			{"deploy.finally[0].restore.to", 9, 16, "", []string{"to (the path the file is restored to) is required"}},
			{"deploy.finally[0].restore.file", 9, 23, "../.env", []string{"not a name in the backup directory", "without .."}},
		}},
		{"backup_same_name", []wantIssue{
			{"preflight.backup.steps[1].stdout", 7, 17, "nginx.conf", []string{"already the name of the copy of \"/etc/nginx/nginx.conf\"", "two files cannot share a name"}},
			{"preflight.backup.steps[2].files[0]", 8, 17, "/srv/backup_metadata.json", []string{"the backup's own metadata file"}},
		}},
		// initial_delay: 0 is valid (it means no delay); attempts: 0 is not.
		{"health_attempts", []wantIssue{{"deploy.health[0].attempts", 5, 51, "0", []string{"attempts must be at least 1"}}}},
		// Health checks, wait.until and http steps take the smoke tests'
		// expect block, checked by the same rules.
		{"health_expect", []wantIssue{
			{"deploy.steps[0].http.expect.json.$.items.0.id", 5, 25, "", []string{`JSONPath "$.items.0.id" does not parse: jsonpath: invalid number literal at position 9`, "write the short form without $ (items.0.id)"}},
			{"deploy.steps[0].http.expect.body_contians", 5, 47, "body_contians", []string{`unknown field "body_contians" in deploy.steps[0].http.expect`, `did you mean "body_contains"?`, "allowed fields are status, max_ms, json, json_match, json_absent, headers, headers_match, body_contains"}},
			{"deploy.steps[1].wait.until.expect.status", 11, 21, "200", []string{"expect_status and expect.status both give the status", "write it once"}},
			{"deploy.steps[1].wait.until.expect.json_match.items[x]", 12, 26, "", []string{`"items[x]" is not a JSON path`, "brackets in a short path take an array index", "for quoted keys or filters write JSONPath from $"}},
			{"deploy.health[0].expect.json_absent[0]", 17, 23, "data.", []string{`"data." is not a JSON path`, "an empty key"}},
			{"deploy.health[0].expect.json_absent[1]", 17, 32, "", []string{"a JSON path is required"}},
			{"deploy.health[0].expect.headers_match.Content-Type", 18, 39, "[a", []string{"is not a regular expression"}},
		}},
		{"health_expect_unknown", []wantIssue{{"deploy.health[0].expect.jsn", 7, 9, "jsn", []string{`unknown field "jsn" in deploy.health[0].expect`, `did you mean "json"?`}}}},
		{"auto_rollback", []wantIssue{
			{"monitor.auto_rollback.metrics[1]", 3, 38, "latency", []string{`"latency" is not a metric`}},
			{"monitor.auto_rollback.factor", 4, 13, "0.5", []string{"factor must be at least 1", "150 %"}},
		}},
		{"email_to", []wantIssue{{"report.notify[0].email.to[0]", 3, 40, "ops.example.com", []string{"not an e-mail address"}}}},
		{"redis_both", []wantIssue{{"preflight.checks[0].redis", 3, 14, "", []string{"address or address_env, not both"}}}},
		{"redis_password_env", []wantIssue{{"preflight.checks[0].redis.password_env", 3, 52, "s3cret", []string{"not an environment variable name", "the value itself never goes in the plan"}}}},
		{"nats_both", []wantIssue{{"preflight.checks[0].nats", 3, 13, "", []string{"url or url_env, not both"}}}},
		{"tcp_no_port", []wantIssue{{"preflight.checks[0].tcp.address", 3, 22, "db.internal", []string{"not a TCP address", "host:port"}}}},
		{"interval_window", []wantIssue{{"monitor.interval", 3, 13, "5m", []string{"interval 5m is longer than the window 1m"}}}},
		{"status_range", []wantIssue{{"test.smoke[0].expect.status", 4, 24, "999", []string{"not an HTTP status", "100..599"}}}},
		{"resources_percent", []wantIssue{{"preflight.checks[0].resources.cpu_percent", 3, 32, "150", []string{"percentage above 0 and at most 100"}}}},
		{"alias_missing", []wantIssue{{"deploy.steps[0]", 3, 7, "", []string{"alias *nothing refers to no anchor"}}}},
		{"syntax", []wantIssue{{src("syntax"), 3, 10, `"unterminated`, []string{"YAML syntax", "double-quoted"}}}},
		{"duplicate_key", []wantIssue{{src("duplicate_key"), 3, 3, "id", []string{"YAML syntax", `"id" already defined`}}}},
		{"two_docs", []wantIssue{{src("two_docs"), 3, 1, "", []string{"2 YAML documents", "exactly one"}}}},
		{"empty", []wantIssue{{src("empty"), 0, 0, "", []string{"the plan is empty", "runbook init", "docs/plan-reference.md"}}}},
		{"top_list", []wantIssue{{src("top_list"), 1, 1, "", []string{"a plan must be a mapping", "got a list"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			p, issues := Parse(src(tc.file), read(t, src(tc.file)))
			if p != nil {
				t.Error("plan returned despite errors")
			}
			checkIssues(t, errorsOf(issues), tc.want)
		})
	}
}

func checkIssues(t *testing.T, got []Issue, want []wantIssue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:", len(got), len(want))
		for _, g := range got {
			t.Errorf("  %v (value %q)", g, g.Value)
		}
		return
	}
	for i, w := range want {
		g := got[i]
		if g.Path != w.path || g.Line != w.line || g.Column != w.column || g.Value != w.value {
			t.Errorf("error %d at %s %d:%d value %q, want %s %d:%d value %q (%s)", i, g.Path, g.Line, g.Column, g.Value, w.path, w.line, w.column, w.value, g.Message)
		}
		for _, c := range w.contains {
			if !strings.Contains(g.Message, c) {
				t.Errorf("error %d message %q does not contain %q", i, g.Message, c)
			}
		}
	}
}

// A plan with many mistakes reports every one of them, in file order.
func TestManyErrors(t *testing.T) {
	t.Parallel()
	_, issues := Parse("many_errors.yml", read(t, "invalid/many_errors.yml"))
	checkIssues(t, errorsOf(issues), []wantIssue{
		{"change_request.type", 3, 9, "feature", []string{"not a change type"}},
		{"change_request.priorty", 4, 3, "priorty", []string{`did you mean "priority"?`}},
		{"timeline.planned_start", 6, 18, "tomorrow", []string{"RFC 3339"}},
		{"deploy.steps[0].command.argv", 10, 23, "", []string{"argv must list"}},
		{"deploy.steps[1].http.method", 12, 22, "get", []string{`did you mean "GET"?`}},
		{"deploy.steps[1].http.url", 12, 32, "localhost:8080/x", []string{"http:// or https://"}},
		{"deploy.steps[1].timeout", 13, 16, "soon", []string{"not a duration"}},
		{"monitor.thresholds.cpu_utilization", 15, 33, "-1", []string{"must not be negative"}},
		{"test.load.vus", 17, 15, "-3", []string{"vus must be more than 0"}},
		{"report.notify[0]", 20, 7, "", []string{"sets slack and email"}},
	})
}

// Warnings never make a plan invalid.
func TestWarningsKeepThePlan(t *testing.T) {
	t.Parallel()
	p, issues := Parse("w.yml", []byte("change_request: {id: CR-1}\napproval:\n  technical_approval: {approver: A, timestamp: \"2025-01-01T00:00:00Z\"}\n"))
	if p == nil {
		t.Fatalf("plan is nil: %v", issues)
	}
	w := warningsOf(issues)
	if len(w) != 2 || w[0].Path != "approval.technical_approval.timestamp" || w[0].Line != 3 || w[0].Column != 48 || w[1].Path != "deploy.steps" {
		t.Errorf("warnings = %v", w)
	}
	if HasErrors(issues) {
		t.Error("HasErrors true for warnings only")
	}
}

func TestSplitNumbered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`1. "트래픽 차단" 2. "이전 모델 파일 복원" 3. "서비스 재시작"`, []string{"트래픽 차단", "이전 모델 파일 복원", "서비스 재시작"}},
		{"1. stop traffic\n2. restore v2.3.1\n3. start", []string{"stop traffic", "restore v2.3.1", "start"}},
		{"1) one 2) two", []string{"one", "two"}},
		// Numbers that do not count up from 1 stay inside the item.
		{"1. scale to 3. replicas 2. check", []string{"scale to 3. replicas", "check"}},
		{"restart everything", []string{"restart everything"}},
		{`"quoted whole"`, []string{"quoted whole"}},
		{"  ", nil},
		{"see 1. below", []string{"see 1. below"}},
	} {
		got := SplitNumbered(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("SplitNumbered(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// rollback_steps as one block text is split too, with the warning.
func TestRollbackStepsLiteral(t *testing.T) {
	t.Parallel()
	p, issues := Parse("r.yml", []byte("rollback_plan:\n  rollback_steps: |\n    1. stop\n    2. restore\n"))
	if p == nil {
		t.Fatal(issues)
	}
	if rs := p.RollbackPlan.RollbackSteps; len(rs) != 2 || rs[0].Text != "stop" || rs[1].Text != "restore" {
		t.Errorf("steps = %+v", rs)
	}
	if w := warningsOf(issues); len(w) != 2 || w[0].Path != "rollback_plan.rollback_steps" || w[0].Line != 2 {
		t.Errorf("warnings = %v", w)
	}
}

// A restore of any name is accepted when a backup step is a command (it may
// write any file into BACKUP_DIR); restore is a step kind everywhere.
func TestRestoreReferences(t *testing.T) {
	t.Parallel()
	p, issues := Parse("r.yml", []byte(`preflight:
  backup:
    steps:
      - {name: dump, command: {argv: [pg_dump, --file, db.sql]}, timeout: 1h}
      - {name: state, command: {argv: [docker, ps]}, stdout: docker_state.txt}
      - files: [/etc/nginx/nginx.conf]
deploy:
  steps:
    - {command: {argv: ["true"]}}
rollback_plan:
  rollback_steps:
    - {restore: {file: db.sql, to: /tmp/db.sql}}
    - {restore: {file: nginx.conf, to: /etc/nginx/nginx.conf}}
`))
	if p == nil || len(issues) != 0 {
		t.Fatalf("issues: %v", issues)
	}
	b := p.Preflight.Backup
	if got := strings.Join(b.KnownFiles(), ","); got != "docker_state.txt,nginx.conf" || !b.CommandSteps() || b.EffectiveDir() != DefaultBackupDir {
		t.Errorf("backup = %+v (known %s)", b, got)
	}
	if b.Steps[0].EffectiveTimeout() != time.Hour || b.Steps[2].EffectiveTimeout() != DefaultBackupStepTimeout || b.Steps[2].Label(2) != "files backup step 3" {
		t.Errorf("backup steps = %+v", b.Steps)
	}
	r := p.RollbackPlan.RollbackSteps[1]
	if r.Kind() != "restore" || r.Label() != "restore nginx.conf to /etc/nginx/nginx.conf" {
		t.Errorf("restore step kind %s label %s", r.Kind(), r.Label())
	}
	// Without the command steps, db.sql is a name nothing makes.
	_, issues = Parse("r.yml", []byte(`preflight:
  backup:
    steps:
      - files: [/etc/nginx/nginx.conf]
rollback_plan:
  rollback_steps:
    - {restore: {file: db.sql, to: /tmp/db.sql}}
`))
	checkIssues(t, errorsOf(issues), []wantIssue{{"rollback_plan.rollback_steps[0].restore.file", 7, 24, "db.sql", []string{`"db.sql" is not in the backup: the plan's backups save nginx.conf`}}})
}

// Only rollback_steps accepts one text for a list.
func TestStepsTextOnlyForRollback(t *testing.T) {
	t.Parallel()
	_, issues := Parse("d.yml", []byte("deploy:\n  steps: \"1. a 2. b\"\n"))
	checkIssues(t, errorsOf(issues), []wantIssue{{"deploy.steps", 2, 10, "1. a 2. b", []string{"must be a list"}}})
}

// x- extension fields hold anchors at the top level only.
func TestExtensionFields(t *testing.T) {
	t.Parallel()
	p, issues := Parse("x.yml", []byte("x-t: &t 45s\ndeploy:\n  steps:\n    - {wait: {duration: *t}}\n    - {x-note: hi, wait: {duration: 1s}}\n"))
	if p != nil {
		t.Fatal("x- accepted below the top level")
	}
	checkIssues(t, errorsOf(issues), []wantIssue{{"deploy.steps[1].x-note", 5, 8, "x-note", []string{"unknown field"}}})
	p, issues = Parse("x.yml", []byte("x-t: &t 45s\ndeploy:\n  steps:\n    - {wait: {duration: *t}}\n"))
	if p == nil || len(errorsOf(issues)) != 0 || p.Deploy.Steps[0].Wait.Duration.Duration != 45*time.Second {
		t.Fatalf("alias of an x- anchor: %v %v", p, issues)
	}
}
