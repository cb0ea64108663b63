package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Retrospective is the seed's deployment-retrospective-template.yml
// (09_Runbook.md, section 5.2) prefilled from a run. What only people can
// say (lessons learned, process improvements, next focus) is left empty.
type Retrospective struct {
	DeploymentID string
	Date         string // YYYY-MM-DD (UTC) of change.requested
	Participants []string
	Status       string
	Final        bool

	WentWell    []string
	WentWrong   []string
	ActionItems []ActionItem

	// Deployment duration: planned is the plan's timeline.estimated_duration
	// (empty when it has none); actual runs from deploy.started to the event
	// that made the run final (deploy, verification watch and rollback).
	PlannedDuration, ActualDuration time.Duration
	PlannedDurationText             string // as the plan wrote it
	Deployed                        bool   // deploy.started was seen

	// Downtime: the plan has no planned downtime; actual is the time the
	// service was being changed: the deploy phase (deploy.started →
	// deploy.done/failed) plus the rollback phase (rollback.started →
	// rollback.done/failed). An upper bound: the runbook does not measure
	// real unavailability.
	ActualDowntime time.Duration

	// Test pass rate by type: passed and total.
	Smoke, Regression, Performance Coverage
}

// ActionItem is one action item, from a recommendation of the report.
type ActionItem struct {
	ID          string // AI-001, AI-002, … in the report's order
	Description string
	Priority    string
}

// Coverage is passed of total tests of one type.
type Coverage struct{ Passed, Total int }

