package plan

import (
	"strings"
	"testing"
	"time"
)

func TestParseFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n, m int
		err  string
	}{
		{"", 1, 1, ""},
		{"3 of 5", 3, 5, ""},
		{"3/5", 3, 5, ""},
		{" 2 ", 2, 2, ""},
		{"0 of 5", 0, 0, "at least 1"},
		{"5 of 3", 0, 0, "not be more than M"},
		{"3 of 5000", 0, 0, "at most 1000"},
		{"three", 0, 0, "not N of M"},
	}
	for _, tt := range tests {
		n, m, err := ParseFor(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFor(%q) err = %v; want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || n != tt.n || m != tt.m {
			t.Errorf("ParseFor(%q) = %d, %d, %v; want %d of %d", tt.in, n, m, err, tt.n, tt.m)
		}
	}
}

const gatesHead = "change_request: {id: CR-1, title: t, type: maintenance, priority: low}\nrequester: {name: Rita, role: SRE}\n"

func TestGatesParseAndDefaults(t *testing.T) {
	t.Parallel()
	p, issues := Parse("p.yaml", []byte(gatesHead+`monitor:
  interval: 10s
  thresholds: {error_rate: 0.02}
  auto_rollback: {factor: 2}
  gates:
    api_response_time_p95: {max: 1000, for: 3 of 5, grace: 1m, no_data: warn, no_data_after: 4}
    cpu_utilization: {mode: shadow, critical: 95}
    queue_depth: {min: 10, rollback: true}
`))
	if p == nil {
		t.Fatalf("valid plan refused: %v", issues)
	}
	g := map[string]Limit{}
	for _, l := range p.Monitor.Limits() {
		g[l.Metric] = l
	}
	want := map[string]Limit{
		// A threshold only: max with every default; auto-rollback at 2×.
		"error_rate": {Metric: "error_rate", Unit: UnitFraction, Threshold: 0.02, Critical: 0.04, HasCritical: true, Derived: true, Factor: 2, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true},
		"api_response_time_p95": {Metric: "api_response_time_p95", Unit: UnitMS, Threshold: 1000, Critical: 2000, HasCritical: true, Derived: true, Factor: 2, N: 3, M: 5,
			Grace: time.Minute, NoData: NoDataWarn, NoDataAfter: 4, Rollback: true, Explicit: true},
		// No max: the seed's threshold; no rollback metric: critical only if set.
		"cpu_utilization": {Metric: "cpu_utilization", Unit: UnitPercent, Threshold: 80, Critical: 95, HasCritical: true, Factor: 2, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Shadow: true, Explicit: true},
		"queue_depth":     {Metric: "queue_depth", Threshold: 10, Below: true, Critical: 5, HasCritical: true, Derived: true, Factor: 2, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true, Explicit: true},
		"memory_usage":    {Metric: "memory_usage", Unit: UnitPercent, Threshold: 85, Factor: 2, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3},
	}
	for metric, w := range want {
		if g[metric] != w {
			t.Errorf("limit %s = %+v\nwant           %+v", metric, g[metric], w)
		}
	}
	if got := p.Monitor.EffectiveBaseline(); got != 30*time.Second {
		t.Errorf("default baseline = %s; want 3 intervals", got)
	}
	if got := (Monitor{}).EffectiveBaseline(); got != MaxBaseline {
		t.Errorf("default baseline of the default interval = %s; want capped at %s", got, MaxBaseline)
	}
	if g["api_response_time_p95"].Rule() != "api_response_time_p95 > 2000 for 3 of 5 samples" || g["queue_depth"].Rule() != "queue_depth < 5" {
		t.Errorf("rules %q, %q", g["api_response_time_p95"].Rule(), g["queue_depth"].Rule())
	}
}

func TestGatesValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, gates, path, msg string
	}{
		{"both bounds", "{max: 1, min: 0}", "monitor.gates.api_response_time_p95", "max or min, not both"},
		{"bad for", "{for: 5 of 3}", "monitor.gates.api_response_time_p95.for", "not be more than M"},
		{"critical inside the band", "{max: 100, critical: 50}", "monitor.gates.api_response_time_p95.critical", "at or above max"},
		{"critical above a min", "{min: 100, critical: 150}", "monitor.gates.api_response_time_p95.critical", "at or below min"},
		{"no-data policy", "{no_data: pass}", "monitor.gates.api_response_time_p95.no_data", "one of fail, warn, ignore"},
		{"no_data_after", "{no_data_after: 0}", "monitor.gates.api_response_time_p95.no_data_after", "at least 1"},
		{"mode", "{mode: dry}", "monitor.gates.api_response_time_p95.mode", "one of enforce, shadow"},
		{"grace", "{grace: soon}", "monitor.gates.api_response_time_p95.grace", "not a duration"},
		{"unknown field", "{maxx: 1}", "monitor.gates.api_response_time_p95", "max"},
	}
	for _, tt := range tests {
		_, issues := Parse("p.yaml", []byte(gatesHead+"monitor:\n  gates:\n    api_response_time_p95: "+tt.gates+"\n"))
		found := false
		for _, is := range issues {
			if !is.Warning && strings.HasPrefix(is.Path, tt.path) && strings.Contains(is.Message, tt.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: issues %v; want %s: …%s…", tt.name, issues, tt.path, tt.msg)
		}
	}
	_, issues := Parse("p.yaml", []byte(gatesHead+"monitor:\n  gates:\n    custom_metric: {}\n"))
	if len(issues) == 0 || !strings.Contains(issues[0].Message, "needs max or min") {
		t.Errorf("a gate without a bound or threshold: %v", issues)
	}
	_, issues = Parse("p.yaml", []byte(gatesHead+"monitor:\n  mode: shadow\n  baseline: 0s\n  gates:\n    custom_metric: {min: 1}\n"))
	for _, is := range issues {
		if !is.Warning {
			t.Errorf("valid gates refused: %v", is)
		}
	}
}
