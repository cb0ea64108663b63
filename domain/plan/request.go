package plan

import (
	"crypto/sha256"
	"strings"
	"sync"

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
	key := sha256.Sum256([]byte(cr.GetPlanSource() + "\x00" + cr.GetPlanYaml()))
	if r, ok := parsed.get(key); ok {
		return r.plan, r.issues
	}
	p, issues := Parse(cr.GetPlanSource(), []byte(cr.GetPlanYaml()))
	parsed.put(key, parseResult{p, issues})
	return p, issues
}

type parseResult struct {
	plan   *Plan
	issues []Issue
}

// parsed memoises FromChangeRequest: the plans of the runs in flight.
var parsed = &memo{max: 256, m: map[[32]byte]parseResult{}}

// memo is a bounded map: when full, an arbitrary half is dropped (a plan
// dropped is parsed again on its next read).
type memo struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]parseResult
}

func (c *memo) get(k [32]byte) (parseResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *memo) put(k [32]byte, r parseResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		n := 0
		for old := range c.m {
			delete(c.m, old)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	c.m[k] = r
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
