package planview

import (
	"os"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
)

func describe(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile("../testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	p, issues := plan.Parse(file, data)
	if p == nil {
		t.Fatalf("%s: %v", file, issues)
	}
	return Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
}

func contains(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("description lacks %q:\n%s", w, text)
		}
	}
}

func TestDescribeSeed(t *testing.T) {
	t.Parallel()
	d := describe(t, "seed_template.yml")
	contains(t, d,
		"CHANGE CR-2025-001",
		"enhancement, priority medium",
		"estimated 2 hours (2h)",
		"steps: none — nothing will be changed",
		"3. [manual] 서비스 \ufffd시\ufffd",
		"4. [manual] 테스트 실행 (described, done by people)",
		"(text: shown to people, not watched)",
		"estimated rollback time: 30 minutes (30m)",
		"sources: none — nothing to watch",
		"none — the tests pass at once",
		`R001 "AI 모`,
		"2 × 4 = 8 MEDIUM",
		`probability "low" = 2; impact "high" (template word) scored as major = 4`,
		"R002",
		"3 × 3 = 9 MEDIUM",
		`impact "medium" (template word) scored as moderate = 3`,
		"overall: MEDIUM (max score 9); executive approval not required",
		"- business_approval (approver: ",
		"- security_approval (approver: Security Officer)",
		"- technical_approval (approver: Lead Architect)",
	)
	if strings.Contains(d, "executive_approval") {
		t.Error("executive approval listed for a MEDIUM plan")
	}
}

func TestDescribeFullPlan(t *testing.T) {
	t.Parallel()
	d := describe(t, "full_plan.yml")
	contains(t, d,
		"1. api up [http] GET https://api.example.com/health → 200, ≤ 500 ms · timeout 5s · blocking",
		"5. db [postgres] connect $DATABASE_URL, run select 1 · timeout 5s · blocking",
		"6. cache [redis] PING $REDIS_ADDR, AUTH with $REDIS_PASSWORD · timeout 5s · blocking",
		"7. bus [nats] connect nats://127.0.0.1:4222 · timeout 5s · blocking",
		"8. host [resources] CPU ≤ 90%, memory ≤ 85%, disk /var ≤ 90% · timeout 5s · warning only",
		"9. model file [file] exists and readable ./model.bin · timeout 5s · warning only",
		"backup to ./backups",
		"2. deploy model [command] ./scripts/deploy.sh v2.4.0 · timeout 2m · retries 2 · idempotent",
		"3. warm up [wait] 30s",
		"5 attempts every 2s after 0s (5s each)",
		"finally (always, after the steps):",
		"- error_rate > 0.01 (shown to people: the monitor judges monitor.thresholds and monitor.gates)",
		"window 10m, sample every 15s, baseline: up to 45s of samples before the deploy starts (default)",
		"api_response_time_p95  max 1800 ms (critical 3600 ms = 1800 × 2 → rollback), fails on 1 sample, no data: fail after 3",
		"error_rate             max 0.02 (2%) (no critical bound: every breach a WARNING, no rollback)",
		"not watched (no source reports them): active_connections 1000 (default), cpu_utilization 80% (default), memory_usage 85% (default)",
		"auto-rollback when api_response_time_p95 > 3600, or no data for 3 samples in a row\n",
		"load: 10 virtual users for 1m (closed model), think 0s, 1 request(s) per iteration",
		"pass when p95 ≤ 1500 ms and error rate ≤ 0 (0%)\n",
		"on failure: no rollback",
		"3. email to ops@example.com via $SMTP_URL (failure)",
		"overall: MEDIUM (max score 8)",
	)
}

func TestDescribeExecutiveApproval(t *testing.T) {
	t.Parallel()
	p, issues := plan.Parse("x.yml", []byte("risks_and_mitigations:\n  - {risk: db loss, probability: high, impact: critical}\napproval:\n  technical_approval: {approver: Lead}\n"))
	if p == nil {
		t.Fatal(issues)
	}
	d := Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
	contains(t, d,
		`R001 "db loss": 4 × 5 = 20 CRITICAL — executive approval required`,
		`impact "critical" (template word) scored as severe = 5`,
		"overall: CRITICAL (max score 20); executive approval REQUIRED",
		"- technical_approval (approver: Lead)",
		"- executive_approval (the overall risk is CRITICAL)",
	)
}

