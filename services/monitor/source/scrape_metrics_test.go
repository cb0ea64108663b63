package source

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

func TestScrapeMetrics(t *testing.T) {
	t.Parallel()
	q := []MetricQuery{
		{Name: "http_requests_total", Type: plan.ScrapeCounterRate, Match: map[string]string{"code": "500"}, Scale: 1, As: "errors_per_second"},
		{Name: "http_requests_total", Type: plan.ScrapeCounterRate, Scale: 1, As: "requests_per_second"},
		{Name: "http_request_duration_seconds", Type: plan.ScrapeHistogramQuantile, Quantile: 0.5, Match: map[string]string{"route": "/a"}, Scale: 1000, As: "a_p50_ms"},
		{Name: "http_errors_total", Type: plan.ScrapeGauge, Scale: 1, As: "errors_now"},
		{Name: "queue_depth", Type: plan.ScrapeGauge, Scale: 1, As: "queue"},
		{Name: "http_requests_total", Type: plan.ScrapeGauge, Match: map[string]string{"code": "404"}, Scale: 1, As: "not_found"},
		{Name: "http_request_duration_seconds", Type: plan.ScrapeGauge, Scale: 1, As: "hist_as_gauge"},
		{Name: "http_errors_total", Type: plan.ScrapeHistogramQuantile, Quantile: 0.9, Scale: 1, As: "counter_as_hist"},
	}
	parse := func(a1, a2, a3, b1, e1 int, at time.Time) *Scrape {
		s, err := ParseScrape(strings.NewReader(exposition(a1, a2, a3, b1, e1)), ScrapeQuery{Metrics: q})
		if err != nil {
			t.Fatal(err)
		}
		s.At = at
		return s
	}
	t0 := time.Unix(1000, 0)
	prev := parse(50, 90, 100, 0, 1, t0)
	// 10 s later: 100 more requests on /a (50 ≤ 0.1 s, 40 ≤ 0.5 s, 10 ≤ 1 s), 2 more errors.
	cur := parse(100, 180, 200, 0, 3, t0.Add(10*time.Second))

	got, miss := CompareMetrics(nil, prev, q)
	vals := samplesByMetric(got)
	if len(vals) != 1 || vals["errors_now"] != 1 {
		t.Errorf("first scrape: %v; want only the gauge errors_now=1 (rates and quantiles need two scrapes)", vals)
	}
	got, miss = CompareMetrics(prev, cur, q)
	vals = samplesByMetric(got)
	want := map[string]float64{
		"errors_per_second":   0.2, // 2 errors / 10 s
		"requests_per_second": 10,  // 100 / 10 s (the 200s and 500s)
		"a_p50_ms":            100, // median of Δ: 50th of 100 is at the 0.1 s bound
		"errors_now":          3,
	}
	for m, w := range want {
		if v, ok := vals[m]; !ok || math.Abs(v-w) > 1e-9 {
			t.Errorf("%s = %v (present %v); want %v", m, v, ok, w)
		}
	}
	for _, m := range []string{"queue", "not_found", "hist_as_gauge", "counter_as_hist"} {
		if _, ok := vals[m]; ok {
			t.Errorf("%s has a sample; want it missing", m)
		}
	}
	for m, has := range map[string]string{
		"queue":           `"queue_depth" is not in the scrape`,
		"not_found":       `no series of "http_requests_total" has the labels {code="404"}`,
		"hist_as_gauge":   "is a HISTOGRAM: read it with type histogram_quantile",
		"counter_as_hist": "is a COUNTER, not a histogram",
	} {
		if err := miss[m]; err == nil || !strings.Contains(err.Error(), has) {
			t.Errorf("missing[%s] = %v; want %q", m, err, has)
		}
	}
	if len(miss) != 4 {
		t.Errorf("missing = %v; want 4 metrics", miss)
	}

	// A counter reset (the target restarted) counts from zero.
	reset := parse(10, 10, 10, 0, 1, t0.Add(20*time.Second))
	got, _ = CompareMetrics(cur, reset, q)
	if v := samplesByMetric(got)["errors_per_second"]; math.Abs(v-0.1) > 1e-9 {
		t.Errorf("after a reset errors_per_second = %v; want 1 error / 10 s", v)
	}
	// No time between two scrapes: the rate is missing, not infinite.
	_, miss = CompareMetrics(cur, cur, q)
	if miss["requests_per_second"] == nil {
		t.Error("a rate over no time was not reported missing")
	}
}

