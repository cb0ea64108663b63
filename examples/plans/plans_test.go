package plans_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/examples/plans"
)

// parse runs the real validator and fails on any error (warnings are logged).
func parse(t *testing.T, name string, data []byte) *plan.Plan {
	t.Helper()
	p, issues := plan.Parse(name, data)
	for _, is := range issues {
		if is.Warning {
			t.Logf("%s: warning: %s", name, is)
			continue
		}
		t.Errorf("%s: %s", name, is)
	}
	if p == nil {
		t.Fatalf("%s: plan.Parse returned no plan", name)
	}
	return p
}

func TestExamplePlansAreValid(t *testing.T) {
	t.Parallel()
	for _, name := range plans.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := plans.Source(name)
			if err != nil {
				t.Fatal(err)
			}
			// A plain decode works as well as the validator.
			var plain plan.Plan
			if err := yaml.Unmarshal(src, &plain); err != nil {
				t.Fatalf("goccy/go-yaml: %v", err)
			}
			p := parse(t, name, src)
			if len(p.Approval) != 0 {
				t.Error("an example plan must not ask for approvals: the demo would wait")
			}
			checkShape(t, name, p)
		})
	}
}

// checkShape pins what the demo and the end-to-end tests rely on.
func checkShape(t *testing.T, name string, p *plan.Plan) {
	t.Helper()
	release := map[string]string{plans.Good: "v2.4.0", plans.BadRelease: "v2.4.1-bad"}[name]
	want := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %s", name, what)
		}
	}
	want("4 pre-flight checks (http, tcp, env, command)", len(p.Preflight.Checks) == 4 &&
		p.Preflight.Checks[0].HTTP != nil && p.Preflight.Checks[1].TCP != nil &&
		p.Preflight.Checks[2].Env != nil && p.Preflight.Checks[3].Command != nil)
	want("one deploy step copying "+release, len(p.Deploy.Steps) == 1 && p.Deploy.Steps[0].Command != nil &&
		p.Deploy.Steps[0].Idempotent && p.Deploy.Steps[0].Timeout.Duration == 30*time.Second &&
		strings.Join(p.Deploy.Steps[0].Command.Argv, " ") ==
			fmt.Sprintf("cp .demo/estimator/releases/%s.json .demo/estimator/current-release.json", release))
	want("one health gate without initial delay, waiting for "+release, len(p.Deploy.Health) == 1 && p.Deploy.Health[0].Attempts == 5 &&
		p.Deploy.Health[0].InitialDelay.IsSet() && p.Deploy.Health[0].InitialDelay.Duration == 0 &&
		p.Deploy.Health[0].Expectation().JSON["$.release"] == release)

	var restore, text int
	for _, s := range p.RollbackPlan.RollbackSteps {
		switch {
		case s.Text != "":
			text++
		case s.Command != nil && strings.Join(s.Command.Argv, " ") ==
			"cp .demo/estimator/releases/v2.4.0.json .demo/estimator/current-release.json":
			restore++
		case s.Restore != nil && s.Restore.File == "current-release.json" && s.Restore.To == ".demo/estimator/current-release.json":
			restore++ // from the run's own backup (bad-release.yaml)
		}
	}
	want("text rollback steps and one restoring the release", restore == 1 && text > 0)
	if name == plans.BadRelease {
		b := p.Preflight.Backup
		want("a backup of the release switch that the restore step uses", b != nil && b.Dir == ".demo/estimator/backups" &&
			len(b.Steps) == 1 && strings.Join(b.Steps[0].Files, " ") == ".demo/estimator/current-release.json")
	}
	var structured int
	for _, c := range p.RollbackPlan.TriggerConditions {
		if c.Metric != "" {
			structured++
		}
	}
	want("2 structured trigger conditions", structured == 2)

	m := p.Monitor
	want("a 12s/2s watch window with 2 sources", m.Window.Duration == 12*time.Second &&
		m.Interval.Duration == 2*time.Second && len(m.Sources) == 2 &&
		m.Sources[0].HTTPProbe != nil && m.Sources[1].PrometheusScrape != nil)
	want("the seed's five thresholds", len(m.Thresholds) == 5 && m.Thresholds["api_response_time_p95"] == 2100 &&
		m.Thresholds["error_rate"] == 0.01)
	want("auto-rollback at 150 %", m.AutoRollback != nil && m.AutoRollback.Factor == 1.5 && len(m.AutoRollback.Metrics) == 2)

	steps := p.Test.SmokeSteps()
	want("the seed's smoke suites: 9 tests in 5 suites, the token captured by the login and used after it",
		len(steps) == 9 && len(p.Test.Suites) == 5 && p.Test.Suites[0].Name == "critical_paths" &&
			steps[0].Capture["token"] == "$.token" && steps[1].Request.Headers["Authorization"] == "Bearer ${token}" &&
			p.Test.Suites[4].Type == "performance")
	want("a small load test", p.Test.Load != nil && p.Test.Load.VUs == 5 &&
		p.Test.Load.Duration.Duration == 5*time.Second && len(p.Test.Load.Requests) == 2 &&
		p.Test.Load.Gates.P95MS == 2100 && p.Test.Load.Gates.ErrorRate == 0.01)
}

