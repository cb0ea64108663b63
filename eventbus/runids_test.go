package eventbus_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// RunIDs names every run with a change.requested, newest first; a run id
// with other events only (dead letters) is not one.
func TestRunIDs(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx := context.Background()
	for _, run := range []string{"DEPLOY-20250922-143000", "DEPLOY-20251001-090000", "DEPLOY-20250922-143000-ab12"} {
		if _, err := bus.Publish(ctx, eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1"}})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bus.Publish(ctx, deployDone("ORPHAN-1")); err != nil {
		t.Fatal(err)
	}
	got, err := bus.RunIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"DEPLOY-20251001-090000", "DEPLOY-20250922-143000-ab12", "DEPLOY-20250922-143000"}
	if !slices.Equal(got, want) {
		t.Errorf("RunIDs = %v, want %v", got, want)
	}
}
