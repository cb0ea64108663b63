package source

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/monitor/stats"
)

const histText = `# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/a",le="0.1"} %A1
http_request_duration_seconds_bucket{route="/a",le="0.5"} %A2
http_request_duration_seconds_bucket{route="/a",le="1"} %A3
http_request_duration_seconds_bucket{route="/a",le="+Inf"} %A3
http_request_duration_seconds_sum{route="/a"} 1
http_request_duration_seconds_count{route="/a"} %A3
http_request_duration_seconds_bucket{route="/b",le="0.1"} %B1
http_request_duration_seconds_bucket{route="/b",le="0.5"} %B1
http_request_duration_seconds_bucket{route="/b",le="1"} %B1
http_request_duration_seconds_bucket{route="/b",le="+Inf"} %B1
http_request_duration_seconds_sum{route="/b"} 1
http_request_duration_seconds_count{route="/b"} %B1
# TYPE http_requests_total counter
http_requests_total{code="200"} %R1
http_requests_total{code="500"} %E1
# TYPE http_errors_total counter
http_errors_total{route="/a"} %E1
`

// exposition fills histText: route /a has a1 ≤ 0.1s, a2 ≤ 0.5s, a3 ≤ 1s
// (cumulative); route /b has b1 ≤ 0.1s; e1 errors.
func exposition(a1, a2, a3, b1, e1 int) string {
	r := strings.NewReplacer("%A1", itoa(a1), "%A2", itoa(a2), "%A3", itoa(a3), "%B1", itoa(b1), "%R1", itoa(a3+b1-e1), "%E1", itoa(e1))
	return r.Replace(histText)
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestParseScrape(t *testing.T) {
	t.Parallel()
	q := ScrapeQuery{Histogram: "http_request_duration_seconds", Errors: "http_errors_total"}
	s, err := ParseScrape(strings.NewReader(exposition(5, 8, 10, 4, 2)), q)
	if err != nil {
		t.Fatal(err)
	}
	want := []stats.Bucket{{Upper: 0.1, Count: 9}, {Upper: 0.5, Count: 12}, {Upper: 1, Count: 14}, {Upper: math.Inf(1), Count: 14}}
	if len(s.Buckets) != len(want) {
		t.Fatalf("buckets = %v; want %v", s.Buckets, want)
	}
	for i := range want {
		if s.Buckets[i] != want[i] {
			t.Fatalf("buckets = %v; want %v (summed over label sets)", s.Buckets, want)
		}
	}
	if s.Count != 14 || s.Requests != 14 || s.Errors != 2 || !s.ErrorsSeen {
		t.Errorf("scrape = %+v; want count 14, requests 14 (the _count), errors 2", s)
	}

	q.Requests = "http_requests_total"
	if s, err = ParseScrape(strings.NewReader(exposition(5, 8, 10, 4, 2)), q); err != nil || s.Requests != 14 {
		t.Errorf("requests counter: %+v, %v; want 14 summed over codes", s, err)
	}

	q.Requests = "http_request_duration_seconds_count"
	if s, err = ParseScrape(strings.NewReader(exposition(5, 8, 10, 4, 2)), q); err != nil || s.Requests != 14 {
		t.Errorf("<histogram>_count as requests counter: %+v, %v; want the histogram's count", s, err)
	}

	for name, tt := range map[string]struct {
		text string
		q    ScrapeQuery
		want string
	}{
		"histogram missing":        {exposition(1, 1, 1, 1, 0), ScrapeQuery{Histogram: "nope"}, `histogram "nope" is not in the scrape`},
		"not a histogram":          {exposition(1, 1, 1, 1, 0), ScrapeQuery{Histogram: "http_errors_total"}, "not a histogram"},
		"requests counter missing": {exposition(1, 1, 1, 1, 0), ScrapeQuery{Histogram: q.Histogram, Requests: "nope"}, `requests counter "nope"`},
		"garbage":                  {"this is { not metrics\n", q, "parse metrics text"},
	} {
		if _, err := ParseScrape(strings.NewReader(tt.text), tt.q); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v; want it to contain %q", name, err, tt.want)
		}
	}

	// An error counter that was never incremented exports nothing: zero.
	s, err = ParseScrape(strings.NewReader(exposition(1, 1, 1, 1, 0)), ScrapeQuery{Histogram: q.Histogram, Errors: "absent_total"})
	if err != nil || s.Errors != 0 || s.ErrorsSeen {
		t.Errorf("absent error counter: %+v, %v", s, err)
	}
}

func TestParseScrapeAddsMissingInfBucket(t *testing.T) {
	t.Parallel()
	text := "# TYPE h histogram\nh_bucket{le=\"0.1\"} 3\nh_sum 1\nh_count 5\n"
	s, err := ParseScrape(strings.NewReader(text), ScrapeQuery{Histogram: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Buckets); n != 2 || !math.IsInf(s.Buckets[1].Upper, 1) || s.Buckets[1].Count != 5 {
		t.Errorf("buckets = %v; want 0.1:3 and +Inf:5", s.Buckets)
	}
}

func TestCompareScrapes(t *testing.T) {
	t.Parallel()
	q := ScrapeQuery{Histogram: "http_request_duration_seconds", Errors: "http_errors_total"}
	parse := func(a1, a2, a3, b1, e1 int) *Scrape {
		s, err := ParseScrape(strings.NewReader(exposition(a1, a2, a3, b1, e1)), q)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := parse(50, 90, 100, 0, 1)
	tests := []struct {
		name       string
		prev, cur  *Scrape
		withErrors bool
		p95        float64 // -1: none
		errRate    float64 // -1: none
	}{
		{"first scrape is only the baseline", nil, base, true, -1, -1},
		{"no traffic: no samples, not zero", base, parse(50, 90, 100, 0, 1), true, -1, -1},
		// Δ: 50 ≤ 0.1, 40 in (0.1,0.5], 10 in (0.5,1] → p95 0.75s = 750ms.
		{"deltas, interpolated", base, parse(100, 180, 200, 0, 3), true, 750, 0.02},
		// Δ all in /b (≤ 0.1): p95 = 0.1·0.95 = 95ms.
		{"only the new traffic counts", base, parse(50, 90, 100, 100, 1), true, 95, 0},
		{"no error counter named: no error rate", base, parse(100, 180, 200, 0, 3), false, 750, -1},
		// Reset: the target restarted and has counted (10 ≤ 0.1, 10 total, 1 error) since.
		{"counter reset uses the current values", base, parse(10, 10, 10, 0, 1), true, 95, 0.1},
	}
	for _, tt := range tests {
		got := map[string]float64{}
		for _, s := range CompareScrapes(tt.prev, tt.cur, tt.withErrors) {
			got[s.Metric] = s.Value
		}
		check := func(metric string, want float64) {
			v, has := got[metric]
			switch {
			case want < 0 && has:
				t.Errorf("%s: %s = %v; want no sample", tt.name, metric, v)
			case want >= 0 && !has:
				t.Errorf("%s: no %s sample; want %v", tt.name, metric, want)
			case want >= 0 && math.Abs(v-want) > 1e-6:
				t.Errorf("%s: %s = %v; want %v", tt.name, metric, v, want)
			}
		}
		check(rules.MetricP95, tt.p95)
		check(rules.MetricErrorRate, tt.errRate)
	}
}
