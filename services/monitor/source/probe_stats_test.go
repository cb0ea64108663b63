package source

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kis-core/runbook/services/monitor/rules"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestSummarizeProbe(t *testing.T) {
	t.Parallel()
	refused := errors.New("connection refused")
	ok := func(lat int) ProbeResult { return ProbeResult{Latency: ms(lat), Status: 200} }
	tests := []struct {
		name    string
		results []ProbeResult
		p95     float64 // -1: no p95 sample
		errRate float64 // -1: no error rate sample
	}{
		{"no requests", nil, -1, -1},
		{"all good", []ProbeResult{ok(10), ok(20), ok(30), ok(40), ok(50), ok(60), ok(70), ok(80), ok(90), ok(100)}, 100, 0},
		{"p95 is nearest rank over the round", []ProbeResult{ok(1), ok(2), ok(3), ok(4), ok(5), ok(6), ok(7), ok(8), ok(9), ok(10), ok(11), ok(12), ok(13), ok(14), ok(15), ok(16), ok(17), ok(18), ok(19), ok(20)}, 19, 0},
		{"5xx counts as an error and its latency counts", []ProbeResult{ok(10), {Latency: ms(500), Status: 503}}, 500, 0.5},
		{"3xx and 4xx are errors", []ProbeResult{{Latency: ms(1), Status: 302}, {Latency: ms(1), Status: 404}, ok(1), ok(1)}, 1, 0.5},
		{"transport error counts as an error (fail closed)", []ProbeResult{ok(10), {Latency: ms(1), Err: refused}}, 10, 0.5},
		{"a refused request says nothing about latency", []ProbeResult{{Latency: ms(1), Err: refused}, {Latency: ms(1), Err: refused}}, -1, 1},
		{"a timed-out request's latency is a lower bound that counts", []ProbeResult{ok(10), {Latency: ms(300), Err: context.DeadlineExceeded, TimedOut: true}}, 300, 0.5},
	}
	for _, tt := range tests {
		got := map[string]float64{}
		for _, s := range SummarizeProbe(tt.results) {
			got[s.Metric] = s.Value
		}
		check := func(metric string, want float64) {
			v, has := got[metric]
			switch {
			case want < 0 && has:
				t.Errorf("%s: %s = %v; want no sample", tt.name, metric, v)
			case want >= 0 && !has:
				t.Errorf("%s: no %s sample; want %v", tt.name, metric, want)
			case want >= 0 && v != want:
				t.Errorf("%s: %s = %v; want %v", tt.name, metric, v, want)
			}
		}
		check(rules.MetricP95, tt.p95)
		check(rules.MetricErrorRate, tt.errRate)
	}
}

func TestProbeResultFailed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r    ProbeResult
		want bool
	}{
		{ProbeResult{Status: 200}, false},
		{ProbeResult{Status: 204}, false},
		{ProbeResult{Status: 199}, true},
		{ProbeResult{Status: 300}, true},
		{ProbeResult{Status: 500}, true},
		{ProbeResult{Status: 200, Err: fmt.Errorf("body cut short")}, true},
		{ProbeResult{}, true},
	} {
		if got := tt.r.Failed(); got != tt.want {
			t.Errorf("%+v.Failed() = %v; want %v", tt.r, got, tt.want)
		}
	}
}
