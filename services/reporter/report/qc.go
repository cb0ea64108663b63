package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The QC summary is the seed's template line for line: 14 lines, of which
// the two rules of '=' frame its 12 lines of content (the seed's
// "12-line" summary counts those: the header, Deployment ID, Status, Smoke
// Tests, Performance, Critical Issues, API Health, Database, Cache, Error
// Rate, Response Time P95 and Overall).
const (
	QCLines        = 14
	QCContentLines = 12
	qcRule         = "============================================"
)

// Performance statuses (getPerformanceStatus).
const (
	PerformancePass     = "PASS"
	PerformanceDegraded = "DEGRADED"
	PerformanceFail     = "FAIL"
)

// The seed's recommendation rules (generateRecommendations). The limits
// the run is judged against are the plan's (plan.Monitor.Limits).
const (
	recommendP95AboveMS     = 1500
	recommendErrorRateAbove = 0.005
)

// Recommendation descriptions: English translations of the seed's Korean text.
const (
	descPerformance = "API response time exceeds 1.5 seconds. Review the cache settings and optimise the queries."
	descReliability = "The error rate exceeds 0.5%. Analyse the error logs and find the cause."
)

func descTesting(n int) string {
	if n == 1 {
		return "1 test failed. Fix it before the next deployment."
	}
	return fmt.Sprintf("%d tests failed. Fix them before the next deployment.", n)
}

// qcSummary is generate12LineQCSummary(). Deviations from the seed, each on
// purpose:
//   - the header names the plan's systems (scope.systems_affected), not
//     always "KIS_CORE_V3": a plan that names KIS_CORE_V3 gets it;
//   - the timestamp is the time of the event that made the run final (of the
//     last event while in progress), not the clock: a replay reproduces it;
//   - "Error Rate" and "Response Time P95" are what measured them (see
//     Current) in the metric's one unit (plan.FormatMetric: 0.003 → "0.3%");
//     the seed prints the raw fraction before "%", which reads 100× too
//     small, and its `|| 'Unknown'` turns a perfect 0 into "Unknown";
//   - an unknown error rate or p95 prints "Unknown" without the unit
//     (the seed would print "Unknown%" and "Unknownms");
//   - "Performance" says why it is not PASS and "Error Rate" and "Response
//     Time P95" cite the limits the monitor enforced (plan.Limit.Cite), so
//     a reader sees what the values were judged against;
//   - Database and Cache read "not checked" when the plan has no postgres
//     or redis check;
//   - the duration has millisecond precision;
//   - every value is one line: newlines in reasons become spaces, so the
//     summary always has exactly QCLines lines.
func qcSummary(r *Report, at time.Time, tr TestResults, tests []*testEntry, limits map[string]plan.Limit) string {
	smokePassed, smokeTotal := 0, 0
	for _, e := range tests {
		if e.tc.Type == "smoke" {
			smokeTotal++
			if e.tc.Status == "PASS" {
				smokePassed++
			}
		}
	}
	errorRate, p95 := Unknown, Unknown
	if v := r.Metrics.Current.ErrorRate; v != nil {
		errorRate = plan.FormatMetric(MetricErrorRate, *v) + citeLimit(limits, MetricErrorRate)
	}
	if v := r.Metrics.Current.ResponseTimeP95; v != nil {
		p95 = plan.FormatMetric(MetricP95, *v) + citeLimit(limits, MetricP95)
	}
	perf := r.Summary.PerformanceStatus
	if why := r.Summary.PerformanceReason; why != "" {
		perf += " - " + oneLine(why)
	}
	lines := []string{
		qcHeader(r.Change.Systems) + isoTime(at),
		qcRule,
		"Deployment ID: " + oneLine(r.Deployment.ID),
		fmt.Sprintf("Status: %s (Duration: %s)", oneLine(r.Deployment.Status), r.Deployment.Duration),
		fmt.Sprintf("Smoke Tests: %d/%d passed", smokePassed, smokeTotal),
		"Performance: " + perf,
		fmt.Sprintf("Critical Issues: %d", r.Summary.CriticalIssues),
		"API Health: " + r.Metrics.Current.APIHealth,
		"Database: " + r.Metrics.Current.DBHealth,
		"Cache: " + r.Metrics.Current.CacheHealth,
		"Error Rate: " + errorRate,
		"Response Time P95: " + p95,
		qcRule,
		"Overall: " + oneLine(r.Summary.OverallStatus),
	}
	return strings.Join(lines, "\n")
}

// citeLimit is " (threshold 1%, rollback above 1.5%)": the limit of metric
// the monitor enforced, or "" when it has none.
func citeLimit(limits map[string]plan.Limit, metric string) string {
	if l, ok := limits[metric]; ok {
		return " (" + l.Cite() + ")"
	}
	return ""
}

