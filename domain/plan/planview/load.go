package planview

import (
	"fmt"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// describeLoad is the load test as the tester runs it: the model (closed
// virtual users, ramped stages, or an open arrival rate bounded by
// max_in_flight), its duration, the gates, early abort, the regression
// judgement and the requests of one iteration by name.
func describeLoad(w writer, l *plan.LoadTest) {
	reqs := fmt.Sprintf("%d request(s) per iteration", len(l.Requests))
	switch {
	case l.EffectiveModel() == plan.LoadModelOpen:
		w(1, "load: %s iterations/s for %s (open model: iterations start on schedule whatever the target does, latency counted from when each was due; at most %d in flight%s), %s",
			num(l.Rate), dur(l.EffectiveDuration()), l.EffectiveMaxInFlight(), defaultMark(l.MaxInFlight <= 0), reqs)
	case len(l.Stages) > 0:
		ramp := []string{"0"}
		peak := 0
		for _, s := range l.Stages {
			ramp = append(ramp, fmt.Sprintf("%d over %s", s.Target, dur(s.Duration.Duration)))
			peak = max(peak, s.Target)
		}
		w(1, "load: virtual users ramped %s, %s in all, peak %d (closed model), think %s, %s",
			strings.Join(ramp, " → "), dur(l.StagesDuration()), peak, dur(l.EffectiveThinkTime()), reqs)
	default:
		w(1, "load: %d virtual users for %s (closed model), think %s, %s", l.EffectiveVUs(), dur(l.EffectiveDuration()), dur(l.EffectiveThinkTime()), reqs)
	}

	g := l.EffectiveGates()
	gates := []string{fmt.Sprintf("p95 ≤ %s ms", num(g.P95MS)), fmt.Sprintf("error rate ≤ %s (%s)", num(g.ErrorRate), pct(g.ErrorRate))}
	for _, p := range l.Gates.PercentileGates() {
		gates = append(gates, fmt.Sprintf("%s ≤ %s ms", p.Key, num(p.MaxMS)))
	}
	w(2, "pass when %s and %s", strings.Join(gates[:len(gates)-1], ", "), gates[len(gates)-1])
	if l.EffectiveAbortEarly() {
		w(2, "abort early: on (a gate clearly failed stops the test before its end)")
	} else {
		w(2, "abort early: off (runs to the end whatever the gates)")
	}
	if l.RegressionEnabled() {
		alpha, floor := l.Regression.EffectiveAlpha(), l.Regression.EffectiveEffectFloor()
		w(2, "regression: on, against the last passed load test of this change or target (alpha %s, effect floor %s)", num(alpha), pct(floor))
	} else {
		w(2, "regression: off (regression.enabled: false)")
	}
	for i, r := range l.Requests {
		label := r.EffectiveMethod() + " " + r.URL
		if r.Name != "" {
			w(2, "%d. %s: %s", i+1, r.Name, label)
		} else {
			w(2, "%d. %s", i+1, label)
		}
	}
}
