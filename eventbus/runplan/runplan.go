// Package runplan loads the plan of a run from the run's own change.requested
// event: the plan text in the log is the only source of truth.
package runplan

import (
	"context"
	"errors"
	"fmt"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ErrNoRun is returned when the run has no change.requested event.
var ErrNoRun = errors.New("run has no change.requested event")

// Load returns the parsed plan of run runID and its change.requested event:
// the one strict way a service reads a run's plan from the bus (a reader
// that already holds the event calls plan.FromChangeRequest, as Load does).
// A plan that does not parse is a permanent error (the preflight service
// rejects it with every error; nothing else should run it).
func Load(ctx context.Context, bus *eventbus.Bus, runID string) (*plan.Plan, *runbookv1.Event, error) {
	env, err := bus.LastEvent(ctx, runID, "change.requested")
	if err != nil {
		return nil, nil, err
	}
	if env == nil {
		return nil, nil, fmt.Errorf("run %s: %w", runID, ErrNoRun)
	}
	p, issues := plan.FromChangeRequest(env.Event.GetChangeRequested())
	if p == nil {
		return nil, env.Event, eventbus.Permanent(fmt.Errorf("run %s: plan is invalid: %s", runID, plan.Errors(issues)))
	}
	return p, env.Event, nil
}
