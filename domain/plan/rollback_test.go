package plan

import (
	"strings"
	"testing"
)

// A plan that deploys with no executable rollback step: validate warns at
// rollback_plan.rollback_steps that a failure undoes nothing, and counts
// the described steps; with one executable step, or with nothing deployed,
// it does not.
func TestNothingUndoneWarning(t *testing.T) {
	t.Parallel()
	const deploy = "deploy:\n  steps:\n    - {command: {argv: [\"false\"]}}\n"
	cases := []struct {
		name, yaml string
		warn       string // "" = no warning
	}{
		{"no rollback steps", deploy, "(the plan has no rollback steps)"},
		{"described steps only", deploy + "rollback_plan:\n  rollback_steps:\n    - \"트래픽 차단\"\n    - \"call the DBA\"\n", "(its 2 described step(s) become the operator's to-do)"},
		{"an executable step", deploy + "rollback_plan:\n  rollback_steps:\n    - \"트래픽 차단\"\n    - {command: {argv: [\"true\"]}}\n", ""},
		{"nothing deployed", "rollback_plan:\n  rollback_steps:\n    - \"트래픽 차단\"\n", ""},
	}
	for _, c := range cases {
		p, issues := Parse("p.yml", []byte(c.yaml))
		if p == nil {
			t.Fatalf("%s: %v", c.name, issues)
		}
		var got []Issue
		for _, w := range warningsOf(issues) {
			if w.Path == "rollback_plan.rollback_steps" && strings.HasPrefix(w.Message, NoExecutableRollbackWarning) {
				got = append(got, w)
			}
		}
		switch {
		case c.warn == "" && len(got) > 0:
			t.Errorf("%s: unexpected warning %v", c.name, got)
		case c.warn != "" && (len(got) != 1 || !strings.Contains(got[0].Message, c.warn)):
			t.Errorf("%s: warnings %v, want one containing %q", c.name, got, c.warn)
		}
		if p.NothingUndoneOnFailure() != (c.warn != "") {
			t.Errorf("%s: NothingUndoneOnFailure = %v", c.name, p.NothingUndoneOnFailure())
		}
	}
	want := NothingUndone + "; rollback requested: deploy failed at x: exit 1; to do by hand (the plan's described rollback steps): 1. 트래픽 차단 2. call the DBA"
	if got := NothingUndoneReason("deploy failed at x: exit 1", []string{"트래픽 차단", "call the DBA"}); got != want {
		t.Errorf("NothingUndoneReason = %q, want %q", got, want)
	}
}
