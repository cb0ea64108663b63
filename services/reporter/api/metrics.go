package api

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// maxSamples bounds the samples one answer carries (a 30-minute window
// sampled every 30s from two sources is a few hundred).
const maxSamples = 20000

// Metrics is GET /api/v1/runs/{id}/metrics: what the monitor measured
// over the watch window and what it was judged against.
type Metrics struct {
	RunID  string `json:"run_id"`
	Window Window `json:"window"`
	// Series are the samples by metric and source, in time order.
	Series []Series `json:"series"`
	// Thresholds are the plan's monitor thresholds (the seed's defaults
	// overridden by monitor.thresholds), and for a metric the plan does
	// not name, the threshold its violations were judged against.
	Thresholds map[string]float64 `json:"thresholds"`
	// RollbackLimits are the values that make the monitor ask for a
	// rollback (threshold × auto_rollback.factor).
	RollbackLimits map[string]float64 `json:"rollback_limits"`
	Violations     []Violation        `json:"violations"`
	// Units is how each metric of the answer is shown (plan.MetricUnit):
	// the dashboard prints value × scale, rounded, then the suffix, as
	// plan.FormatMetric does everywhere else.
	Units map[string]plan.Unit `json:"units"`
	// Truncated: the run has more samples than one answer carries.
	Truncated bool `json:"truncated,omitempty"`
}

// Window is the watch window: from monitor.started to monitor.completed
// (or the planned end while it runs).
type Window struct {
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	Planned  string    `json:"planned,omitempty"`  // the plan's window, e.g. "30m0s"
	Interval string    `json:"interval,omitempty"` // the plan's sampling interval
	Done     bool      `json:"done"`
}

// Series is one metric from one source.
type Series struct {
	Metric string  `json:"metric"`
	Source string  `json:"source"`
	Points []Point `json:"points"`
}

// Point is one sample.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

func (a *API) getMetrics(w http.ResponseWriter, r *http.Request) {
	run, ok := a.run(w, r)
	if !ok {
		return
	}
	var samples []*runbookv1.MetricSample
	if a.o.Bus != nil {
		var err error
		if samples, err = a.o.Bus.RunSamples(r.Context(), run.RunID); err != nil {
			a.internal(w, r, fmt.Errorf("metrics of run %s: %w", run.RunID, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, BuildMetrics(run, samples))
}

// BuildMetrics puts a run's samples next to its thresholds. Pure.
func BuildMetrics(run *reporter.Run, samples []*runbookv1.MetricSample) *Metrics {
	m := &Metrics{RunID: run.RunID, Series: []Series{}, Thresholds: map[string]float64{}, RollbackLimits: map[string]float64{}, Violations: []Violation{}}
	var p *plan.Plan
	for _, env := range run.Events {
		ev := env.Event
		switch pl := ev.Payload.(type) {
		case *runbookv1.Event_ChangeRequested:
			p, _ = plan.Parse(pl.ChangeRequested.GetPlanSource(), []byte(pl.ChangeRequested.GetPlanYaml()))
		case *runbookv1.Event_MonitorStarted:
			m.Window.Start = ev.GetTime().AsTime()
		case *runbookv1.Event_MonitorCompleted:
			m.Window.End, m.Window.Done = ev.GetTime().AsTime(), true
		case *runbookv1.Event_ThresholdViolated:
			m.Violations = append(m.Violations, violation(env))
		}
	}
	if p != nil {
		m.Thresholds = p.Monitor.EffectiveThresholds()
		m.RollbackLimits = p.Monitor.AutoRollbackLimits()
		m.Window.Planned = p.Monitor.EffectiveWindow().String()
		m.Window.Interval = p.Monitor.EffectiveInterval().String()
		if !m.Window.Done && !m.Window.Start.IsZero() {
			m.Window.End = m.Window.Start.Add(p.Monitor.EffectiveWindow())
		}
	}
	for _, v := range m.Violations {
		if _, ok := m.Thresholds[v.Metric]; !ok {
			m.Thresholds[v.Metric] = v.Threshold
		}
	}
	if len(samples) > maxSamples {
		samples, m.Truncated = samples[len(samples)-maxSamples:], true
	}
	idx := map[[2]string]int{}
	for _, s := range samples {
		k := [2]string{s.GetMetric(), s.GetSource()}
		i, ok := idx[k]
		if !ok {
			i = len(m.Series)
			idx[k] = i
			m.Series = append(m.Series, Series{Metric: k[0], Source: k[1]})
		}
		m.Series[i].Points = append(m.Series[i].Points, Point{T: s.GetTime().AsTime(), V: s.GetValue()})
	}
	for i := range m.Series {
		slices.SortStableFunc(m.Series[i].Points, func(a, b Point) int { return a.T.Compare(b.T) })
	}
	slices.SortStableFunc(m.Series, func(a, b Series) int {
		return cmp.Or(strings.Compare(a.Metric, b.Metric), strings.Compare(a.Source, b.Source))
	})
	m.Units = map[string]plan.Unit{}
	for _, s := range m.Series {
		m.Units[s.Metric] = plan.MetricUnit(s.Metric)
	}
	for k := range m.Thresholds {
		m.Units[k] = plan.MetricUnit(k)
	}
	for _, v := range m.Violations {
		m.Units[v.Metric] = plan.MetricUnit(v.Metric)
	}
	return m
}
