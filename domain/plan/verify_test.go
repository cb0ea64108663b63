package plan

import (
	"reflect"
	"strings"
	"testing"
)

// verifyIssues parses suitesPlan with the given rollback_plan.verify and
// returns the issues under rollback_plan.verify.
func verifyIssues(t *testing.T, verify string) (*Plan, []Issue) {
	t.Helper()
	src := "change_request: {id: CR-1, title: verify, type: maintenance, priority: low}\n" +
		"rollback_plan:\n  verify: " + verify + "\n" + suitesPlan
	p, issues := Parse("verify.yaml", []byte(src))
	var out []Issue
	for _, i := range issues {
		if strings.HasPrefix(i.Path, "rollback_plan.verify") {
			out = append(out, i)
		} else if !i.Warning {
			t.Fatalf("unexpected issue: %v", i)
		}
	}
	return p, out
}

func TestRollbackVerifySuites(t *testing.T) {
	t.Parallel()
	p, issues := verifyIssues(t, "[critical_paths, api_endpoints]")
	if len(issues) > 0 || p == nil {
		t.Fatalf("issues: %v", issues)
	}
	if !reflect.DeepEqual(p.RollbackPlan.Verify, []string{"critical_paths", "api_endpoints"}) {
		t.Fatalf("verify %q", p.RollbackPlan.Verify)
	}
	steps, missing := p.Test.SuiteSteps([]string{"api_endpoints", "nope", "critical_paths"})
	var got []string
	for _, s := range steps {
		got = append(got, s.Suite+"/"+s.Name+"/"+s.Type+"@"+s.Path)
	}
	want := []string{
		"api_endpoints/estimate/regression@test.suites[1].steps[0]",
		"critical_paths/User Authentication/smoke@test.suites[0].steps[0]",
		"critical_paths/Estimate Creation/smoke@test.suites[0].steps[1]",
	}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(missing, []string{"nope"}) {
		t.Errorf("steps %q missing %q", got, missing)
	}
}

func TestRollbackVerifyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, verify string
		want         []string // each issue's String()
	}{
		{
			name:   "unknown suite, with a near miss",
			verify: "[critcal_paths]",
			want:   []string{`3:12 rollback_plan.verify[0]: "critcal_paths" is not a suite of test.suites (did you mean "critical_paths"?): use one of critical_paths, api_endpoints`},
		},
		{
			name:   "unknown suite, nothing near",
			verify: "[database]",
			want:   []string{`3:12 rollback_plan.verify[0]: "database" is not a suite of test.suites: use one of critical_paths, api_endpoints`},
		},
		{
			name:   "listed twice",
			verify: "[critical_paths, critical_paths]",
			want:   []string{`3:28 rollback_plan.verify[1]: suite "critical_paths" is already listed at rollback_plan.verify[0]: list each suite once`},
		},
		{
			name:   "empty name",
			verify: `[""]`,
			want:   []string{`3:12 rollback_plan.verify[0]: a suite name is required: name a suite of test.suites (one of critical_paths, api_endpoints)`},
		},
		{
			// api_endpoints uses ${estimate_id}, which critical_paths captures.
			name:   "a value captured by a suite not run before it",
			verify: "[api_endpoints, critical_paths]",
			want: []string{`3:12 rollback_plan.verify[0]: suite "api_endpoints" uses ${estimate_id} (test.suites[1].steps[0]), which test.suites[0].steps[1] captures: ` +
				`a rollback verification runs only the suites listed here, in this order; list suite "critical_paths" before "api_endpoints"`},
		},
		{
			name:   "the same, the capturing suite not listed",
			verify: "[api_endpoints]",
			want: []string{`3:12 rollback_plan.verify[0]: suite "api_endpoints" uses ${estimate_id} (test.suites[1].steps[0]), which test.suites[0].steps[1] captures: ` +
				`a rollback verification runs only the suites listed here, in this order; list suite "critical_paths" before "api_endpoints"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, issues := verifyIssues(t, tc.verify)
			var got []string
			for _, i := range issues {
				got = append(got, i.String())
			}
			if !reflect.DeepEqual(got, tc.want) || p != nil {
				t.Errorf("issues:\n got %q\nwant %q (plan %v)", got, tc.want, p != nil)
			}
		})
	}
}

// A plan without test.suites cannot name one to verify with.
func TestRollbackVerifyWithoutSuites(t *testing.T) {
	t.Parallel()
	src := "change_request: {id: CR-1, title: verify}\nrollback_plan:\n  verify: [critical_paths]\n"
	p, all := Parse("verify.yaml", []byte(src))
	var issues []Issue
	for _, i := range all {
		if !i.Warning {
			issues = append(issues, i)
		}
	}
	if p != nil || len(issues) != 1 || issues[0].Path != "rollback_plan.verify[0]" || issues[0].Line != 3 ||
		!strings.Contains(issues[0].Message, "the plan has no test.suites") {
		t.Fatalf("issues %v", issues)
	}
}
