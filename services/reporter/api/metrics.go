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
	// Limits are the plan's effective limits (plan.Monitor.Limits), what
	// the monitor enforced, by metric.
	Limits []Limit `json:"limits"`
	// Thresholds are each limit's threshold (its max, or its min when
	// below), and for a metric the plan does not gate, the threshold its
	// violations were judged against.
	Thresholds map[string]float64 `json:"thresholds"`
	// RollbackLimits are the bounds past which a gate that rolls back
	// fails (its critical bound: the plan's `critical`, else threshold ×
	// auto_rollback.factor); shadow gates included (they would roll back).
	RollbackLimits map[string]float64 `json:"rollback_limits"`
	Violations     []Violation        `json:"violations"`
	// Deploy is the deploy's span, shaded on the charts (nil before
	// deploy.started).
	Deploy *DeploySpan `json:"deploy,omitempty"`
	// Units is how each metric of the answer is shown (plan.MetricUnit):
	// the dashboard prints value × scale, rounded, then the suffix, as
	// plan.FormatMetric does everywhere else.
	Units map[string]plan.Unit `json:"units"`
	// Truncated: the run has more samples than one answer carries.
	Truncated bool `json:"truncated,omitempty"`
}

// Limit is one metric's effective limits (plan.Limit) on the wire.
type Limit struct {
	Metric    string  `json:"metric"`
	Unit      string  `json:"unit,omitempty"`
	Threshold float64 `json:"threshold"`
	// Below: a min gate (a value below Threshold breaches).
	Below bool `json:"below,omitempty"`
	// Critical is the critical bound, when the gate has one; Derived: it
	// is threshold × factor (÷ for a min gate), not written in the plan.
	Critical *float64 `json:"critical,omitempty"`
	Derived  bool     `json:"derived,omitempty"`
	Factor   float64  `json:"factor"`
	// N of M samples past the bound fail the gate.
	N int `json:"n"`
	M int `json:"m"`
	// Grace (e.g. "1m0s"): samples in the window's first Grace are not
	// judged.
	Grace       string `json:"grace,omitempty"`
	NoData      string `json:"no_data"`
	NoDataAfter int    `json:"no_data_after"`
	Rollback    bool   `json:"rollback"`
	Shadow      bool   `json:"shadow"`
	// Rule is the failing condition and Cite the limit in words
	// (plan.Limit.Rule, plan.Limit.Cite).
	Rule string `json:"rule"`
	Cite string `json:"cite"`
}

func wireLimit(l plan.Limit) Limit {
	w := Limit{Metric: l.Metric, Unit: l.Unit, Threshold: l.Threshold, Below: l.Below, Derived: l.Derived, Factor: l.Factor,
		N: l.N, M: l.M, NoData: l.NoData, NoDataAfter: l.NoDataAfter, Rollback: l.Rollback, Shadow: l.Shadow, Rule: l.Rule(), Cite: l.Cite()}
	if l.HasCritical {
		w.Critical = &l.Critical
	}
	if l.Grace > 0 {
		w.Grace = l.Grace.String()
	}
	return w
}

// Window is the judged watch window: from its opening (deploy.done, or
// monitor.started with monitor.start: deploy_started; monitor.started
// until then) to monitor.completed (or the planned end while it runs).
type Window struct {
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	Planned  string    `json:"planned,omitempty"`  // the plan's window, e.g. "30m0s"
	Interval string    `json:"interval,omitempty"` // the plan's sampling interval
	Done     bool      `json:"done"`
}

// DeploySpan is the deploy: deploy.started → deploy.done (or
// deploy.failed; End is zero while it runs). Samples taken in it carry
// during_deploy and are not judged, unless Judged: the plan's
// monitor.start: deploy_started.
type DeploySpan struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end,omitzero"`
	Judged bool      `json:"judged"`
}

// Series is one metric from one source.
type Series struct {
	Metric string  `json:"metric"`
	Source string  `json:"source"`
	Points []Point `json:"points"`
}

// Point is one sample; D: taken during the deploy, not judged.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
	D bool      `json:"d,omitempty"`
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
	m := &Metrics{RunID: run.RunID, Series: []Series{}, Limits: []Limit{}, Thresholds: map[string]float64{}, RollbackLimits: map[string]float64{}, Violations: []Violation{}}
	var p *plan.Plan
	for _, env := range run.Events {
		ev := env.Event
		switch pl := ev.Payload.(type) {
		case *runbookv1.Event_ChangeRequested:
			p, _ = plan.FromChangeRequest(pl.ChangeRequested)
		case *runbookv1.Event_MonitorStarted:
			m.Window.Start = ev.GetTime().AsTime()
		case *runbookv1.Event_MonitorCompleted:
			m.Window.End, m.Window.Done = ev.GetTime().AsTime(), true
		case *runbookv1.Event_ThresholdViolated:
			m.Violations = append(m.Violations, violation(env))
		}
	}
	if p != nil {
		for _, l := range p.Monitor.Limits() {
			m.Limits = append(m.Limits, wireLimit(l))
			m.Thresholds[l.Metric] = l.Threshold
			if l.Rollback && l.HasCritical {
				m.RollbackLimits[l.Metric] = l.Critical
			}
		}
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
		m.Series[i].Points = append(m.Series[i].Points, Point{T: s.GetTime().AsTime(), V: s.GetValue(), D: s.GetDuringDeploy()})
	}
	for i := range m.Series {
		slices.SortStableFunc(m.Series[i].Points, func(a, b Point) int { return a.T.Compare(b.T) })
	}
	slices.SortStableFunc(m.Series, func(a, b Series) int {
		return cmp.Or(strings.Compare(a.Metric, b.Metric), strings.Compare(a.Source, b.Source))
	})
	deployWindow(m, run, p)
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

// deployWindow fills in the deploy's span and, once the judged window
// opened, the window's start and its planned end: monitor.completed's
// window_opened, or while it runs deploy.done (monitor.started's
// judge_from deploy_done) or monitor.started (deploy_started, and runs
// from before judge_from, which were judged from monitor.started).
func deployWindow(m *Metrics, run *reporter.Run, p *plan.Plan) {
	judged := p != nil && p.Monitor.JudgesDuringDeploy()
	var doneAt, opened time.Time
	for _, env := range run.Events {
		ev := env.Event
		switch pl := ev.Payload.(type) {
		case *runbookv1.Event_DeployStarted:
			m.Deploy = &DeploySpan{Start: ev.GetTime().AsTime()}
		case *runbookv1.Event_DeployDone:
			doneAt = ev.GetTime().AsTime()
			if m.Deploy != nil && m.Deploy.End.IsZero() {
				m.Deploy.End = doneAt
			}
		case *runbookv1.Event_DeployFailed:
			if m.Deploy != nil && m.Deploy.End.IsZero() {
				m.Deploy.End = ev.GetTime().AsTime()
			}
		case *runbookv1.Event_MonitorStarted:
			judged = pl.MonitorStarted.GetJudgeFrom() != plan.StartDeployDone
		case *runbookv1.Event_MonitorCompleted:
			if w := pl.MonitorCompleted.GetWindowOpened(); w != nil {
				opened = w.AsTime()
			}
		}
	}
	if m.Deploy != nil {
		m.Deploy.Judged = judged
	}
	if opened.IsZero() && !judged {
		opened = doneAt
	}
	if opened.IsZero() {
		return // judged from monitor.started (Window.Start), or not open yet
	}
	m.Window.Start = opened
	if !m.Window.Done && p != nil {
		m.Window.End = opened.Add(p.Monitor.EffectiveWindow())
	}
}
