package deploycheck_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/deploycheck"
)

// registered reports whether reg holds a metric named name. It registers a
// probe gauge of that name with a help of its own: client_golang keeps one
// help and label set per name, so the registry refuses the probe exactly
// when the name is taken.
func registered(t *testing.T, reg *prometheus.Registry, name string) bool {
	t.Helper()
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "deploycheck probe: is " + name + " registered?"})
	err := reg.Register(probe)
	if err == nil {
		reg.Unregister(probe)
		return false
	}
	if msg := err.Error(); strings.Contains(msg, "previously registered descriptor with the same fully-qualified name") ||
		strings.Contains(msg, "already exists with the same fully-qualified name") {
		return true
	}
	t.Fatalf("probe of %s: %v", name, err)
	return false
}

// histogramSeries are the series names a histogram family exposes.
var histogramSeries = regexp.MustCompile(`_(bucket|sum|count)$`)

func readDeploy(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every runbook_* metric the alert rules (expressions and texts) and the
// Grafana dashboard name is registered by runbook's binaries: runbook
// serve registers every service's metrics (the five services, the
// notifier, the consume loop, runbook_build_info) on its registry, which
// is the union of what the separate binaries register. A metric renamed
// in the code and not in deploy/ fails here, naming the file.
func TestRulesAndDashboardUseRegisteredMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := allinone.New(ctx, allinone.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", NoSync: true, Registry: reg})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	if !registered(t, reg, "runbook_build_info") || registered(t, reg, "runbook_no_such_metric_total") {
		t.Fatal("the registration probe does not tell a registered name from another")
	}

	rules, err := deploycheck.RuleTexts(readDeploy(t, "deploy/prometheus/rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := deploycheck.DashboardQueries(readDeploy(t, "deploy/grafana/runbook.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash []string
	for _, qs := range queries {
		dash = append(dash, qs...)
	}
	for file, texts := range map[string][]string{"deploy/prometheus/rules.yml": rules, "deploy/grafana/runbook.json": dash} {
		names := deploycheck.RunbookMetrics(texts...)
		if len(names) < 5 {
			t.Errorf("%s names only %v", file, names)
		}
		for _, n := range names {
			base := histogramSeries.ReplaceAllString(n, "")
			if !registered(t, reg, n) && !(base != n && registered(t, reg, base)) {
				t.Errorf("%s uses %s, which no runbook binary registers", file, n)
			}
		}
	}
	// What the alerts of issue 14 need, and the dashboard shows.
	for file, want := range map[string][]string{
		"deploy/prometheus/rules.yml": {"runbook_rollbacks_failed_total", "runbook_runs_waiting_seconds", "runbook_consumer_pending_messages", "runbook_events_dead_lettered_total"},
		"deploy/grafana/runbook.json": {"runbook_runs_active", "runbook_runs_waiting_seconds", "runbook_rollbacks_failed_total", "runbook_events_dead_lettered_total",
			"runbook_consumer_pending_messages", "runbook_handler_duration_seconds_bucket", "runbook_build_info"},
	} {
		texts := rules
		if strings.HasSuffix(file, ".json") {
			texts = dash
		}
		got := deploycheck.RunbookMetrics(texts...)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s does not use %s", file, w)
			}
		}
	}
}

// promtool finds Prometheus's promtool (Debian's prometheus package, which
// .ci/run installs): missing, the test fails under CI=true and is skipped
// loudly otherwise.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	msg := "promtool is not installed: apt-get install prometheus"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED (not CI): " + msg)
	return ""
}

// grafanaVars are the dashboard's Grafana variables, replaced by what
// Grafana puts there before the query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__range", "6h", "$__interval", "1m")

// Every query of the dashboard is PromQL Prometheus accepts: promtool
// parses each as a recording rule (Grafana's interval variables replaced).
func TestDashboardQueriesAreValidPromQL(t *testing.T) {
	bin := promtool(t)
	queries, err := deploycheck.DashboardQueries(readDeploy(t, "deploy/grafana/runbook.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for title, qs := range queries {
		for _, q := range qs {
			n++
			fmt.Fprintf(&b, "      # %s\n      - record: dashboard:query_%d\n        expr: %q\n", title, n, grafanaVars.Replace(q))
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s\n%s", n, err, out, b.String())
	}
	if !strings.Contains(string(out), fmt.Sprintf("SUCCESS: %d rules found", n)) {
		t.Fatalf("promtool: %s", out)
	}
}