func samplesByMetric(ss []Sample) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		out[s.Metric] = s.Value
	}
	return out
}

// The demo estimator's real /metrics: a plan's metrics entries read it.
func TestParseScrapeEstimatorText(t *testing.T) {
	t.Parallel()
	q := ScrapeQuery{
		Histogram: "estimator_http_request_duration_seconds", Requests: "estimator_http_requests_total", Errors: "estimator_http_errors_total",
		Metrics: []MetricQuery{
			{Name: "estimator_http_requests_total", Type: plan.ScrapeGauge, Match: map[string]string{"path": "/api/v1/estimates"}, Scale: 1, As: "estimates_requests"},
			{Name: "estimator_release_info", Type: plan.ScrapeGauge, Scale: 1, As: "release"},
		},
	}
	s, err := ParseScrape(bytes.NewReader(readTestdata(t, "estimator_metrics.txt")), q)
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 20 || s.Requests != 20 || !s.ErrorsSeen || s.Errors != 0 {
		t.Errorf("scrape = count %v requests %v errors %v; want the 20 GET /api/v1/estimates of the capture", s.Count, s.Requests, s.Errors)
	}
	if s.Series[0].Err != nil || s.Series[0].Value != 20 || s.Series[1].Err != nil || s.Series[1].Value != 1 {
		t.Errorf("series = %+v", s.Series)
	}
}

// A scrape without the latency histogram (only metrics entries) parses.
func TestParseScrapeWithoutHistogram(t *testing.T) {
	t.Parallel()
	s, err := ParseScrape(strings.NewReader("# TYPE up gauge\nup 1\n"), ScrapeQuery{Metrics: []MetricQuery{{Name: "up", Type: plan.ScrapeGauge, Scale: 1, As: "up"}}})
	if err != nil || len(s.Series) != 1 || s.Series[0].Value != 1 {
		t.Fatalf("scrape = %+v, %v", s, err)
	}
	if got := CompareScrapes(s, s, false); len(got) != 0 {
		t.Errorf("no histogram, no error counter: samples %v; want none", got)
	}
}

// FuzzParseScrape: garbage text never panics, and what parses compares
// without panicking either.
func FuzzParseScrape(f *testing.F) {
	f.Add(readTestdata(f, "estimator_metrics.txt"))
	f.Add([]byte(exposition(5, 8, 10, 4, 2)))
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"0.1\"} 3\nh_sum 1\nh_count 5\n"))
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"NaN\"} NaN\nh_bucket{le=\"+Inf\"} -1\nh_count 1e400\n"))
	f.Add([]byte("# TYPE http_errors_total counter\nhttp_errors_total{route=\"/a\"} NaN\n"))
	q := ScrapeQuery{
		Histogram: "h", Errors: "http_errors_total",
		Metrics: []MetricQuery{
			{Name: "h", Type: plan.ScrapeHistogramQuantile, Quantile: 0.95, Scale: 1, As: "hq"},
			{Name: "http_errors_total", Type: plan.ScrapeCounterRate, Match: map[string]string{"route": "/a"}, Scale: 1, As: "er"},
			{Name: "http_errors_total", Type: plan.ScrapeGauge, Scale: 1, As: "eg"},
		},
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		for _, query := range []ScrapeQuery{q, {Histogram: "estimator_http_request_duration_seconds", Errors: "estimator_http_errors_total", Requests: "estimator_http_requests_total"}} {
			s, err := ParseScrape(bytes.NewReader(text), query)
			if err != nil {
				continue
			}
			s.At = time.Unix(10, 0)
			prev := *s
			prev.At = time.Unix(0, 0)
			CompareScrapes(&prev, s, true)
			CompareMetrics(&prev, s, query.Metrics)
		}
	})
}
