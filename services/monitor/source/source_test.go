package source

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/monitor/rules"
)

func samples(t *testing.T, src Source) map[string]float64 {
	t.Helper()
	ss, err := src.Collect(context.Background())
	if err != nil {
		t.Fatalf("%s: Collect: %v", src.Name(), err)
	}
	out := map[string]float64{}
	for _, s := range ss {
		out[s.Metric] = s.Value
	}
	return out
}

func TestHTTPProbe(t *testing.T) {
	t.Parallel()
	var mode atomic.Value // "ok", "fail", "slow"
	mode.Store("ok")
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodHead {
			t.Errorf("method = %s; want HEAD", r.Method)
		}
		switch mode.Load() {
		case "fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()

	src, err := New(plan.Source{HTTPProbe: &plan.HTTPProbe{URL: srv.URL + "/health?token=secret", Method: "head", Requests: 4}}, Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src.Name(), "secret") || src.Kind() != KindHTTPProbe {
		t.Errorf("name %q kind %q: want the kind and URL without its query", src.Name(), src.Kind())
	}

	got := samples(t, src)
	if hits.Load() != 4 {
		t.Errorf("requests sent = %d; want 4", hits.Load())
	}
	if got[rules.MetricErrorRate] != 0 || got[rules.MetricP95] <= 0 || got[rules.MetricP95] > 200 {
		t.Errorf("good target: %v; want error rate 0 and a small positive p95", got)
	}

	mode.Store("fail")
	if got := samples(t, src); got[rules.MetricErrorRate] != 1 {
		t.Errorf("failing target: %v; want error rate 1", got)
	}

	mode.Store("slow")
	if got := samples(t, src); got[rules.MetricErrorRate] != 1 || got[rules.MetricP95] < 200 {
		t.Errorf("slow target: %v; want error rate 1 (timeouts) and p95 ≥ the 200ms timeout", got)
	}

	// Down: every connection turned away at once. (Not srv.Close(): its
	// port may be handed to another test's listener meanwhile, and a
	// listener that never answers makes timeouts, which do have a latency.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0) // close with a reset, as a stopped target refuses
			_ = c.Close()
		}
	}()
	down, err := New(plan.Source{HTTPProbe: &plan.HTTPProbe{URL: "http://" + ln.Addr().String() + "/health", Method: "head", Requests: 4}}, Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got = samples(t, down)
	if got[rules.MetricErrorRate] != 1 {
		t.Errorf("target down: %v; want error rate 1 (fail closed)", got)
	}
	if _, has := got[rules.MetricP95]; has {
		t.Errorf("target down: p95 %v; want none (requests turned away at once have no latency)", got[rules.MetricP95])
	}
}

func TestPrometheusScrape(t *testing.T) {
	t.Parallel()
	// A real target instrumented with client_golang.
	reg := prometheus.NewRegistry()
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Buckets: []float64{0.05, 0.1, 0.5, 1, 5},
	}, []string{"route"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total"}, []string{"route"})
	reg.MustRegister(hist, errs)
	var broken atomic.Bool
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		metrics.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	src, err := New(plan.Source{PrometheusScrape: &plan.PrometheusScrape{
		URL: srv.URL, LatencyHistogram: "http_request_duration_seconds", ErrorsCounter: "http_errors_total",
	}}, Config{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(src.Name(), "/metrics") {
		t.Errorf("name %q: want the /metrics path added", src.Name())
	}

	// Traffic before the first scrape is history, not this window.
	for range 100 {
		hist.WithLabelValues("/old").Observe(3)
	}
	if got := samples(t, src); len(got) != 0 {
		t.Errorf("first scrape: %v; want only a baseline", got)
	}
	if got := samples(t, src); len(got) != 0 {
		t.Errorf("no traffic: %v; want no samples (not zero)", got)
	}

	// 20 requests: 19 fast (≤ 50ms), one slow in (0.5, 1]; 2 errors.
	for range 19 {
		hist.WithLabelValues("/a").Observe(0.01)
	}
	hist.WithLabelValues("/b").Observe(0.7)
	errs.WithLabelValues("/a").Add(2)
	got := samples(t, src)
	// rank 19 of 20 lands in the first bucket: 0 + 0.05·19/19 = 50ms.
	if got[rules.MetricP95] != 50 || got[rules.MetricErrorRate] != 0.1 {
		t.Errorf("traffic: %v; want p95 50ms, error rate 0.1", got)
	}

	// A failed scrape is an error, never a value, and keeps the baseline.
	broken.Store(true)
	if ss, err := src.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("broken scrape: %v, %v; want a status error", ss, err)
	}
	broken.Store(false)
	for range 10 {
		hist.WithLabelValues("/a").Observe(2)
	}
	if got := samples(t, src); got[rules.MetricP95] <= 1000 || got[rules.MetricErrorRate] != 0 {
		t.Errorf("after a failed scrape: %v; want p95 in (1000, 5000]ms from the 10 new slow requests, error rate 0", got)
	}
}

func TestNewInvalidSources(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]plan.Source{
		"no kind":                  {},
		"both kinds":               {HTTPProbe: &plan.HTTPProbe{URL: "http://x"}, PrometheusScrape: &plan.PrometheusScrape{URL: "http://x", LatencyHistogram: "h"}},
		"relative url":             {HTTPProbe: &plan.HTTPProbe{URL: "/health"}},
		"ftp url":                  {HTTPProbe: &plan.HTTPProbe{URL: "ftp://x/y"}},
		"scrape without histogram": {PrometheusScrape: &plan.PrometheusScrape{URL: "http://x"}},
	} {
		src, err := New(s, Config{})
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if _, cerr := src.Collect(context.Background()); cerr == nil {
			t.Errorf("%s: the broken source's rounds must fail", name)
		}
	}
}
