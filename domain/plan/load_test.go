package plan

import (
	"strings"
	"testing"
	"time"
)

func loadPlan(load string) []byte {
	return []byte("change_request: {id: CR-L, title: load}\ntest:\n  secret_hosts: [h]\n  load:\n" + load)
}

func TestLoadModelParses(t *testing.T) {
	t.Parallel()
	p, issues := Parse("load.yaml", loadPlan(`
    stages: [{duration: 30s, target: 10}, {duration: 1m, target: 50}, {duration: 30s, target: 0}]
    think_time: 1s
    requests:
      - {name: health, url: "http://h/api/v1/health"}
      - {name: estimates, url: "http://h/api/v1/estimates", headers_env: {Authorization: TEST_TOKEN}}
    gates: {p95_ms: 2100, error_rate: 0.01, percentiles: {p99: 3000, p99.9: 5000, max: 10000}}
    abort_early: false
    regression: {alpha: 0.05, effect_floor: 0.2}
`))
	if errs := errorsOf(issues); len(errs) > 0 {
		t.Fatalf("issues %v", errs)
	}
	l := p.Test.Load
	if l.EffectiveModel() != LoadModelClosed || l.StagesDuration() != 2*time.Minute || l.maxStageTarget() != 50 || l.EffectiveAbortEarly() ||
		!l.RegressionEnabled() || l.Regression.Alpha != 0.05 || l.Requests[1].Name != "estimates" {
		t.Errorf("load %+v", l)
	}
	g := l.Gates.PercentileGates()
	if len(g) != 3 || g[0] != (PercentileGate{"p99", 99, 3000}) || g[1].Percentile != 99.9 || g[2] != (PercentileGate{"max", 100, 10000}) {
		t.Errorf("percentile gates %+v", g)
	}

	p, issues = Parse("open.yaml", loadPlan(`
    rate: 2000
    duration: 10s
    max_in_flight: 5000
    requests: [{url: "http://h/"}]
    regression: {enabled: false}
`))
	if errs := errorsOf(issues); len(errs) > 0 {
		t.Fatalf("issues %v", errs)
	}
	l = p.Test.Load
	if l.EffectiveModel() != LoadModelOpen || l.EffectiveMaxInFlight() != 5000 || l.RegressionEnabled() || !l.EffectiveAbortEarly() {
		t.Errorf("open load %+v", l)
	}
	var none *LoadTest
	if none.EffectiveModel() != LoadModelClosed || none.EffectiveMaxInFlight() != DefaultLoadMaxInFlight || !none.RegressionEnabled() {
		t.Error("nil load test defaults")
	}
}

func TestLoadModelInvalid(t *testing.T) {
	t.Parallel()
	req := "    requests: [{url: \"http://h/\"}]\n"
	tests := []struct {
		name, load, path, msg string
	}{
		{"stages and vus", "    vus: 5\n    stages: [{duration: 1s, target: 2}]\n" + req, "test.load.stages", "either stages or vus and duration"},
		{"stage without duration", "    stages: [{target: 2}]\n" + req, "test.load.stages[0].duration", "needs a duration"},
		{"negative target", "    stages: [{duration: 1s, target: -1}, {duration: 1s, target: 2}]\n" + req, "test.load.stages[0].target", "0 or more"},
		{"all targets zero", "    stages: [{duration: 1s, target: 0}]\n" + req, "test.load.stages", "every stage's target is 0"},
		{"zero rate", "    rate: 0\n" + req, "test.load.rate", "more than 0 iterations per second"},
		{"rate and vus", "    rate: 10\n    vus: 2\n" + req, "test.load.rate", "no vus or stages"},
		{"rate and think time", "    rate: 10\n    think_time: 1s\n" + req, "test.load.think_time", "no think time"},
		{"max_in_flight closed", "    max_in_flight: 10\n" + req, "test.load.max_in_flight", "set rate too"},
		{"max_in_flight zero", "    rate: 5\n    max_in_flight: 0\n" + req, "test.load.max_in_flight", "more than 0"},
		{"bad percentile key", "    gates: {percentiles: {q99: 10}}\n" + req, "test.load.gates.percentiles.q99", "not a percentile"},
		{"percentile above 100", "    gates: {percentiles: {p101: 10}}\n" + req, "test.load.gates.percentiles.p101", "at most 100"},
		{"percentile limit zero", "    gates: {percentiles: {p99: 0}}\n" + req, "test.load.gates.percentiles.p99", "more than 0 milliseconds"},
		{"alpha", "    regression: {alpha: 1.5}\n" + req, "test.load.regression.alpha", "less than 1"},
		{"effect floor", "    regression: {effect_floor: -0.1}\n" + req, "test.load.regression.effect_floor", "positive fraction"},
		{"duplicate names", "    requests: [{name: a, url: \"http://h/\"}, {name: a, url: \"http://h/x\"}]\n", "test.load.requests[1].name", "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, issues := Parse("bad.yaml", loadPlan(tt.load))
			for _, is := range errorsOf(issues) {
				if is.Path == tt.path && strings.Contains(is.Message, tt.msg) {
					return
				}
			}
			t.Errorf("want an error at %s containing %q; got %v", tt.path, tt.msg, issues)
		})
	}
}

func TestParsePercentileKey(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]float64{"p50": 50, "p99.9": 99.9, "p100": 100, "max": 100} {
		if got, err := ParsePercentileKey(k); err != nil || got != want {
			t.Errorf("%s = %v, %v", k, got, err)
		}
	}
	for _, k := range []string{"p0", "p-1", "pNaN", "99", "p", "P99"} {
		if _, err := ParsePercentileKey(k); err == nil {
			t.Errorf("%s parsed", k)
		}
	}
}