func TestRenderPointsThePlanAtAnotherEstimator(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "estimator")
	for _, name := range plans.Names() {
		b, err := plans.Render(name, "127.0.0.1:34567", dir)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); strings.Contains(s, plans.Addr) || strings.Contains(s, plans.StateDir) {
			t.Fatalf("%s: Render left the defaults in place", name)
		}
		p := parse(t, name, b)
		if got := p.Preflight.Checks[0].HTTP.URL; got != "http://127.0.0.1:34567/api/v1/health" {
			t.Errorf("%s: health check url = %s", name, got)
		}
		if got := p.Preflight.Checks[1].TCP.Address; got != "127.0.0.1:34567" {
			t.Errorf("%s: tcp check = %s", name, got)
		}
		if got := p.Deploy.Steps[0].Command.Argv[2]; got != filepath.Join(dir, "current-release.json") {
			t.Errorf("%s: deploy target = %s", name, got)
		}
	}
	if _, err := plans.Render(plans.Good, `a"b`, "x"); err == nil {
		t.Error("Render accepted an address that breaks the YAML")
	}
}

// The example plans name the schema on their first line, so that editors
// with a YAML language server check them as they are typed.
func TestExamplePlansNameTheSchema(t *testing.T) {
	t.Parallel()
	for _, name := range plans.All() {
		src, err := plans.Source(name)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(src), "\n")
		if first != plans.SchemaLine {
			t.Errorf("%s: first line %q, want %q", name, first, plans.SchemaLine)
		}
	}
}

// minimal.yaml is valid as written, without a single warning: it is the
// plan a newcomer starts from (runbook init).
func TestMinimalPlanIsCleanAsWritten(t *testing.T) {
	t.Parallel()
	src, err := plans.Source(plans.Minimal)
	if err != nil {
		t.Fatal(err)
	}
	p, issues := plan.Parse(plans.Minimal, src)
	for _, is := range issues {
		t.Errorf("%s: %s (warning %v)", plans.Minimal, is, is.Warning)
	}
	if p == nil {
		t.Fatal("no plan")
	}
	if len(p.Preflight.Checks) != 1 || len(p.Deploy.Steps) != 1 || len(p.Deploy.Health) != 1 ||
		!p.RollbackPlan.HasExecutableStep() || len(p.Monitor.Sources) != 1 || len(p.Test.Smoke) != 1 {
		t.Errorf("minimal.yaml should have a health check, one deploy step, a health gate, an executable rollback step, a monitor source and a smoke test")
	}
}

func TestInitPointsTheMinimalPlanAtTheService(t *testing.T) {
	t.Parallel()
	b, err := plans.Init("estimator", "https://10.0.0.7:9443/", "/api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, gone := range []string{plans.InitName, plans.InitURL, plans.SchemaLine} {
		if strings.Contains(s, gone) {
			t.Errorf("Init left %q in the plan", gone)
		}
	}
	p := parse(t, "init.yaml", b)
	if got := p.Preflight.Checks[0].HTTP.URL; got != "https://10.0.0.7:9443/api/v1/health" {
		t.Errorf("health check url = %s", got)
	}
	if got := p.Test.Smoke[0].Request.URL; got != "https://10.0.0.7:9443/api/v1/health" {
		t.Errorf("smoke test url = %s", got)
	}
	if got := p.ChangeRequest.Title; got != "deploy estimator" {
		t.Errorf("title = %q", got)
	}
	if !strings.Contains(s, "runbook schema > plan.schema.json") {
		t.Error("the plan does not say how editors get the schema")
	}
	for _, bad := range []struct{ name, url, health, flag string }{
		{"my service", plans.InitURL, "/health", "--name"},
		{"x'y", plans.InitURL, "/health", "--name"},
		{"svc", "ftp://host", "/health", "--url"},
		{"svc", "127.0.0.1:8080", "/health", "--url"},
		{"svc", `http://a"b`, "/health", "--url"},
		{"svc", plans.InitURL, "health", "--health"},
	} {
		if _, err := plans.Init(bad.name, bad.url, bad.health); err == nil || !strings.Contains(err.Error(), bad.flag) {
			t.Errorf("Init(%q, %q, %q) = %v, want an error naming %s", bad.name, bad.url, bad.health, err, bad.flag)
		}
	}
}
