package plan

import (
	"reflect"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"2 hours", 2 * time.Hour, true},
		{"30 minutes", 30 * time.Minute, true},
		{"15 min", 15 * time.Minute, true},
		{"1 day", 24 * time.Hour, true},
		{"1.5 hours", 90 * time.Minute, true},
		{"0", 0, true},
		{"2 hourz", 0, false},
		{"30", 0, false},
		{"soon", 0, false},
		{"99999999999999999999 days", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDurationSetness(t *testing.T) {
	t.Parallel()
	var unset Duration
	zero := Duration{Raw: "0s"}
	coded := Duration{Duration: time.Second}
	if unset.IsSet() || unset.Or(time.Minute) != time.Minute {
		t.Error("unset duration must take the default")
	}
	if !zero.IsSet() || zero.Or(time.Minute) != 0 {
		t.Error("an explicit 0s must mean 0")
	}
	if !coded.IsSet() || coded.Or(time.Minute) != time.Second {
		t.Error("a duration built in code is set")
	}
	if s := (Duration{Duration: 2 * time.Hour, Raw: "2 hours"}).String(); s != "2 hours" {
		t.Errorf("String = %q", s)
	}
	for d, want := range map[time.Duration]string{30 * time.Minute: "30m", 2 * time.Hour: "2h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s", 0: "0s"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// The custom types also work with a plain yaml.Unmarshal.
func TestPlainUnmarshal(t *testing.T) {
	t.Parallel()
	var v struct {
		D Duration           `yaml:"d"`
		T []TriggerCondition `yaml:"t"`
		S []Step             `yaml:"s"`
	}
	src := "d: 2 hours\nt: [\"API > 5s\", {metric: error_rate, op: \">\", value: 0.01}]\ns: [\"drain\", {name: x, wait: {duration: 30s}}]\n"
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		t.Fatal(err)
	}
	if v.D.Duration != 2*time.Hour || v.D.Raw != "2 hours" {
		t.Errorf("D = %+v", v.D)
	}
	if len(v.T) != 2 || v.T[0].Text != "API > 5s" || v.T[1].Metric != "error_rate" || v.T[1].Value != 0.01 {
		t.Errorf("T = %+v", v.T)
	}
	if len(v.S) != 2 || v.S[0].Kind() != "manual" || v.S[1].Kind() != "wait" || v.S[1].Wait.Duration.Duration != 30*time.Second {
		t.Errorf("S = %+v", v.S)
	}
}

func TestMonitorDefaults(t *testing.T) {
	t.Parallel()
	var m Monitor
	if m.EffectiveWindow() != 30*time.Minute || m.EffectiveInterval() != 30*time.Second {
		t.Error("window/interval defaults")
	}
	want := map[string]float64{"api_response_time_p95": 2100, "error_rate": 0.01, "cpu_utilization": 80, "memory_usage": 85, "active_connections": 1000}
	if got := m.EffectiveThresholds(); !reflect.DeepEqual(got, want) {
		t.Errorf("default thresholds = %v", got)
	}
	m.Thresholds = map[string]float64{"error_rate": 0.02, "cpu_utilization": 0}
	got := m.EffectiveThresholds()
	if got["error_rate"] != 0.02 || got["cpu_utilization"] != 0 || got["api_response_time_p95"] != 2100 {
		t.Errorf("merged thresholds = %v", got)
	}
	if m.Thresholds["api_response_time_p95"] != 0 || len(m.Thresholds) != 2 {
		t.Error("EffectiveThresholds changed the plan")
	}

	var nilAR *AutoRollback
	if !reflect.DeepEqual(nilAR.EffectiveMetrics(), []string{MetricP95, MetricErrorRate}) || nilAR.EffectiveFactor() != 1.5 {
		t.Error("nil auto_rollback defaults")
	}
	off := &AutoRollback{Metrics: []string{}}
	if len(off.EffectiveMetrics()) != 0 {
		t.Error("metrics: [] must turn auto-rollback off")
	}
	if (&AutoRollback{Factor: 2}).EffectiveFactor() != 2 {
		t.Error("factor")
	}
}

func TestStepAndCheckDefaults(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	for _, tc := range []struct {
		c     Check
		kind  string
		block bool
	}{
		{Check{HTTP: &HTTPCheck{}}, "http", true},
		{Check{Resources: &ResourcesCheck{}}, "resources", false},
		{Check{Resources: &ResourcesCheck{}, Blocking: &yes}, "resources", true},
		{Check{TCP: &TCPCheck{}, Blocking: &no}, "tcp", false},
		{Check{}, "", true},
	} {
		if tc.c.Kind() != tc.kind || tc.c.IsBlocking() != tc.block {
			t.Errorf("%+v: kind %q blocking %v, want %q %v", tc.c, tc.c.Kind(), tc.c.IsBlocking(), tc.kind, tc.block)
		}
	}
	if (Check{}).EffectiveTimeout() != 5*time.Second {
		t.Error("check timeout default")
	}
	for s, kind := range map[*Step]string{
		{Command: &Command{}}: "command", {HTTP: &HTTPStep{}}: "http", {Wait: &WaitStep{}}: "wait", {Text: "drain"}: "manual", {}: "",
	} {
		if s.Kind() != kind {
			t.Errorf("%+v kind %q, want %q", *s, s.Kind(), kind)
		}
	}
	if (Step{}).EffectiveTimeout() != 5*time.Minute || (HTTPStep{}).EffectiveMethod() != "POST" || (HTTPCheck{}).EffectiveMethod() != "GET" {
		t.Error("step defaults")
	}
	var h HealthCheck
	if h.EffectiveAttempts() != 10 || h.EffectiveInterval() != 10*time.Second || h.EffectiveInitialDelay() != 30*time.Second || h.EffectiveTimeout() != 5*time.Second {
		t.Error("health defaults")
	}
	h.InitialDelay = Duration{Raw: "0"}
	if h.EffectiveInitialDelay() != 0 {
		t.Error("initial_delay: 0 must mean no delay")
	}
	r := ResourcesCheck{}
	if r.EffectiveCPU() != 80 || r.EffectiveMemory() != 85 || r.EffectiveDisk() != 90 || r.EffectiveDiskPath() != "/" {
		t.Error("resources defaults")
	}
}

func TestTestDefaults(t *testing.T) {
	t.Parallel()
	no := false
	if !(Test{}).RollbackOnFailureOr() || (Test{RollbackOnFailure: &no}).RollbackOnFailureOr() {
		t.Error("rollback_on_failure default true, false honoured")
	}
	var l *LoadTest
	if l.EffectiveVUs() != 50 || l.EffectiveDuration() != 5*time.Minute || l.EffectiveThinkTime() != time.Second || !reflect.DeepEqual(l.EffectiveGates(), LoadGates{P95MS: 2100, ErrorRate: 0.01}) {
		t.Error("load defaults")
	}
	l = &LoadTest{Gates: LoadGates{ErrorRate: 0}}
	if l.EffectiveGates().ErrorRate != 0.01 {
		t.Error("error_rate not written takes the default")
	}
	if (SmokeTest{}).EffectiveType() != "smoke" || (SmokeTest{}).EffectiveTimeout() != 10*time.Second || (Request{}).EffectiveMethod() != "GET" {
		t.Error("smoke defaults")
	}
	if !StatusOK(0, 204) || StatusOK(0, 301) || !StatusOK(201, 201) || StatusOK(201, 200) {
		t.Error("StatusOK")
	}
	if (Notify{Email: &EmailNotify{When: "failure"}}).ShouldSend(true) || !(Notify{Slack: &SlackNotify{}}).ShouldSend(true) {
		t.Error("ShouldSend")
	}
}
