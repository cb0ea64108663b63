package source

import (
	"fmt"
	"io"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/monitor/stats"
)

// ScrapeQuery names the series a prometheus_scrape reads.
type ScrapeQuery struct {
	// Histogram is the request-duration histogram, in seconds.
	Histogram string
	// Requests is the request counter; empty (or <histogram>_count): the
	// histogram's _count.
	Requests string
	// Errors is the error counter; empty: no error rate from this source.
	Errors string
}

// Scrape is what one scrape read, every value summed over all label sets.
type Scrape struct {
	// Buckets of the histogram, cumulative, sorted, ending with +Inf.
	Buckets []stats.Bucket
	// Count is the histogram's _count.
	Count float64
	// Requests is the request counter (Count when no counter is named).
	Requests float64
	// Errors is the error counter, 0 while it is absent.
	Errors float64
	// ErrorsSeen: the error counter was in the scrape.
	ErrorsSeen bool
}

// ParseScrape reads Prometheus text exposition format (with expfmt's
// parser) and picks out the series q names.
//
// The histogram must be present: without it there is no latency to report.
// The error counter may be absent: a counter vector exports nothing before
// its first increment, so absence is read as "no errors yet" (ErrorsSeen
// tells the two apart for logs). A named request counter must be present.
func ParseScrape(r io.Reader, q ScrapeQuery) (*Scrape, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics text: %w", err)
	}
	s := &Scrape{}
	hist, ok := families[q.Histogram]
	if !ok {
		return nil, fmt.Errorf("histogram %q is not in the scrape", q.Histogram)
	}
	if t := hist.GetType(); t != dto.MetricType_HISTOGRAM && t != dto.MetricType_GAUGE_HISTOGRAM {
		return nil, fmt.Errorf("%q is a %s, not a histogram", q.Histogram, t)
	}
	s.Buckets, s.Count = sumHistogram(hist)
	s.Requests = s.Count
	if q.Requests != "" && q.Requests != q.Histogram+"_count" {
		mf, ok := families[q.Requests]
		if !ok {
			return nil, fmt.Errorf("requests counter %q is not in the scrape", q.Requests)
		}
		s.Requests = sumValues(mf)
	}
	if q.Errors != "" {
		if mf, ok := families[q.Errors]; ok {
			s.Errors, s.ErrorsSeen = sumValues(mf), true
		}
	}
	return s, nil
}

// sumHistogram adds up the buckets of every label set by upper bound (a
// +Inf bucket holding the _count is added to a series that lacks one).
func sumHistogram(mf *dto.MetricFamily) ([]stats.Bucket, float64) {
	byUpper := map[float64]float64{}
	total := 0.0
	for _, m := range mf.GetMetric() {
		h := m.GetHistogram()
		count := float64(h.GetSampleCount())
		if h.SampleCountFloat != nil {
			count = h.GetSampleCountFloat()
		}
		total += count
		hasInf := false
		for _, b := range h.GetBucket() {
			c := float64(b.GetCumulativeCount())
			if b.CumulativeCountFloat != nil {
				c = b.GetCumulativeCountFloat()
			}
			byUpper[b.GetUpperBound()] += c
			if math.IsInf(b.GetUpperBound(), +1) {
				hasInf = true
			}
		}
		if !hasInf {
			byUpper[math.Inf(1)] += count
		}
	}
	out := make([]stats.Bucket, 0, len(byUpper))
	for u, c := range byUpper {
		out = append(out, stats.Bucket{Upper: u, Count: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Upper < out[j].Upper })
	return out, total
}

// sumValues adds up a counter (or untyped or gauge) family over its label sets.
func sumValues(mf *dto.MetricFamily) float64 {
	total := 0.0
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}

// CompareScrapes gives the samples of the interval between two scrapes:
// the p95 latency in ms from the histogram's bucket deltas (interpolated
// inside the bucket like histogram_quantile), and the error rate
// Δerrors / Δrequests (only when an error counter is named). A metric with
// no traffic in between has no sample. A counter that went down was reset
// and counts from zero; when the request count went down the target
// restarted, and all its series are read from zero.
func CompareScrapes(prev, cur *Scrape, withErrors bool) []Sample {
	if prev == nil || cur == nil {
		return nil
	}
	var out []Sample
	// One target, one process: when its request count went down it
	// restarted, and every series counts from zero since, even one that
	// happens to read the same as before.
	restarted := cur.Count < prev.Count || cur.Requests < prev.Requests
	deltas := stats.BucketDeltas(prev.Buckets, cur.Buckets)
	if restarted {
		deltas = cur.Buckets
	}
	if p95, ok := stats.Quantile(0.95, deltas); ok {
		out = append(out, Sample{Metric: rules.MetricP95, Value: p95 * 1000})
	}
	if withErrors {
		dReq := stats.CounterDelta(prev.Requests, cur.Requests)
		dErr := stats.CounterDelta(prev.Errors, cur.Errors)
		if restarted {
			dReq, dErr = cur.Requests, cur.Errors
		}
		if rate, ok := stats.Ratio(dErr, dReq); ok {
			out = append(out, Sample{Metric: rules.MetricErrorRate, Value: min(rate, 1)})
		}
	}
	return out
}
