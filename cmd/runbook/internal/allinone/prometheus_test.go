package allinone_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor"
	"github.com/kis-core/runbook/services/monitor/source"
)

// Real Prometheus and Alertmanager servers, from Debian's prometheus and
// prometheus-alertmanager packages (.ci/run installs them), started by the
// tests on loopback ports with their own config and data in t.TempDir().

// needBinary finds a server binary: missing, the test fails under CI=true
// and is skipped loudly otherwise.
func needBinary(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	missing(t, "%s not found on PATH: install Debian's prometheus and prometheus-alertmanager (apt-get install -y prometheus prometheus-alertmanager)", strings.Join(names, " / "))
	return ""
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startServer runs a server binary until the test ends (killed at cleanup)
// and waits for its /-/ready. Its output is shown when the test fails.
func startServer(t *testing.T, name, bin, addr string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(out.String(), 3000))
		}
	})
	base := "http://" + addr
	natstest.Eventually(t, 30*time.Second, name+" ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", name, tail(out.String(), 3000))
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// startPrometheus scrapes target (host:port) every second.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := needBinary(t, "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: estimator
    static_configs: [{targets: [%q]}]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	return startServer(t, "prometheus", bin, addr,
		"--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
}

// promQuery runs an instant query on a real Prometheus, as the
// prometheus_query source does.
func promQuery(base, q string) (source.PromQLValue, error) {
	src, err := source.NewPrometheusQuery(plan.PrometheusQuery{URL: base, Queries: map[string]string{"q": q}}, source.Config{})
	if err != nil {
		return source.PromQLValue{}, err
	}
	return src.Query(context.Background(), q)
}

// traffic sends the estimator a steady trickle of API requests (the
// Prometheus series need traffic to have rates) until the test ends.
func traffic(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/estimates", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
}

// sourcesBlock matches a plan's monitor.sources list (indented 4+ spaces).
var sourcesBlock = regexp.MustCompile(`(?m)^  sources:\n(?:(?:    .*|\s*)\n)*`)

// withSources replaces an example plan's monitor sources.
func withSources(t *testing.T, sources string) func(string) string {
	return func(s string) string {
		if !sourcesBlock.MatchString(s) {
			t.Fatal("the example plan has no monitor.sources block")
		}
		return sourcesBlock.ReplaceAllLiteralString(s, "  sources:\n"+sources)
	}
}

func violations(evs []*runbookv1.Event) []*runbookv1.ThresholdViolated {
	var out []*runbookv1.ThresholdViolated
	for _, e := range evs {
		if v := e.GetThresholdViolated(); v != nil {
			out = append(out, v)
		}
	}
	return out
}

func rollbackRequested(evs []*runbookv1.Event) *runbookv1.RollbackRequested {
	for _, e := range evs {
		if r := e.GetRollbackRequested(); r != nil {
			return r
		}
	}
	return nil
}

// A real Prometheus scrapes the demo estimator; the plan's only monitor
// source is a prometheus_query of the error rate and p95. The bad release's
// error rate is caught by the query and the run is rolled back; the good
// release passes.
func TestPrometheusQueryGateCatchesBadRelease(t *testing.T) {
	tg := startTarget(t)
	prom := startPrometheus(t, strings.TrimPrefix(tg.url, "http://"))
	traffic(t, tg.url)
	const errorRate = `sum(rate(estimator_http_errors_total[5s])) / sum(rate(estimator_http_requests_total[5s]))`
	natstest.Eventually(t, 30*time.Second, "Prometheus has the estimator's request rate", func() bool {
		v, err := promQuery(prom, errorRate)
		return err == nil && v.Value == 0
	})
	sources := fmt.Sprintf(`    - prometheus_query:
        url: %q
        queries:
          error_rate: '%s'
          api_response_time_p95: 'histogram_quantile(0.95, sum(rate(estimator_http_request_duration_seconds_bucket[5s])) by (le)) * 1000'
`, prom, errorRate)
	p := startPipeline(t, nil)

	good := p.submit(t, examplePlan(t, "good.yaml", tg, func(s string) string { return withSources(t, sources)(shorten(s)) }))
	rr := p.report(t, good, 90*time.Second)
	evs := p.history(t, good)
	if rr.Status != "SUCCESS" {
		t.Fatalf("good release ended %s: %v\n%s", rr.Status, types(evs), rr.QcSummary)
	}
	if vs := violations(evs); len(vs) != 0 {
		t.Errorf("good release: violations %v", vs)
	}
	done, _ := p.bus.LastEvent(context.Background(), good, "monitor.completed")
	if mc := done.Event.GetMonitorCompleted(); mc.GetSamples() == 0 || mc.GetMax()["error_rate"] != 0 {
		t.Errorf("good release: monitor.completed %v; want samples of the queries, error_rate 0", mc)
	}

	// Only the monitor may roll back: the tests' failures on the bad
	// release would race it otherwise.
	bad := p.submit(t, examplePlan(t, "bad-release.yaml", tg, func(s string) string {
		if !strings.Contains(s, "\ntest:\n") {
			t.Fatal("bad-release.yaml has no test section")
		}
		return strings.Replace(withSources(t, sources)(shorten(s)), "\ntest:\n", "\ntest:\n  rollback_on_failure: false\n", 1)
	}))
	rr = p.report(t, bad, 90*time.Second)
	evs = p.history(t, bad)
	if rr.Status != "ROLLED_BACK" {
		t.Fatalf("bad release ended %s: %v\n%s", rr.Status, types(evs), rr.QcSummary)
	}
	req := rollbackRequested(evs)
	if req == nil || req.GetRequestedBy() != monitor.RequestedBy || req.GetMetric() != "error_rate" || !(req.GetValue() > 0.015) {
		t.Fatalf("rollback.requested = %v; want the monitor's, on error_rate above 1.5 %%", req)
	}
	found := false
	for _, v := range violations(evs) {
		if v.GetMetric() == "error_rate" && strings.HasPrefix(v.GetSource(), "prometheus_query "+prom) {
			found = true
		}
	}
	if !found {
		t.Errorf("no error_rate violation from the prometheus_query source: %v", violations(evs))
	}
	if rel := tg.release(t); !strings.Contains(rel, "v2.4.0") || strings.Contains(rel, "bad") {
		t.Errorf("after the rollback the target answers %s, want the good release v2.4.0", rel)
	}
}

