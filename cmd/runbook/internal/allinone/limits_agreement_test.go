package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/plan/limittest"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Issue 12 (2): one home for every rule. Over limittest's plans (the seed's
// thresholds, gates with critical bounds, a factor of 2, min gates, shadow
// mode, auto-rollback off), for each gated metric a value just inside and
// just past its limit: the monitor's judge decides, the read API serves
// the limit the dashboard draws, and the QC summary of a run whose monitor
// events carry that value judges it — and all three agree. No NATS: the
// pieces are driven directly (the judge, the API on a memory read model,
// the report fold).
func TestLimitsAgree(t *testing.T) {
	t.Parallel()
	model := reporter.NewMemory()
	srv := httptest.NewServer(api.New(api.Options{Model: model}).Handler())
	t.Cleanup(srv.Close)
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var seq uint64

	for ci, c := range limittest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p, issues := plan.Parse("limits.yaml", []byte(c.YAML()))
			if p == nil {
				t.Fatalf("plan refused: %v", issues)
			}
			// The API: the run's change.requested in the read model, its
			// metrics JSON over HTTP.
			runID := fmt.Sprintf("limits-%d", ci)
			requested := limitEvent(runID, t0, 0, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
				PlanYaml: c.YAML(), PlanSource: "limits.yaml", ChangeId: "CR-LIM", Title: c.Name, Requester: "Rita"}})
			seq++
			if err := model.ApplyBatch(context.Background(), seq-1, []eventbus.Envelope{{Event: requested, Seq: seq, Subject: eventbus.Subject(runID, requested.GetType())}}); err != nil {
				t.Fatal(err)
			}
			served := getMetrics(t, srv.URL+"/api/v1/runs/"+runID+"/metrics")

			for _, metric := range c.Metrics {
				var al *api.Limit
				for i := range served.Limits {
					if served.Limits[i].Metric == metric {
						al = &served.Limits[i]
					}
				}
				if al == nil {
					t.Fatalf("the API serves no limit for %s: %+v", metric, served.Limits)
				}
				// The limit the dashboard draws: the critical bound, else the
				// threshold; rollback_limits holds it for a gate that rolls back.
				bound := al.Threshold
				if al.Critical != nil {
					bound = *al.Critical
				}
				if rl, ok := served.RollbackLimits[metric]; ok != al.Rollback || (ok && rl != bound) {
					t.Errorf("%s: rollback_limits %v (%v) for the limit %q", metric, rl, ok, al.Cite)
				}
				if served.Thresholds[metric] != al.Threshold {
					t.Errorf("%s: thresholds %v, limit threshold %v", metric, served.Thresholds[metric], al.Threshold)
				}
				// The monitor judges with the same limit.
				if g, ok := rules.NewJudge(p.Monitor).Gate(metric); !ok || g.Threshold != al.Threshold || g.Below != al.Below ||
					g.HasCritical != (al.Critical != nil) || (g.HasCritical && g.Critical != *al.Critical) || g.Rollback != al.Rollback || g.Shadow != al.Shadow {
					t.Errorf("%s: the monitor's gate %+v, the API's limit %q", metric, g, al.Cite)
				}

				for _, past := range []bool{false, true} {
					v := nudge(bound, al.Below, past)
					name := fmt.Sprintf("%s = %v (limit %v, past it: %v)", metric, v, bound, past)

					// The API's limit, as the dashboard reads it.
					apiPast := v > bound
					if al.Below {
						apiPast = v < bound
					}
					apiRollback := apiPast && al.Rollback && !al.Shadow

					// The monitor's judge.
					var d *rules.Decision
					for _, x := range rules.NewJudge(p.Monitor).Observe(time.Hour, map[string]float64{metric: v}) {
						if x.Metric == metric {
							d = &x
						}
					}
					monPast, monRollback, monWould := d != nil && d.GateFailed, d != nil && d.Rollback, d != nil && d.WouldRollback
					if apiPast != past || monPast != past {
						t.Errorf("%s: past the limit — API %v, monitor %v (%+v)", name, apiPast, monPast, d)
					}
					if monRollback != apiRollback || monWould != (apiPast && al.Rollback && al.Shadow) {
						t.Errorf("%s: rollback — monitor %v (would %v), API limit %q (shadow %v)", name, monRollback, monWould, al.Cite, al.Shadow)
					}

					// The QC summary judges only the p95 and the error rate.
					if metric != plan.MetricP95 && metric != plan.MetricErrorRate {
						continue
					}
					res, err := report.Generate(runID, monitoredRun(runID, t0, requested, metric, v, d))
					if err != nil {
						t.Fatal(err)
					}
					perf := res.Report.Summary.PerformanceStatus
					qcPast := perf == report.PerformanceFail
					if al.Critical == nil {
						qcPast = perf != report.PerformancePass // no critical bound: a breach only degrades
					}
					if qcPast != past {
						t.Errorf("%s: QC Performance %s (%s); the monitor's gate failed: %v\n%s", name, perf, res.Report.Summary.PerformanceReason, monPast, res.QCSummary)
					}
					// The QC summary cites the limit the API serves.
					line := "Error Rate: "
					if metric == plan.MetricP95 {
						line = "Response Time P95: "
					}
					if !strings.Contains(res.QCSummary, "\n"+line) || !strings.Contains(res.QCSummary, "("+al.Cite+")\n") {
						t.Errorf("%s: the QC summary does not cite %q:\n%s", name, al.Cite, res.QCSummary)
					}
					if past && !strings.Contains(res.QCSummary, "\nPerformance: "+perf+" - "+metric+" ") {
						t.Errorf("%s: the QC's Performance line does not say which limit was passed:\n%s", name, res.QCSummary)
					}
				}
			}
		})
	}
}

