package source

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kis-core/runbook/domain/plan"
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
	// Metrics are further series to read (the plan's metrics entries).
	Metrics []MetricQuery
}

// MetricQuery is one plan metrics entry of a prometheus_scrape: a family,
// read as a gauge, a counter rate or a histogram quantile, summed over the
// label sets Match selects.
type MetricQuery struct {
	Name     string
	Type     string // plan.ScrapeGauge, plan.ScrapeCounterRate, plan.ScrapeHistogramQuantile
	Quantile float64
	Match    map[string]string
	Scale    float64
	As       string
}

// Series is what one scrape read of one MetricQuery.
type Series struct {
	// Err says why the series could not be read (absent family, no label
	// set matching, wrong type); nil when it was.
	Err error
	// Value is the sum of the matching gauges or counters.
	Value float64
	// Buckets and Count of a histogram, summed as for the latency histogram.
	Buckets []stats.Bucket
	Count   float64
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
	// Series is what was read of each of the query's Metrics, in order.
	Series []Series
	// At is when the scrape was taken (set by the caller; counter rates
	// divide by the time between two scrapes).
	At time.Time
}

// ParseScrape reads Prometheus text exposition format (with expfmt's
// parser) and picks out the series q names.
//
// The histogram, when named, must be present: without it there is no
// latency to report. A Metrics entry that cannot be read is not an error of
// the scrape: its Series says why (the metric is missing, not the scrape).
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
	if q.Histogram != "" {
		hist, ok := families[q.Histogram]
		if !ok {
			return nil, fmt.Errorf("histogram %q is not in the scrape", q.Histogram)
		}
		if !isHistogram(hist) {
			return nil, fmt.Errorf("%q is a %s, not a histogram", q.Histogram, hist.GetType())
		}
		s.Buckets, s.Count = sumHistogram(hist.GetMetric())
		s.Requests = s.Count
	}
	if q.Requests != "" && (q.Histogram == "" || q.Requests != q.Histogram+"_count") {
		mf, ok := families[q.Requests]
		if !ok {
			return nil, fmt.Errorf("requests counter %q is not in the scrape", q.Requests)
		}
		s.Requests = sumValues(mf.GetMetric())
	}
	if q.Errors != "" {
		if mf, ok := families[q.Errors]; ok {
			s.Errors, s.ErrorsSeen = sumValues(mf.GetMetric()), true
		}
	}
	for _, mq := range q.Metrics {
		s.Series = append(s.Series, readSeries(families, mq))
	}
	return s, nil
}

func isHistogram(mf *dto.MetricFamily) bool {
	t := mf.GetType()
	return t == dto.MetricType_HISTOGRAM || t == dto.MetricType_GAUGE_HISTOGRAM
}

// readSeries reads one MetricQuery from a scrape's families.
func readSeries(families map[string]*dto.MetricFamily, mq MetricQuery) Series {
	mf, ok := families[mq.Name]
	if !ok {
		return Series{Err: fmt.Errorf("%q is not in the scrape", mq.Name)}
	}
	var ms []*dto.Metric
	for _, m := range mf.GetMetric() {
		if matches(m, mq.Match) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return Series{Err: fmt.Errorf("no series of %q has the labels %s", mq.Name, formatMatch(mq.Match))}
	}
	if mq.Type == plan.ScrapeHistogramQuantile {
		if !isHistogram(mf) {
			return Series{Err: fmt.Errorf("%q is a %s, not a histogram", mq.Name, mf.GetType())}
		}
		b, c := sumHistogram(ms)
		return Series{Buckets: b, Count: c}
	}
	switch mf.GetType() {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
	default:
		return Series{Err: fmt.Errorf("%q is a %s: read it with type histogram_quantile", mq.Name, mf.GetType())}
	}
	v := sumValues(ms)
	if math.IsNaN(v) {
		return Series{Err: fmt.Errorf("%q is NaN", mq.Name)}
	}
	return Series{Value: v}
}

// matches reports whether m has every label of match with its value.
func matches(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				found = lp.GetValue() == want
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// formatMatch writes a label matcher as {a="x", b="y"}, sorted.
func formatMatch(match map[string]string) string {
	if len(match) == 0 {
		return "{}"
	}
	parts := make([]string, 0, len(match))
	for _, k := range slices.Sorted(maps.Keys(match)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, match[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// CompareMetrics gives the samples of q's Metrics between two scrapes, and
// the metrics that could not be measured with why. A gauge needs only cur;
// a counter rate is the counter's increase per second between the scrapes
// (a counter that went down was reset and counts from zero); a histogram
// quantile comes from the bucket deltas like the latency p95. A counter
// rate or quantile on the first scrape (prev nil), or a quantile with no
// traffic in between, has no sample and is not missing either.
func CompareMetrics(prev, cur *Scrape, q []MetricQuery) ([]Sample, map[string]error) {
	var out []Sample
	miss := map[string]error{}
	if cur == nil {
		return nil, nil
	}
	for i, mq := range q {
		if i >= len(cur.Series) {
			break
		}
		c := cur.Series[i]
		if c.Err != nil {
			miss[mq.As] = c.Err
			continue
		}
		scale := mq.Scale
		if scale == 0 {
			scale = 1
		}
		var p *Series
		if prev != nil && i < len(prev.Series) && prev.Series[i].Err == nil {
			p = &prev.Series[i]
		}
		switch mq.Type {
		case plan.ScrapeCounterRate:
			if p == nil {
				continue
			}
			dt := cur.At.Sub(prev.At).Seconds()
			if !(dt > 0) {
				miss[mq.As] = fmt.Errorf("counter rate of %q: no time between the two scrapes", mq.Name)
				continue
			}
			out = append(out, Sample{Metric: mq.As, Value: stats.CounterDelta(p.Value, c.Value) / dt * scale})
		case plan.ScrapeHistogramQuantile:
			if p == nil {
				continue
			}
			deltas := stats.BucketDeltas(p.Buckets, c.Buckets)
			if c.Count < p.Count {
				deltas = c.Buckets // the target restarted: its counts start from zero
			}
			qt := mq.Quantile
			if qt == 0 {
				qt = plan.DefaultScrapeQuantile
			}
			if v, ok := stats.Quantile(qt, deltas); ok {
				out = append(out, Sample{Metric: mq.As, Value: v * scale})
			}
		default:
			out = append(out, Sample{Metric: mq.As, Value: c.Value * scale})
		}
	}
	return out, miss
}

// sumHistogram adds up the buckets of every label set by upper bound (a
// +Inf bucket holding the _count is added to a series that lacks one).
func sumHistogram(ms []*dto.Metric) ([]stats.Bucket, float64) {
	byUpper := map[float64]float64{}
	total := 0.0
	for _, m := range ms {
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

// sumValues adds up a counter (or untyped or gauge) family's label sets.
func sumValues(ms []*dto.Metric) float64 {
	total := 0.0
	for _, m := range ms {
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
