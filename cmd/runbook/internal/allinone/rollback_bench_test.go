package allinone_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// rollbackBenchPlan: deploy step %[1]s, a rollback step, and a watch window
// on a healthy target (%[2]s) that keeps the run open after the deploy.
const rollbackBenchPlan = `change_request: {id: CR-RB-BENCH, title: "rollback bench", type: maintenance, priority: low}
requester: {name: bench, role: SRE, contact: bench@example.com}
deploy:
  steps:
    - {name: step, command: {argv: %[1]s}}
rollback_plan:
  rollback_steps:
    - {name: undo, command: {argv: ["true"]}}
monitor:
  window: 5s
  interval: 1s
  sources:
    - http_probe: {url: %[2]q, requests: 1}
`

// BenchmarkRollbackLatency measures, from the events' own times,
// rollback.requested → the first rollback.step.started: "idle" when the
// deploy has finished (target ≤ 100 ms median) and "cancel" when a deploy
// step (`sleep 30`) is running and has to be stopped first (target ≤ 1 s).
// The baseline, from the same runs, is change.requested → the first
// deploy.step.started.
func BenchmarkRollbackLatency(b *testing.B) {
	const runs = 20
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer target.Close()
	for _, c := range []struct {
		name, argv string
		ready      func(*runbookv1.Event) bool
	}{
		{"idle", `["true"]`, func(e *runbookv1.Event) bool { return e.Type == "deploy.done" }},
		{"cancel", `[sleep, "30"]`, func(e *runbookv1.Event) bool { return e.Type == "deploy.step.started" }},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := startPipeline(b, func(o *allinone.Options) { o.NoSync = false })
			data := []byte(fmt.Sprintf(rollbackBenchPlan, c.argv, target.URL))
			var lat, base []float64
			for range b.N {
				for range runs {
					run := p.submit(b, data)
					natstest.Eventually(b, 30*time.Second, c.name+" point of "+run, func() bool {
						for _, e := range p.history(b, run) {
							if c.ready(e) {
								return true
							}
						}
						return false
					})
					rr := eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
						Reason: "benchmark", RequestedBy: "operator",
					}}, "bench")
					if _, err := p.bus.Publish(context.Background(), rr); err != nil {
						b.Fatal(err)
					}
					var step *eventbus.Envelope
					natstest.Eventually(b, 30*time.Second, "rollback.step.started of "+run, func() bool {
						e, err := p.bus.LastEvent(context.Background(), run, "rollback.step.started")
						step = e
						return err == nil && e != nil
					})
					lat = append(lat, float64(step.Event.Time.AsTime().Sub(rr.Time.AsTime()).Microseconds())/1000)
					var req, first time.Time
					evs := p.history(b, run)
					if c.name == "cancel" {
						// The running step was stopped before the rollback began.
						f, r := index(evs, "deploy.step.failed"), index(evs, "rollback.step.started")
						if f < 0 || f > r {
							b.Fatalf("run %s: the deploy step was not stopped before the rollback: %v", run, types(evs))
						}
					}
					for _, e := range evs {
						if e.Type == "change.requested" {
							req = e.Time.AsTime()
						}
						if e.Type == "deploy.step.started" && first.IsZero() {
							first = e.Time.AsTime()
						}
					}
					base = append(base, float64(first.Sub(req).Microseconds())/1000)
				}
			}
			b.ReportMetric(median(lat), "ms-to-rollback-step-p50")
			sort.Float64s(lat)
			b.ReportMetric(lat[len(lat)*9/10], "ms-to-rollback-step-p90")
			b.ReportMetric(lat[len(lat)-1], "ms-to-rollback-step-max")
			b.ReportMetric(median(base), "ms-baseline-to-first-deploy-step-p50")
		})
	}
}