// qcHeader starts the summary's first line: the plan's systems, then
// "Deployment Report - " (the seed's "KIS_CORE_V3 Deployment Report - ").
func qcHeader(systems []string) string {
	names := make([]string, 0, len(systems))
	for _, s := range systems {
		if s = oneLine(s); s != "" {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return "Deployment Report - "
	}
	return strings.Join(names, ", ") + " Deployment Report - "
}

// performanceStatus is getPerformanceStatus(): the run's p95 and error rate
// against their limits as the monitor enforced them (plan.Monitor.Limits:
// the plan's gates and thresholds, default 2100 ms and 1 %, and their
// critical bounds, default threshold × auto_rollback.factor), and the load
// test's own gates. why says, unless PASS, which value passed which limit.
//
//	Unknown   neither metric is known and no load test ran
//	FAIL      a metric passed its critical bound (for a gate that rolls
//	          back, the auto-rollback limit: 150 % of its threshold by
//	          default), or the load test failed its gates
//	DEGRADED  a metric passed its threshold
//	PASS      otherwise
func performanceStatus(p95, errorRate *float64, limits map[string]plan.Limit, load *runbookv1.LoadResult, loadPassed bool) (status, why string) {
	if p95 == nil && errorRate == nil && load == nil {
		return Unknown, ""
	}
	status = PerformancePass
	var failed, degraded []string
	judge := func(metric string, v *float64) {
		l, ok := limits[metric]
		if v == nil || !ok {
			return
		}
		said := fmt.Sprintf("%s %s (%s)", metric, plan.FormatMetric(metric, *v), l.Cite())
		switch {
		case l.IsCritical(*v):
			failed = append(failed, said)
		case l.Breaches(*v):
			degraded = append(degraded, said)
		}
	}
	judge(MetricP95, p95)
	judge(MetricErrorRate, errorRate)
	if load != nil && !loadPassed {
		failed = append(failed, "the load test failed its gates")
	}
	switch {
	case len(failed) > 0:
		status = PerformanceFail
	case len(degraded) > 0:
		status = PerformanceDegraded
	}
	return status, strings.Join(append(failed, degraded...), "; ")
}

// overallStatus is getOverallStatus(): one word for the outcome, then why.
//
//	SUCCESS          PASS - change deployed and verified
//	                 (PASS WITH WARNINGS - …; performance DEGRADED|FAIL)
//	ROLLED_BACK      FAIL - rolled back: <reason>
//	ROLLBACK_FAILED  CRITICAL - rollback failed: production is in an unknown state
//	FAILED           FAIL - <why>, e.g. pre-flight failed: <reason>
//	REJECTED         REJECTED - rejected by <approver>
//	EXPIRED          EXPIRED - <reason>
//	CANCELLED        CANCELLED - <reason>
//	INVALID          INVALID - the plan is invalid (<n> errors)
//	in progress      IN PROGRESS - <status>
func overallStatus(st *runstate.State, perf string, planErrors int) string {
	reason := st.FinalReason
	switch st.Status {
	case runstate.Success:
		if perf == PerformanceDegraded || perf == PerformanceFail {
			return "PASS WITH WARNINGS - change deployed and verified; performance " + perf
		}
		return "PASS - change deployed and verified"
	case runstate.RolledBack:
		return "FAIL - " + firstOf(reason, "rolled back")
	case runstate.RollbackFailed:
		return "CRITICAL - " + firstOf(reason, "rollback failed: production is in an unknown state")
	case runstate.Failed:
		return "FAIL - " + firstOf(reason, "the run failed")
	case runstate.Rejected:
		return "REJECTED - " + firstOf(reason, "an approver rejected the change")
	case runstate.Expired:
		return "EXPIRED - " + firstOf(reason, "approvals or the change window ran out")
	case runstate.Cancelled:
		return "CANCELLED - " + firstOf(reason, "an operator cancelled the run")
	case runstate.Invalid:
		if planErrors == 1 {
			return "INVALID - the plan is invalid (1 error); nothing ran"
		}
		return fmt.Sprintf("INVALID - the plan is invalid (%d errors); nothing ran", planErrors)
	}
	return "IN PROGRESS - " + string(st.Status)
}

// recommendations is generateRecommendations(), with the seed's rules.
func recommendations(p95, errorRate *float64, failedTests int) []Recommendation {
	out := []Recommendation{}
	if p95 != nil && *p95 > recommendP95AboveMS {
		out = append(out, Recommendation{Type: "PERFORMANCE", Priority: "MEDIUM", Description: descPerformance})
	}
	if errorRate != nil && *errorRate > recommendErrorRateAbove {
		out = append(out, Recommendation{Type: "RELIABILITY", Priority: "HIGH", Description: descReliability})
	}
	if failedTests > 0 {
		out = append(out, Recommendation{Type: "TESTING", Priority: "HIGH", Description: descTesting(failedTests)})
	}
	return out
}

// FormatDuration is formatDuration() with millisecond precision:
// "1h 2m 3.004s", "5m 0.000s", "42.250s", "0.200s"; hours and minutes
// appear once they are non-zero, seconds always; a negative duration (clock
// skew) is "0.000s".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	ms := int64(d / time.Millisecond)
	h, m := ms/3600000, (ms%3600000)/60000
	sec := fmt.Sprintf("%d.%03ds", (ms%60000)/1000, ms%1000)
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %dm %s", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm %s", m, sec)
	}
	return sec
}

// isoTime is JavaScript's Date.toISOString(): UTC, milliseconds, "Z".
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// num prints a number without trailing zeros: 812 → "812", 0.25 → "0.25".
func num(v float64) string {
	return strconv.FormatFloat(roundSig(v), 'f', -1, 64)
}

// round rounds to n decimals.
func round(v float64, n int) float64 {
	if !finite(v) {
		return v
	}
	p := math.Pow10(n)
	return math.Round(v*p) / p
}

// roundSig keeps 10 significant digits, dropping float noise such as
// 0.30000000000000004.
func roundSig(v float64) float64 {
	if !finite(v) || v == 0 {
		return v
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 10, 64), 64)
	return r
}

// oneLine folds any whitespace run, newlines included, into one space.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