// Retro builds the retrospective of run runID from its events, in stream
// order (the same events as Generate; the plan is read from change.requested).
func Retro(runID string, events []*runbookv1.Event) (*Retrospective, error) {
	res, err := Generate(runID, events)
	if err != nil {
		return nil, err
	}
	rep := &res.Report
	r := &Retrospective{DeploymentID: runID, Status: string(res.Status), Final: res.Final}

	// The run's facts are its fold's (runstate), over the events the
	// report covers: a deploy.started that lost the race with a stop
	// deployed nothing.
	st := res.State
	var end time.Time
	planText := st.Request.GetChangeRequested().GetPlanYaml()
	checks := 0
	for _, ev := range events {
		if ev.GetRunId() == runID && ev.GetType() == "preflight.passed" {
			checks = len(ev.GetPreflightPassed().GetChecks())
		}
	}
	if st.Request != nil {
		r.Date = st.Request.GetTime().AsTime().UTC().Format(time.DateOnly)
	}
	if res.FinalEvent != nil {
		end = res.FinalEvent.GetTime().AsTime()
	}

	// Participants: requester, every approver who granted, the operator.
	add := func(s string) {
		if !slices.Contains(r.Participants, s) {
			r.Participants = append(r.Participants, s)
		}
	}
	if rep.Change.Requester != "" {
		add(rep.Change.Requester + " (requester)")
	}
	for _, a := range rep.Approvals {
		if a.Decision == "GRANTED" && a.Approver != "" {
			add(a.Approver + " (" + strings.TrimSpace(a.Role+" approver") + ")")
		}
	}
	if rep.Deployment.Operator != "" {
		add(rep.Deployment.Operator + " (operator)")
	}

	r.PlannedDurationText, r.PlannedDuration = estimatedDuration(planText)
	if st.DeployStarted() && st.Stopped == nil {
		deployStart := st.DeployStart.GetTime().AsTime()
		r.Deployed = true
		if !end.IsZero() && end.After(deployStart) {
			r.ActualDuration = end.Sub(deployStart)
		}
	}
	var deployPhase, rollbackPhase time.Duration
	for _, p := range res.Phases {
		switch p.Name {
		case "deploy":
			deployPhase = p.Duration
		case "rollback":
			rollbackPhase = p.Duration
		}
	}
	r.ActualDowntime = deployPhase + rollbackPhase

	r.Smoke = coverage(rep.Tests.SmokeTests)
	r.Regression = coverage(rep.Tests.RegressionTests)
	r.Performance = coverage(rep.Tests.PerformanceTests)

	// What went well.
	if st.PreflightPassed && checks > 0 {
		r.WentWell = append(r.WentWell, allPassed(checks, "pre-flight check"))
	}
	// The deploy went well only when the release it shipped stayed: a
	// deploy that completed and was then rolled back (or whose run failed)
	// is the reason for the retrospective, not a success of it.
	if deployPhase > 0 && st.DeployFinished() && st.Status == runstate.Success {
		r.WentWell = append(r.WentWell, "deploy completed in "+FormatDuration(deployPhase))
	}
	if r.Smoke.Total > 0 && r.Smoke.Passed == r.Smoke.Total {
		r.WentWell = append(r.WentWell, allPassed(r.Smoke.Total, "smoke test"))
	}
	if r.Regression.Total > 0 && r.Regression.Passed == r.Regression.Total {
		r.WentWell = append(r.WentWell, allPassed(r.Regression.Total, "regression test"))
	}
	for _, tc := range rep.Tests.PerformanceTests {
		if tc.Status == "PASS" {
			r.WentWell = append(r.WentWell, "performance test passed: "+joinNonEmpty(" — ", tc.Name, tc.Details))
		}
	}
	if st.Status == runstate.Success && !slices.ContainsFunc(rep.Issues, func(i Issue) bool { return i.Type == "THRESHOLD" }) {
		r.WentWell = append(r.WentWell, "no threshold violated during the watch window")
	}
	if st.Status == runstate.RolledBack && rep.Rollback.Duration != nil {
		r.WentWell = append(r.WentWell, "rollback completed in "+*rep.Rollback.Duration)
	}
	if st.Status == runstate.Success {
		r.WentWell = append(r.WentWell, "run ended SUCCESS")
	}

	// What went wrong.
	if res.Final && st.Status != runstate.Success {
		r.WentWrong = append(r.WentWrong, "run ended "+string(res.Status)+": "+rep.Summary.OverallStatus)
	}
	for _, is := range rep.Issues {
		r.WentWrong = append(r.WentWrong, is.Severity+" "+is.Type+": "+is.Message)
	}
	if rep.Rollback.Reason != nil {
		s := "rollback: " + *rep.Rollback.Reason
		if rep.Rollback.RequestedBy != nil {
			s += " (requested by " + *rep.Rollback.RequestedBy + ")"
		}
		r.WentWrong = append(r.WentWrong, s)
	}

	for i, rec := range rep.Recommendations {
		r.ActionItems = append(r.ActionItems, ActionItem{ID: fmt.Sprintf("AI-%03d", i+1), Description: rec.Description, Priority: rec.Priority})
	}
	return r, nil
}

// allPassed is "all 3 smoke tests passed", "the smoke test passed".
func allPassed(n int, what string) string {
	if n == 1 {
		return "the " + what + " passed"
	}
	return fmt.Sprintf("all %d %ss passed", n, what)
}

// estimatedDuration reads timeline.estimated_duration from the plan text
// leniently (like readPlan): "" and 0 when missing or not a duration.
func estimatedDuration(text string) (string, time.Duration) {
	if text == "" {
		return "", 0
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return "", 0
	}
	raw := strings.TrimSpace(str(mapOf(doc["timeline"])["estimated_duration"]))
	if raw == "" {
		return "", 0
	}
	d, err := plan.ParseDuration(raw)
	if err != nil || d <= 0 {
		return raw, 0
	}
	return raw, d
}

func coverage(tests []TestCase) Coverage {
	c := Coverage{Total: len(tests)}
	for _, tc := range tests {
		if tc.Status == "PASS" {
			c.Passed++
		}
	}
	return c
}

// RetroDoc is the retrospective as the seed's template lays it out, as
// data: `runbook retro -o json` prints it, and YAML prints the same values
// with the template's comments. One difference from the template:
// test_coverage is test_pass_rate, since it is the share of the run's tests
// that passed, not how much of the code they cover.
type RetroDoc struct {
	Retrospective       RetroHeader       `json:"retrospective"`
	WhatWentWell        []string          `json:"what_went_well"`
	WhatWentWrong       []string          `json:"what_went_wrong"`
	ActionItems         []RetroActionItem `json:"action_items"`
	LessonsLearned      []string          `json:"lessons_learned"`
	ProcessImprovements []string          `json:"process_improvements"`
	MetricsAnalysis     RetroMetrics      `json:"metrics_analysis"`
	NextDeploymentFocus []string          `json:"next_deployment_focus"`
}

