package planview

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// writer writes one line at an indent (two spaces a level).
type writer func(indent int, format string, args ...any)

// describeMonitor is the MONITOR section: the window, when it opens and
// closes (plan.Monitor.WindowText), the baseline, the mode, each source
// with what it reads and the metrics it reports, each metric's effective
// limits (plan.Monitor.Limits: what the monitor judges) and the
// auto-rollback rule those gates make.
func describeMonitor(w writer, m plan.Monitor, d plan.Deploy) {
	head := fmt.Sprintf("window %s, sample every %s", dur(m.EffectiveWindow()), dur(m.EffectiveInterval()))
	if len(m.Sources) == 0 {
		w(1, "%s", head)
		w(1, "sources: none — nothing to watch, the monitor completes at once")
		return
	}
	if b := m.EffectiveBaseline(); b > 0 {
		head += fmt.Sprintf(", baseline: up to %s of samples before the deploy starts%s", dur(b), defaultMark(!m.Baseline.IsSet()))
	} else {
		head += ", baseline: off (one round when the deploy starts)"
	}
	w(1, "%s", head)
	w(1, "window %s", m.WindowText(d))

	limits := m.Limits()
	reported := m.SourceMetrics()
	alerts := false
	for i, s := range m.Sources {
		if s.Alertmanager != nil {
			alerts = true
		}
		describeSource(w, i, s, m.Mode == plan.ModeShadow)
	}

	// Judged: a gate named in monitor.gates (expected from the first
	// sample) or a threshold of a metric a source reports. A threshold no
	// source reports is never judged.
	var judged, unwatched []plan.Limit
	for _, l := range limits {
		if l.Explicit || slices.Contains(reported, l.Metric) {
			judged = append(judged, l)
		} else {
			unwatched = append(unwatched, l)
		}
	}
	if m.Mode == plan.ModeShadow {
		w(1, "MODE SHADOW: violations are recorded, NOTHING IS ROLLED BACK%s", enforcedNote(judged))
	}
	if len(judged) > 0 {
		w(1, "gates:")
	}
	width := 0
	for _, l := range judged {
		width = max(width, len(l.Metric))
	}
	for _, l := range judged {
		w(2, "%-*s  %s", width, l.Metric, gateText(m, l, slices.Contains(reported, l.Metric)))
	}
	if len(unwatched) > 0 {
		var ths []string
		for _, l := range unwatched {
			ths = append(ths, fmt.Sprintf("%s %s%s", l.Metric, value(l.Metric, l.Threshold), defaultMark(fromSeed(m, l.Metric))))
		}
		w(1, "not watched (no source reports them): %s", strings.Join(ths, ", "))
	}

	var rules, shadow []string
	for _, g := range judged {
		if !g.Rollback {
			continue
		}
		if g.Shadow {
			shadow = append(shadow, ruleText(g))
		} else {
			rules = append(rules, ruleText(g))
		}
	}
	if alerts {
		r := "an alert matching an alertmanager source fires"
		if m.Mode == plan.ModeShadow {
			shadow = append(shadow, r)
		} else {
			rules = append(rules, r)
		}
	}
	switch len(rules) {
	case 0:
		w(1, "auto-rollback: off (no gate rolls back)")
	case 1:
		w(1, "auto-rollback when %s", rules[0])
	default:
		w(1, "auto-rollback when any of:")
		for _, r := range rules {
			w(2, "- %s", r)
		}
	}
	if len(shadow) > 0 {
		w(1, "SHADOW, recorded as \"would have rolled back\", never rolled back: %s", strings.Join(shadow, "; "))
	}
}

// describeSource is one monitor source: its kind, what it reads (the name
// of an auth variable, never a value) and the metrics it reports.
func describeSource(w writer, i int, s plan.Source, shadow bool) {
	n := i + 1
	switch s.Kind() {
	case "http_probe":
		w(1, "%d. http_probe %s %s, %d requests per sample → %s, %s", n, s.HTTPProbe.EffectiveMethod(), s.HTTPProbe.URL,
			s.HTTPProbe.EffectiveRequests(), plan.MetricP95, plan.MetricErrorRate)
	case "prometheus_scrape":
		ps := s.PrometheusScrape
		line := fmt.Sprintf("%d. prometheus_scrape %s", n, ps.URL)
		if read := nonEmpty(prefixed("latency ", ps.LatencyHistogram), prefixed("requests ", ps.EffectiveRequestsCounter()), prefixed("errors ", ps.ErrorsCounter)); len(read) > 0 {
			line += " (" + strings.Join(read, ", ") + ")"
		}
		var out []string
		if ps.LatencyHistogram != "" {
			out = append(out, plan.MetricP95)
		}
		if ps.ErrorsCounter != "" {
			out = append(out, plan.MetricErrorRate)
		}
		if len(out) > 0 {
			line += " → " + strings.Join(out, ", ")
		}
		w(1, "%s", line)
		for _, sm := range ps.Metrics {
			var what string
			switch sm.EffectiveType() {
			case plan.ScrapeCounterRate:
				what = "per-second rate of counter " + series(sm.Name, sm.Match)
			case plan.ScrapeHistogramQuantile:
				what = fmt.Sprintf("p%s of histogram %s", num(sm.EffectiveQuantile()*100), series(sm.Name, sm.Match))
			default:
				what = "gauge " + series(sm.Name, sm.Match)
			}
			if sc := sm.EffectiveScale(); sc != 1 {
				what += " × " + num(sc)
			}
			w(2, "%s ← %s", sm.EffectiveAs(), what)
		}
	case "prometheus_query":
		q := s.PrometheusQuery
		auth := "no auth"
		if q.AuthEnv != "" {
			auth = fmt.Sprintf("header %s from $%s", q.EffectiveAuthHeader(), q.AuthEnv)
		}
		w(1, "%d. prometheus_query %s/api/v1/query (%s), every sample; a vector takes its highest element:", n, strings.TrimRight(q.URL, "/"), auth)
		for _, k := range sortedKeys(q.Queries) {
			w(2, "%s ← %s", k, strings.Join(strings.Fields(q.Queries[k]), " "))
		}
	case "system":
		if pf := s.System.PidFile; pf != "" {
			w(1, "%d. system: the process of pid file %s → %s, %s (its share of the host's CPUs and memory), %s", n, pf, plan.MetricCPU, plan.MetricMemory, plan.MetricProcessRSS)
		} else {
			w(1, "%d. system: this host → %s, %s, %s of %s", n, plan.MetricCPU, plan.MetricMemory, plan.MetricDisk, s.System.EffectiveDiskPath())
		}
	case "alertmanager":
		then := "CRITICAL, rolls back at once"
		if shadow {
			then = "CRITICAL, recorded (shadow: would roll back)"
		}
		w(1, "%d. alertmanager webhook: alerts labelled %s firing in the window → %s<alertname>, %s", n, labels(s.Alertmanager.Match), plan.AlertMetricPrefix, then)
	}
}

