package allinone_test

import (
	"context"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus/natstest"
)

const trivialPlan = `change_request: {id: CR-R, title: "restart", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// The same data dir after a restart of `runbook serve` gives back the same
// runs: the stream, the reports, and the reporter's read model rebuilt from it.
func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir; o.NoSync = false })
	run := first.submit(t, []byte(trivialPlan))
	if rr := first.report(t, run, 30*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("first run ended %s", rr.Status)
	}
	before := first.history(t, run)
	first.stop()

	second := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir })
	after := second.history(t, run)
	if len(after) != len(before) {
		t.Fatalf("after restart the run has %d events, had %d", len(after), len(before))
	}
	natstest.Eventually(t, 10*time.Second, "reporter read model rebuilt", func() bool {
		r, err := second.srv.Reporter.Model().Run(context.Background(), run)
		return err == nil && r != nil && r.Status == "SUCCESS"
	})
	next := second.submit(t, []byte(trivialPlan))
	if rr := second.report(t, next, 30*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("run after restart ended %s", rr.Status)
	}
	if c := countType(second.history(t, run), "report.ready"); c != 1 {
		t.Fatalf("first run has %d report.ready after restart", c)
	}
}
