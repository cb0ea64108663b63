package source

import (
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/common/model"
)

// ErrNoData is a PromQL result with nothing to measure: an empty vector, or
// only NaN values. The metric is missing this round, never a pass.
var ErrNoData = errors.New("no data")

// PromQLValue is the value of an instant query.
type PromQLValue struct {
	Value float64
	// Labels of the vector element the value is (nil for a scalar).
	Labels map[string]string
	// Series is how many elements the vector had.
	Series int
}

// PromQLValueOf is the value an instant query's result (as client_golang's
// API client decodes it) gives a metric. A vector takes its highest
// element (the monitor's metrics are worse when higher), a scalar its
// value. An empty vector or a NaN value is ErrNoData; a matrix or string
// result is an error saying to write an instant query. ±Inf is a value
// (histogram_quantile's answer when the quantile is in the +Inf bucket:
// very slow).
func PromQLValueOf(v model.Value) (PromQLValue, error) {
	switch r := v.(type) {
	case *model.Scalar:
		if r == nil || math.IsNaN(float64(r.Value)) {
			return PromQLValue{}, fmt.Errorf("scalar is NaN: %w", ErrNoData)
		}
		return PromQLValue{Value: float64(r.Value)}, nil
	case model.Vector:
		if len(r) == 0 {
			return PromQLValue{}, fmt.Errorf("empty vector: %w", ErrNoData)
		}
		best := PromQLValue{Value: math.NaN(), Series: len(r)}
		for _, s := range r {
			if s == nil {
				continue
			}
			if v := float64(s.Value); !math.IsNaN(v) && (math.IsNaN(best.Value) || v > best.Value) {
				best.Value, best.Labels = v, labelsOf(s.Metric)
			}
		}
		if math.IsNaN(best.Value) {
			return PromQLValue{}, fmt.Errorf("every element of the vector is NaN: %w", ErrNoData)
		}
		return best, nil
	case nil:
		return PromQLValue{}, errors.New("not a Prometheus API response: no result")
	}
	return PromQLValue{}, fmt.Errorf("result type %q: the query must give an instant vector or a scalar (use an instant query, e.g. with rate(...[1m]) rather than a range)", v.Type())
}

func labelsOf(m model.Metric) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}
