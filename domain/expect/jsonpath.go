// Package expect judges one HTTP response against a plan's expectations
// (plan.Expect: status, latency, headers, JSON fields, body): the smoke
// tests' assertions, and the deployer's health checks, wait.until and http
// steps. It also takes captured values from a response and expands ${name}
// in requests (the tester's smoke steps). It is pure: no network, no clock,
// no environment.
package expect

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// selected is what a JSON path selects in a response: the values, each
// with its RFC 9535 normalized path ($['items'][2]['status']), in document
// order.
type selected struct {
	values []any
	where  []string
}

// selectPath evaluates path (either form plan.ParseJSONPath reads) on doc,
// a body DecodeJSON decoded. A path that does not parse is an error
// (validation refuses it before a run).
//
// What the expectations make of the values (plan.Expect documents it):
// none is a missing field; json and json_match hold when every value
// selected meets them, json_absent when none is selected; a capture takes
// exactly one value (Capture).
func selectPath(doc any, path string) (selected, error) {
	p, err := plan.ParseJSONPath(path)
	if err != nil {
		return selected{}, err
	}
	nodes, err := p.Select(doc)
	if err != nil {
		return selected{}, err
	}
	var s selected
	for _, n := range nodes {
		s.values = append(s.values, n.Node)
		s.where = append(s.where, n.Path.String())
	}
	return s, nil
}

// show renders the values selected for details and errors: the value
// when there is one, else a JSON list of them.
func (s selected) show() string {
	if len(s.values) == 1 {
		return Show(s.values[0])
	}
	return Show(s.values)
}

// firstFailing returns the index of the first value for which ok is false
// and how many fail (-1, 0 when every value is ok).
func (s selected) firstFailing(ok func(v any) bool) (first, failing int) {
	first = -1
	for i, v := range s.values {
		if !ok(v) {
			if first < 0 {
				first = i
			}
			failing++
		}
	}
	return first, failing
}

// at names where the i-th value is, when the path selected several
// (" at $['items'][2]['status']"); nothing when it selected one.
func (s selected) at(i int) string {
	if len(s.values) == 1 {
		return ""
	}
	return " at " + s.where[i]
}

// of counts the values that fail among several ("; 2 of 3 values"):
// nothing when the path selected one.
func (s selected) of(failing int) string {
	if len(s.values) == 1 {
		return ""
	}
	return fmt.Sprintf("; %d of %d values", failing, len(s.values))
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
