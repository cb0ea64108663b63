package planview

import (
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
)

// rollback_plan.verify: validate says which suites re-run after a rollback
// and what their outcome decides.
func TestDescribeRollbackVerify(t *testing.T) {
	t.Parallel()
	p, issues := plan.Parse("x.yml", []byte(`rollback_plan:
  rollback_steps:
    - {name: switch back, http: {url: "http://a.internal/switch?to=old"}}
  verify: [critical_paths, api]
test:
  suites:
    - name: critical_paths
      steps:
        - {name: health, request: {url: "http://a.internal/health"}}
        - {name: login, request: {url: "http://a.internal/login"}}
    - name: api
      steps:
        - {name: estimates, request: {url: "http://a.internal/estimates"}}
    - name: perf
      steps:
        - {name: slow, request: {url: "http://a.internal/slow"}}
`))
	if p == nil {
		t.Fatal(issues)
	}
	d := Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
	contains(t, d, "  after the rollback: re-run smoke suites critical_paths, api (3 test(s)): all pass → ROLLED_BACK, any fails → ROLLBACK_FAILED\n")
}