// RetroHeader is the template's retrospective: block.
type RetroHeader struct {
	DeploymentID string   `json:"deployment_id"`
	Date         string   `json:"date"`
	Participants []string `json:"participants"`
}

// RetroActionItem is one action item; assignee and due date are left for
// the meeting.
type RetroActionItem struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Assignee    string `json:"assignee"`
	DueDate     string `json:"due_date"`
	Priority    string `json:"priority"`
}

// RetroMetrics is the template's metrics_analysis.
type RetroMetrics struct {
	DeploymentDuration RetroMeasure  `json:"deployment_duration"`
	Downtime           RetroMeasure  `json:"downtime"`
	TestPassRate       RetroPassRate `json:"test_pass_rate"`
}

// RetroMeasure is a planned and an actual value and their variance, as text.
type RetroMeasure struct {
	Planned  string `json:"planned"`
	Actual   string `json:"actual"`
	Variance string `json:"variance"`
}

// RetroPassRate is passed/total of the run's tests of each type ("n/a":
// none in the plan).
type RetroPassRate struct {
	SmokeTests       string `json:"smoke_tests"`
	RegressionTests  string `json:"regression_tests"`
	PerformanceTests string `json:"performance_tests"`
}

// Doc is the retrospective as the template's document.
func (r *Retrospective) Doc() RetroDoc {
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	d := RetroDoc{
		Retrospective:       RetroHeader{DeploymentID: r.DeploymentID, Date: r.Date, Participants: orEmpty(slices.Clone(r.Participants))},
		WhatWentWell:        orEmpty(slices.Clone(r.WentWell)),
		WhatWentWrong:       orEmpty(slices.Clone(r.WentWrong)),
		ActionItems:         []RetroActionItem{},
		LessonsLearned:      []string{},
		ProcessImprovements: []string{},
		NextDeploymentFocus: []string{},
	}
	for _, a := range r.ActionItems {
		d.ActionItems = append(d.ActionItems, RetroActionItem{ID: a.ID, Description: a.Description, Priority: a.Priority})
	}
	planned := r.PlannedDurationText
	if planned == "" {
		planned = "not in the plan"
	}
	actual, downtime := "not deployed", "not deployed"
	if r.Deployed {
		actual, downtime = FormatDuration(r.ActualDuration), FormatDuration(r.ActualDowntime)
	}
	variance := "n/a"
	if r.Deployed && r.PlannedDuration > 0 {
		variance = Variance(r.PlannedDuration, r.ActualDuration)
	}
	d.MetricsAnalysis = RetroMetrics{
		DeploymentDuration: RetroMeasure{Planned: planned, Actual: actual, Variance: variance},
		Downtime:           RetroMeasure{Planned: "not in the plan", Actual: downtime, Variance: "n/a"},
		TestPassRate:       RetroPassRate{SmokeTests: r.Smoke.Percent(), RegressionTests: r.Regression.Percent(), PerformanceTests: r.Performance.Percent()},
	}
	return d
}

