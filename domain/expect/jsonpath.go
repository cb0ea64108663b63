// Package expect judges one HTTP response against a plan's expectations
// (plan.Expect: status, latency, headers, JSON fields, body): the smoke
// tests' assertions, and the deployer's health checks, wait.until and http
// steps. It also takes captured values from a response and expands ${name}
// in requests (the tester's smoke steps). It is pure: no network, no clock,
// no environment.
package expect

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Lookup finds path in a decoded JSON document. A path is dotted
// ("data.estimate.id"); a segment that is an integer indexes an array
// ("items.0.code"), and "items[0].code" is accepted too. A top-level key that
// itself contains dots is found when written whole ("a.b" → doc["a.b"]).
// It reports whether the field exists (a JSON null exists).
//
// A leading "$." (or a path of just "$", the whole document) is accepted and
// ignored, so JSONPath-style "$.data.token" reads like "data.token". The
// grammar is plan.JSONPathSegments, which validation checks: a path outside
// it finds nothing.
func Lookup(doc any, path string) (any, bool) {
	if m, ok := doc.(map[string]any); ok && path != "" && path != "$" {
		if v, ok := m[strings.TrimPrefix(path, "$.")]; ok {
			return v, true
		}
	}
	segs, err := plan.JSONPathSegments(path)
	if err != nil {
		return nil, false
	}
	cur := doc
	for _, seg := range segs {
		switch node := cur.(type) {
		case map[string]any:
			v, ok := node[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, false
			}
			cur = node[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// DecodeJSON decodes a response body keeping numbers exact (json.Number).
func DecodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Equal compares a value written in the plan (as YAML decodes it: ints,
// uints, floats, strings, bools, nil, maps, slices) with a value decoded
// from the response (DecodeJSON). Numbers compare by value whatever their Go
// type (201 equals 201.0); maps compare key by key and must have the same
// keys; slices element by element.
func Equal(want, got any) bool {
	if wn, ok := number(want); ok {
		gn, ok := number(got)
		return ok && wn.Cmp(gn) == 0
	}
	switch w := want.(type) {
	case nil:
		return got == nil
	case string:
		g, ok := got.(string)
		return ok && g == w
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !Equal(w[i], g[i]) {
				return false
			}
		}
		return true
	}
	if wm, ok := stringMap(want); ok {
		gm, ok := stringMap(got)
		if !ok || len(gm) != len(wm) {
			return false
		}
		for k, wv := range wm {
			gv, ok := gm[k]
			if !ok || !Equal(wv, gv) {
				return false
			}
		}
		return true
	}
	return false
}

// number converts any numeric value to an exact rational.
func number(v any) (*big.Rat, bool) {
	r := new(big.Rat)
	switch n := v.(type) {
	case int:
		return r.SetInt64(int64(n)), true
	case int8:
		return r.SetInt64(int64(n)), true
	case int16:
		return r.SetInt64(int64(n)), true
	case int32:
		return r.SetInt64(int64(n)), true
	case int64:
		return r.SetInt64(n), true
	case uint:
		return r.SetUint64(uint64(n)), true
	case uint8:
		return r.SetUint64(uint64(n)), true
	case uint16:
		return r.SetUint64(uint64(n)), true
	case uint32:
		return r.SetUint64(uint64(n)), true
	case uint64:
		return r.SetUint64(n), true
	case float32:
		if r.SetFloat64(float64(n)) == nil {
			return nil, false
		}
		return r, true
	case float64:
		if r.SetFloat64(n) == nil {
			return nil, false
		}
		return r, true
	case json.Number:
		if _, ok := r.SetString(string(n)); !ok {
			return nil, false
		}
		return r, true
	}
	return nil, false
}

// stringMap accepts map[string]any and YAML's map[any]any with string keys.
func stringMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			ks, ok := k.(string)
			if !ok {
				return nil, false
			}
			out[ks] = v
		}
		return out, true
	}
	return nil, false
}
