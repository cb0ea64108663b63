package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
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

// promResponse is the envelope of Prometheus' HTTP API
// (https://prometheus.io/docs/prometheus/latest/querying/api/).
type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type promData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  json.RawMessage   `json:"value"`
}

// ParsePromQLResult reads the JSON of GET /api/v1/query. A vector takes its
// highest element (the monitor's metrics are worse when higher), a scalar
// its value. An empty vector or a NaN value is ErrNoData; an error status,
// a matrix or string result, or JSON that is not the API's is an error
// naming what was wrong. ±Inf is a value (histogram_quantile's answer when
// the quantile is in the +Inf bucket: very slow).
func ParsePromQLResult(body []byte) (PromQLValue, error) {
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return PromQLValue{}, fmt.Errorf("not a Prometheus API response: %w", err)
	}
	if r.Status != "success" {
		if r.Status == "error" {
			return PromQLValue{}, fmt.Errorf("query failed: %s: %s", r.ErrorType, r.Error)
		}
		return PromQLValue{}, fmt.Errorf("not a Prometheus API response: status %q", r.Status)
	}
	var d promData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return PromQLValue{}, fmt.Errorf("not a Prometheus API response: data: %w", err)
	}
	switch d.ResultType {
	case "scalar":
		v, err := parsePromPair(d.Result)
		if err != nil {
			return PromQLValue{}, fmt.Errorf("scalar: %w", err)
		}
		if math.IsNaN(v) {
			return PromQLValue{}, fmt.Errorf("scalar is NaN: %w", ErrNoData)
		}
		return PromQLValue{Value: v}, nil
	case "vector":
		var ss []promSample
		if err := json.Unmarshal(d.Result, &ss); err != nil {
			return PromQLValue{}, fmt.Errorf("vector: %w", err)
		}
		if len(ss) == 0 {
			return PromQLValue{}, fmt.Errorf("empty vector: %w", ErrNoData)
		}
		best := PromQLValue{Value: math.NaN(), Series: len(ss)}
		for i, s := range ss {
			v, err := parsePromPair(s.Value)
			if err != nil {
				return PromQLValue{}, fmt.Errorf("vector element %d: %w", i, err)
			}
			if !math.IsNaN(v) && (math.IsNaN(best.Value) || v > best.Value) {
				best.Value, best.Labels = v, s.Metric
			}
		}
		if math.IsNaN(best.Value) {
			return PromQLValue{}, fmt.Errorf("every element of the vector is NaN: %w", ErrNoData)
		}
		return best, nil
	case "":
		return PromQLValue{}, errors.New("not a Prometheus API response: no resultType")
	}
	return PromQLValue{}, fmt.Errorf("result type %q: the query must give an instant vector or a scalar (use an instant query, e.g. with rate(...[1m]) rather than a range)", d.ResultType)
}

// parsePromPair reads [<unix time>, "<value>"].
func parsePromPair(raw json.RawMessage) (float64, error) {
	var pair []json.RawMessage
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return 0, fmt.Errorf("value %s is not [time, \"value\"]", abbrev(raw))
	}
	var s string
	if err := json.Unmarshal(pair[1], &s); err != nil {
		return 0, fmt.Errorf("value %s is not a quoted number", abbrev(pair[1]))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", abbrev([]byte(s)))
	}
	return v, nil
}

// abbrev bounds what an error quotes of a response.
func abbrev(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
