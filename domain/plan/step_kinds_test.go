package plan

import (
	"strings"
	"testing"
	"time"
)

// The step kinds of issue 4: sql, a command's shell, wait until, retry_delay.
func TestStepKinds(t *testing.T) {
	t.Parallel()
	p, issues := Parse("step_kinds.yml", read(t, "step_kinds.yml"))
	if p == nil {
		t.Fatalf("step_kinds.yml: %v", issues)
	}
	s := p.Deploy.Steps
	var kinds []string
	for _, st := range s {
		kinds = append(kinds, st.Kind())
	}
	if len(s) != 5 || s[0].Kind() != "sql" || s[1].Kind() != "sql" || s[2].Kind() != "command" || s[3].Kind() != "wait" || s[4].Kind() != "wait" {
		t.Fatalf("kinds %v", kinds)
	}
	if s[0].SQL.File != "migrations/001.sql" || s[0].Label() != "migrate" || len(s[1].SQL.Statements) != 2 || s[1].Label() != "sql (2 statements)" {
		t.Errorf("sql steps %+v %+v label %q", s[0].SQL, s[1].SQL, s[1].Label())
	}
	if s[2].Command.Shell != "set -e; systemctl restart api" || len(s[2].Command.Argv) != 0 || s[2].EffectiveRetryDelay() != 3*time.Second {
		t.Errorf("shell step %+v retry delay %s", s[2].Command, s[2].EffectiveRetryDelay())
	}
	u := s[3].Wait.Until
	if u == nil || u.URL != "https://api.example.com/ready" || u.ExpectStatus != 204 || u.EffectiveInterval() != 2*time.Second || u.Timeout.Duration != time.Minute || s[3].Label() != "wait until https://api.example.com/ready" {
		t.Errorf("wait until %+v label %q", u, s[3].Label())
	}
	if s[4].Wait.Until != nil || s[4].EffectiveRetryDelay() != time.Second || (WaitUntil{}).EffectiveInterval() != 5*time.Second {
		t.Errorf("defaults: %+v %s", s[4].Wait, s[4].EffectiveRetryDelay())
	}
	long := Step{Command: &Command{Shell: "echo one\necho two"}}
	if long.Label() != "sh -c echo one …" {
		t.Errorf("shell label %q", long.Label())
	}
}

// sql.if_exists: a file that may be missing (the seed's pending.sql);
// with statements it means nothing and is refused at its line.
func TestSQLIfExists(t *testing.T) {
	t.Parallel()
	const head = "change_request: {id: CR-S, title: sql}\ndeploy:\n  steps:\n"
	p, issues := Parse("p.yaml", []byte(head+"    - sql: {dsn_env: DB_URL, file: migrations/pending.sql, if_exists: true}\n"))
	if p == nil || !p.Deploy.Steps[0].SQL.IfExists {
		t.Fatalf("if_exists with a file: %v", issues)
	}
	_, issues = Parse("p.yaml", []byte(head+"    - sql: {dsn_env: DB_URL, statements: [\"SELECT 1\"], if_exists: true}\n"))
	i, ok := issueAt(issues, "deploy.steps[0].sql.if_exists")
	if !ok || i.Line != 4 || !strings.Contains(i.Message, "applies to file") {
		t.Errorf("if_exists with statements: %v", issues)
	}
}

// wait.until.successes: 1 to 100 checks in a row.
func TestWaitUntilSuccesses(t *testing.T) {
	t.Parallel()
	const head = "change_request: {id: CR-W, title: wait}\ndeploy:\n  steps:\n"
	p, issues := Parse("p.yaml", []byte(head+"    - wait: {until: {url: \"http://gw/health\", successes: 3}}\n"))
	if p == nil || HasErrors(issues) || p.Deploy.Steps[0].Wait.Until.EffectiveSuccesses() != 3 || (WaitUntil{}).EffectiveSuccesses() != 1 {
		t.Fatalf("successes: 3: %v", issues)
	}
	_, issues = Parse("p.yaml", []byte(head+"    - wait: {until: {url: \"http://gw/health\", successes: -1}}\n"))
	if i, ok := issueAt(issues, "deploy.steps[0].wait.until.successes"); !ok || i.Line != 4 || !strings.Contains(i.Message, "in a row") {
		t.Errorf("successes: -1: %v", issues)
	}
}