// nudge is a value just inside (past: false) or just past the bound, on the
// side a max gate (above) or a min gate (below) breaches.
func nudge(bound float64, below, past bool) float64 {
	d := math.Max(math.Abs(bound)*1e-6, 1e-9)
	if below == past {
		d = -d
	}
	return bound + d
}

func limitEvent(runID string, t0 time.Time, sec int, payload any, idParts ...any) *runbookv1.Event {
	ev := eventbus.New(runID, payload, idParts...)
	ev.Time = timestamppb.New(t0.Add(time.Duration(sec) * time.Second))
	ev.Source = "test"
	return ev
}

// monitoredRun is a run deployed and watched, its monitor events carrying
// value of metric: the judge's threshold.violated when it decided one, and
// monitor.completed's last and max.
func monitoredRun(runID string, t0 time.Time, requested *runbookv1.Event, metric string, value float64, d *rules.Decision) []*runbookv1.Event {
	evs := []*runbookv1.Event{
		requested,
		limitEvent(runID, t0, 1, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}),
		limitEvent(runID, t0, 2, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}),
		limitEvent(runID, t0, 3, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "10s", Interval: "1s"}}),
	}
	if d != nil {
		evs = append(evs, limitEvent(runID, t0, 4, &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
			Metric: d.Metric, Value: d.Value, Threshold: d.Threshold, Severity: d.Severity, Source: "http_probe",
			AutoRollback: d.AutoRollback, Shadow: d.Shadow, WindowCritical: int32(d.Critical), WindowSize: int32(d.Size),
			WindowNeeded: int32(d.Needed), GateFailed: d.GateFailed, Below: d.Below}}, d.Metric, 1))
	}
	return append(evs, limitEvent(runID, t0, 5, &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		Samples: 1, Last: map[string]float64{metric: value}, Max: map[string]float64{metric: value},
		// The judged samples' statistics: what the QC summary reads.
		Stats: map[string]*runbookv1.MetricStats{metric: {Min: value, Max: value, Mean: value, P95: value, Samples: 1}}}}))
}

func getMetrics(t *testing.T, url string) api.Metrics {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var m api.Metrics
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
	return m
}