// gateText is one metric's effective gate in words, e.g. "max 2100 ms
// (critical 3150 ms = 2100 × 1.5 → rollback), 3 of 5 samples, grace 30s,
// no data: fail after 3".
func gateText(m plan.Monitor, g plan.Limit, reported bool) string {
	side := "max"
	if g.Below {
		side = "min"
	}
	s := fmt.Sprintf("%s %s%s", side, value(g.Metric, g.Threshold), defaultMark(fromSeed(m, g.Metric)))
	var then string
	switch {
	case !g.Rollback:
		then = ", no rollback"
	case g.Shadow:
		then = ", would roll back"
	default:
		then = " → rollback"
	}
	if g.HasCritical {
		crit := "critical " + value(g.Metric, g.Critical)
		if d := derived(g); d != "" {
			crit += " = " + d
		}
		s += " (" + crit + then + ")"
	} else {
		s += " (no critical bound: every breach a WARNING" + then + ")"
	}
	if g.N == 1 && g.M == 1 {
		s += ", fails on 1 sample"
	} else {
		s += fmt.Sprintf(", fails on %d of %d samples", g.N, g.M)
	}
	if g.Grace > 0 {
		s += ", grace " + dur(g.Grace)
	}
	if g.NoData == plan.NoDataIgnore {
		s += ", no data: ignored"
	} else {
		s += fmt.Sprintf(", no data: %s after %d", g.NoData, g.NoDataAfter)
	}
	if g.Shadow {
		s += " · SHADOW: recorded, never rolls back"
	}
	if !reported && !strings.HasPrefix(g.Metric, plan.AlertMetricPrefix) {
		s += " · NO SOURCE REPORTS IT"
	}
	return s
}

// ruleText is a rolling-back gate's failing condition (Limit.Rule) and
// what no data does.
func ruleText(g plan.Limit) string {
	r := g.Rule()
	if g.NoData == plan.NoDataFail {
		r += fmt.Sprintf(", or no data for %d samples in a row", g.NoDataAfter)
	}
	return r
}

// derived is "bound × factor" (÷ for a min gate) when the gate's critical
// bound was not written but comes from auto_rollback.factor.
func derived(g plan.Limit) string {
	if !g.Derived {
		return ""
	}
	op := "×"
	if g.Below {
		op = "÷"
	}
	return fmt.Sprintf("%s %s %s", num(g.Threshold), op, num(g.Factor))
}

// enforcedNote names the gates that enforce despite the monitor's shadow
// mode (mode: enforce on the gate).
func enforcedNote(judged []plan.Limit) string {
	var enf []string
	for _, g := range judged {
		if !g.Shadow && g.Rollback {
			enf = append(enf, g.Metric)
		}
	}
	if len(enf) == 0 {
		return " (not even for an Alertmanager alert)"
	}
	return " except by the gates with mode: enforce (" + strings.Join(enf, ", ") + ")"
}

// fromSeed reports a metric whose bound is the seed's default threshold:
// written neither in monitor.thresholds nor in monitor.gates.
func fromSeed(m plan.Monitor, metric string) bool {
	_, th := m.Thresholds[metric]
	_, gate := m.Gates[metric]
	return !th && !gate
}

func defaultMark(b bool) string {
	if b {
		return " (default)"
	}
	return ""
}

// value is v in the metric's unit.
func value(metric string, v float64) string {
	switch metric {
	case plan.MetricP95:
		return num(v) + " ms"
	case plan.MetricErrorRate:
		return num(v) + " (" + pct(v) + ")"
	case plan.MetricCPU, plan.MetricMemory, plan.MetricDisk:
		return num(v) + "%"
	case plan.MetricProcessRSS:
		return num(v) + " bytes"
	}
	return num(v)
}

// pct is a fraction as a percentage: 0.015 → 1.5%.
func pct(f float64) string {
	return strconv.FormatFloat(math.Round(f*100*1e6)/1e6, 'f', -1, 64) + "%"
}

// series is a family with its label matchers, PromQL style.
func series(name string, match map[string]string) string {
	if len(match) == 0 {
		return name
	}
	return name + "{" + labels(match) + "}"
}

func labels(match map[string]string) string {
	var ls []string
	for _, k := range sortedKeys(match) {
		ls = append(ls, fmt.Sprintf("%s=%q", k, match[k]))
	}
	return strings.Join(ls, ",")
}