// YAML prints the retrospective (Doc) in the layout of the seed's
// template, with its comments. Every string is double-quoted with
// YAML-compatible escapes, so any text from a plan or an event stays one
// scalar.
func (r *Retrospective) YAML() string {
	d := r.Doc()
	var b strings.Builder
	q := strconv.Quote
	list := func(key string, items []string, emptyComment string) {
		if len(items) == 0 {
			fmt.Fprintf(&b, "%s: []", key)
			if emptyComment != "" {
				b.WriteString("  # " + emptyComment)
			}
			b.WriteString("\n")
			return
		}
		fmt.Fprintf(&b, "%s:\n", key)
		for _, it := range items {
			fmt.Fprintf(&b, "  - %s\n", q(it))
		}
	}
	measure := func(key string, m RetroMeasure) {
		fmt.Fprintf(&b, "  %s:\n    planned: %s\n    actual: %s\n    variance: %s\n", key, q(m.Planned), q(m.Actual), q(m.Variance))
	}

	b.WriteString("# deployment-retrospective-template.yml, prefilled by `runbook retro` from the run's events.\n")
	if !r.Final {
		b.WriteString("# The run is not over yet (" + oneLine(r.Status) + "): this is a preview.\n")
	}
	b.WriteString("retrospective:\n")
	fmt.Fprintf(&b, "  deployment_id: %s\n", q(d.Retrospective.DeploymentID))
	fmt.Fprintf(&b, "  date: %s\n", q(d.Retrospective.Date))
	if len(d.Retrospective.Participants) == 0 {
		b.WriteString("  participants: []\n")
	} else {
		b.WriteString("  participants:\n")
		for _, p := range d.Retrospective.Participants {
			fmt.Fprintf(&b, "    - %s\n", q(p))
		}
	}
	b.WriteString("\n")
	list("what_went_well", d.WhatWentWell, "")
	b.WriteString("\n")
	list("what_went_wrong", d.WhatWentWrong, "")
	b.WriteString("\n")
	if len(d.ActionItems) == 0 {
		b.WriteString("action_items: []\n")
	} else {
		b.WriteString("# From the report's recommendations: assign them and set due dates.\naction_items:\n")
		for _, a := range d.ActionItems {
			fmt.Fprintf(&b, "  - id: %s\n    description: %s\n    assignee: %s\n    due_date: %s\n    priority: %s\n", q(a.ID), q(a.Description), q(a.Assignee), q(a.DueDate), q(a.Priority))
		}
	}
	b.WriteString("\n")
	list("lessons_learned", d.LessonsLearned, "to fill in at the retrospective meeting")
	b.WriteString("\n")
	list("process_improvements", d.ProcessImprovements, "to fill in at the retrospective meeting")
	b.WriteString("\n")

	m := d.MetricsAnalysis
	b.WriteString("metrics_analysis:\n")
	b.WriteString("  # planned: the plan's timeline.estimated_duration; actual: deploy.started to the end of the run\n")
	b.WriteString("  # (deploy, verification watch, rollback).\n")
	measure("deployment_duration", m.DeploymentDuration)
	b.WriteString("\n")
	b.WriteString("  # The plan states no planned downtime. actual: the deploy phase (deploy.started to\n")
	b.WriteString("  # deploy.done/failed) plus the rollback phase; an upper bound, not measured unavailability.\n")
	measure("downtime", m.Downtime)
	b.WriteString("\n")
	b.WriteString("  # The template's test_coverage: the share of the run's tests of each type that passed\n")
	b.WriteString("  # (\"n/a\": none in the plan), not code coverage.\n")
	b.WriteString("  test_pass_rate:\n")
	fmt.Fprintf(&b, "    smoke_tests: %s\n    regression_tests: %s\n    performance_tests: %s\n",
		q(m.TestPassRate.SmokeTests), q(m.TestPassRate.RegressionTests), q(m.TestPassRate.PerformanceTests))
	b.WriteString("\n")
	list("next_deployment_focus", d.NextDeploymentFocus, "to fill in at the retrospective meeting")
	return b.String()
}

// Percent is passed/total as a whole percentage ("100%"), "n/a" for no tests.
func (c Coverage) Percent() string {
	if c.Total == 0 {
		return "n/a"
	}
	return strconv.Itoa(int(math.Round(float64(c.Passed)*100/float64(c.Total)))) + "%"
}

// Variance is (actual - planned) / planned as a signed whole percentage:
// "+25%", "-47%", "+0%".
func Variance(planned, actual time.Duration) string {
	if planned <= 0 {
		return "n/a"
	}
	v := int(math.Round(float64(actual-planned) * 100 / float64(planned)))
	if v >= 0 {
		return "+" + strconv.Itoa(v) + "%"
	}
	return strconv.Itoa(v) + "%"
}
