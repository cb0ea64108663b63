package plan

import (
	"strings"
	"testing"
	"time"
)

const startPlan = gatesHead + `deploy:
  steps:
    - {name: maintenance on, command: {argv: ["true"]}}
    - {name: migrate, command: {argv: ["true"]}}
    - {name: switch, command: {argv: ["true"]}}
    - {name: reload, command: {argv: ["true"]}}
  health:
    - {url: "http://app/health", attempts: 5, interval: 10s, timeout: 5s}
  finally:
    - {name: maintenance off, command: {argv: ["true"]}}
rollback_plan:
  rollback_steps:
    - {name: switch back, command: {argv: ["true"]}}
monitor:
  window: 5m
  sources:
    - http_probe: {url: "http://app/"}
`

func TestMonitorStart(t *testing.T) {
	t.Parallel()
	p, issues := Parse("p.yaml", []byte(startPlan))
	if p == nil || HasErrors(issues) {
		t.Fatalf("valid plan refused: %v", issues)
	}
	if p.Monitor.EffectiveStart() != StartDeployDone || p.Monitor.JudgesDuringDeploy() {
		t.Errorf("default start = %q; want deploy_done", p.Monitor.EffectiveStart())
	}
	least, most := p.Deploy.HealthGateTime()
	// 30s initial delay (default); 5 attempts of at most 5s, 4 pauses of 10s.
	if least != 30*time.Second || most != 30*time.Second+25*time.Second+40*time.Second {
		t.Errorf("health gate time = %s..%s", least, most)
	}
	want := "opens at deploy.done: after the 4 deploy steps, the health gate (initial delay 30s, up to 1m35s) and 1 finally step; judged for 5m (closes at deploy.done + 5m); samples during the deploy recorded, not judged"
	if got := p.Monitor.WindowText(p.Deploy); got != want {
		t.Errorf("WindowText =\n%s\nwant\n%s", got, want)
	}

	p, issues = Parse("p.yaml", []byte(startPlan+"  start: deploy_started\n"))
	if p == nil || HasErrors(issues) {
		t.Fatalf("deploy_started refused: %v", issues)
	}
	if !p.Monitor.JudgesDuringDeploy() {
		t.Error("start: deploy_started does not judge during the deploy")
	}
	want = "opens at deploy.started (monitor.start: deploy_started): the 4 deploy steps, the health gate (initial delay 30s, up to 1m35s) and 1 finally step are judged too; judged for 5m (closes at deploy.started + 5m)"
	if got := p.Monitor.WindowText(p.Deploy); got != want {
		t.Errorf("WindowText =\n%s\nwant\n%s", got, want)
	}

	// A window judged from deploy.started that ends before the health gate
	// can pass: warned.
	short := strings.Replace(startPlan, "window: 5m", "window: 5s\n  interval: 1s", 1) + "  start: deploy_started\n"
	p, issues = Parse("p.yaml", []byte(short))
	if p == nil || len(issues) != 1 || !issues[0].Warning || issues[0].Path != "monitor.start" ||
		!strings.Contains(issues[0].Message, "closes before the health gate's initial delay (30s) ends") {
		t.Fatalf("issues = %v; want one warning on monitor.start", issues)
	}
	if got := p.Monitor.WindowText(p.Deploy); !strings.Contains(got, "CLOSES BEFORE THE HEALTH GATE'S INITIAL DELAY (30s) ENDS") {
		t.Errorf("WindowText = %s", got)
	}

	// start: banana is an error naming the field, its line, the value and
	// the values allowed.
	p, issues = Parse("p.yaml", []byte(startPlan+"  start: banana\n"))
	if p != nil || len(issues) != 1 {
		t.Fatalf("start: banana accepted: %v", issues)
	}
	is := issues[0]
	if is.Warning || is.Path != "monitor.start" || is.Line != strings.Count(startPlan, "\n")+1 || is.Value != "banana" ||
		!strings.Contains(is.Message, `"banana" is not when the monitor starts judging`) ||
		!strings.Contains(is.Message, "deploy_done (the default") || !strings.Contains(is.Message, "or deploy_started") {
		t.Errorf("issue = %+v (%s)", is, is)
	}
}

func TestWindowTextWithoutHealthOrSteps(t *testing.T) {
	t.Parallel()
	m := Monitor{Window: Duration{Duration: 4 * time.Second, Raw: "4s"}}
	if got, want := m.WindowText(Deploy{}), "opens at deploy.done (the deploy has no steps); judged for 4s (closes at deploy.done + 4s); samples during the deploy recorded, not judged"; got != want {
		t.Errorf("no steps: %s", got)
	}
	d := Deploy{Steps: make([]Step, 1), Health: make([]HealthCheck, 2)}
	if got, want := m.WindowText(d), "opens at deploy.done: after the 1 deploy step and the health gate (2 checks, initial delays 1m in all, up to 5m40s)"; !strings.HasPrefix(got, want) {
		t.Errorf("two health checks: %s", got)
	}
}
