package plan

import (
	"strings"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// FromChangeRequest is the one strict reading of a run's plan: the plan
// text its change.requested carries (plan_yaml, named by plan_source),
// parsed and validated as `runbook validate` does. It returns nil and every
// issue (errors and warnings) when the plan does not parse; pre-flight
// turns those into change.rejected, and nothing else runs such a plan.
// Every service that reads a run's plan goes through it (eventbus/runplan
// when it reads the event from the bus); only the report reads old plans
// leniently, for the fields it names.
func FromChangeRequest(cr *runbookv1.ChangeRequested) (*Plan, []Issue) {
	return Parse(cr.GetPlanSource(), []byte(cr.GetPlanYaml()))
}

// Errors joins the errors among issues (warnings left out) with "; ".
func Errors(issues []Issue) string {
	var msgs []string
	for _, i := range issues {
		if !i.Warning {
			msgs = append(msgs, i.String())
		}
	}
	return strings.Join(msgs, "; ")
}