func TestDescribeStepKinds(t *testing.T) {
	t.Parallel()
	text := describe(t, "step_kinds.yml")
	contains(t, text,
		"migrate [sql] migrations/001.sql in one transaction on $DATABASE_URL (rolled back on any error)",
		"sql (2 statements) [sql] 2 statement(s) in one transaction",
		`[command] /bin/sh -c "set -e; systemctl restart api"`,
		"retries 2 (backoff 3s, doubling)",
		"[wait] until GET https://api.example.com/ready → 204, every 2s, at most 1m",
		"[wait] 5s",
	)
}

// Health checks, wait.until and http steps show every assertion they wait
// for or require, with its value.
func TestDescribeResponseExpectations(t *testing.T) {
	t.Parallel()
	p, issues := plan.Parse("x.yml", []byte(`deploy:
  steps:
    - name: switch
      http:
        url: "http://a.internal/switch"
        expect_status: 202
        expect: {json: {switched: true}}
    - name: new release up
      wait:
        until:
          url: "http://a.internal/health"
          interval: 1s
          expect: {json: {$.release: new, version: 2}, headers: {X-Release: "*"}}
  health:
    - url: "http://a.internal/health"
      attempts: 5
      interval: 2s
      initial_delay: 0s
      expect:
        status: 200
        json: {$.release: new, build: "*"}
        json_match: {version: '^2\.'}
        json_absent: [error]
        headers_match: {Content-Type: '^application/json'}
        body_contains: [ok]
        max_ms: 500
`))
	if p == nil {
		t.Fatal(issues)
	}
	d := Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
	contains(t, d,
		`switch [http] POST http://a.internal/switch → 202, switched = true · timeout`,
		`new release up [wait] until GET http://a.internal/health → 2xx, $.release = "new", version = 2, header X-Release present, every 1s`,
		`1. GET http://a.internal/health until 200, $.release = "new", build exists, version ~ /^2\./, no error, header Content-Type ~ /^application/json/, body contains "ok", ≤ 500 ms: 5 attempts every 2s after 0s (5s each)`,
	)
}

// A backup step shows when it runs (its place in the deploy), that its
// files join the run's backup, and each of its backup steps — a shell
// pipeline as the plan's own script; without preflight.backup, pre-flight
// says where the run's backup directory is made.
func TestDescribeBackupStep(t *testing.T) {
	t.Parallel()
	p, issues := plan.Parse("x.yml", []byte(`deploy:
  steps:
    - name: "1. block traffic"
      command: {argv: [cp, maintenance.conf, nginx.conf]}
    - name: "3. backup"
      backup:
        dir: /backups
        steps:
          - name: database
            command: {shell: 'pg_dump kis_db | gzip > "$BACKUP_DIR/database.sql.gz"'}
          - files: [/etc/nginx/nginx.conf]
rollback_plan:
  rollback_steps:
    - {restore: {file: nginx.conf, to: /etc/nginx/nginx.conf}}
`))
	if p == nil {
		t.Fatal(issues)
	}
	d := Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
	contains(t, d,
		"backup: none in pre-flight; the first backup step makes the run's backup directory /backups/<run id>-YYYYMMDD_HHMMSS (the deploy's start)",
		"  2. 3. backup [backup] now, into the run's backup directory (pre-flight's, else made now); its files join backup_metadata.json once all are saved · timeout 1h · retries 0 · idempotent\n"+
			`    1. database [command] /bin/sh -c "pg_dump kis_db | gzip > \"$BACKUP_DIR/database.sql.gz\"" (the plan's own script; run data only as RUNBOOK_* environment) · timeout 30m`+"\n"+
			"    2. files backup step 2 [files] /etc/nginx/nginx.conf · timeout 30m\n",
	)
}