// A real Alertmanager routes a firing alert to runbook serve's receiver
// while a run is in its window: a CRITICAL violation alert:<name> with the
// alert's labels, and a rollback. An alert of another service is ignored.
func TestAlertmanagerAlertRollsBack(t *testing.T) {
	bin := needBinary(t, "prometheus-alertmanager", "alertmanager")
	tg := startTarget(t)
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })

	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: runbook
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: runbook
    webhook_configs:
      - url: "http://%s%s"
        send_resolved: true
`, p.srv.HTTPAddr(), monitor.AlertmanagerPath)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	am := startServer(t, "alertmanager", bin, addr,
		"--config.file="+filepath.Join(dir, "alertmanager.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")

	sources := "    - alertmanager: {match: {service: estimator}}\n"
	run := p.submit(t, examplePlan(t, "good.yaml", tg, func(s string) string {
		s = withSources(t, sources)(s)
		return strings.Replace(strings.Replace(s, "window: 12s", "window: 60s", 1), "interval: 2s", "interval: 500ms", 1)
	}))
	natstest.Eventually(t, 60*time.Second, "the run's window started", func() bool {
		e, err := p.bus.LastEvent(context.Background(), run, "monitor.started")
		return err == nil && e != nil
	})
	alerts := `[{"labels":{"alertname":"BillingDown","service":"billing"}},
	 {"labels":{"alertname":"EstimatorErrors","service":"estimator","severity":"page"},"annotations":{"summary":"5xx above 5%"}}]`
	posted := time.Now()
	resp, err := http.Post(am+"/api/v2/alerts", "application/json", strings.NewReader(alerts))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}

	rr := p.report(t, run, 60*time.Second)
	evs := p.history(t, run)
	if rr.Status != "ROLLED_BACK" {
		t.Fatalf("run ended %s: %v\n%s", rr.Status, types(evs), rr.QcSummary)
	}
	for _, e := range evs {
		if e.GetRollbackRequested() != nil {
			t.Logf("alert posted to Alertmanager → rollback.requested: %s (interval 500ms)", e.GetTime().AsTime().Sub(posted).Round(time.Millisecond))
		}
	}
	req := rollbackRequested(evs)
	if req == nil || req.GetRequestedBy() != monitor.RequestedBy || req.GetMetric() != "alert:EstimatorErrors" || !strings.Contains(req.GetReason(), "EstimatorErrors is firing") {
		t.Fatalf("rollback.requested = %v; want the monitor's, for alert:EstimatorErrors", req)
	}
	vs := violations(evs)
	if len(vs) == 0 || vs[0].GetMetric() != "alert:EstimatorErrors" || vs[0].GetSeverity() != "CRITICAL" ||
		!strings.Contains(vs[0].GetSource(), `alertname="EstimatorErrors"`) || !strings.Contains(vs[0].GetSource(), `severity="page"`) {
		t.Fatalf("violations = %v; want a CRITICAL alert:EstimatorErrors with the alert's labels as source", vs)
	}
	for _, v := range vs {
		if strings.Contains(v.GetMetric(), "BillingDown") {
			t.Errorf("an alert of another service counted: %v", v)
		}
	}
	if rel := tg.release(t); !strings.Contains(rel, "v2.4.0") {
		t.Errorf("after the rollback the target answers %s", rel)
	}
}
