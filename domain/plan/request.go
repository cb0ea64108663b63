package plan

import (
	"crypto/sha256"
	"strings"

	"github.com/kis-core/runbook/domain/memo"
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
//
// A run's plan is read by every service for most events it handles, and
// parsing is pure: the result is memoised (bounded) by the text's hash.
// The returned plan is shared with other readers: treat it as read-only.
func FromChangeRequest(cr *runbookv1.ChangeRequested) (*Plan, []Issue) {
	key := TextKey(cr)
	if r, ok := parsed.Get(key); ok {
		return r.plan, r.issues
	}
	p, issues := Parse(cr.GetPlanSource(), []byte(cr.GetPlanYaml()))
	parsed.Put(key, parseResult{p, issues})
	return p, issues
}

// TextKey identifies the plan text a change.requested carries (its
// source's name and its YAML): the key under which what is read from it
// is memoised.
func TextKey(cr *runbookv1.ChangeRequested) [32]byte {
	h := sha256.New()
	h.Write([]byte(cr.GetPlanSource()))
	h.Write([]byte{0})
	h.Write([]byte(cr.GetPlanYaml()))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

type parseResult struct {
	plan   *Plan
	issues []Issue
}

// parsed memoises FromChangeRequest: the plans of the runs in flight.
var parsed = memo.New[[32]byte, parseResult](256)

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
