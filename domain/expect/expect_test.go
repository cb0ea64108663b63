package expect

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := DecodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// The short form of a path keeps its meaning under the RFC 9535 library:
// dotted keys, indexes as a segment or in brackets, a top-level key that
// holds dots found when written whole.
func TestSelectShortForm(t *testing.T) {
	t.Parallel()
	doc := `{"a":{"b":{"c":1}},"items":[{"id":"x"},{"id":"y"}],"dotted.key":true,"nil":null,"s":"str","m":{"0":"zero"}}`
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"a.b.c", json.Number("1"), true},
		{"items.1.id", "y", true},
		{"items[0].id", "x", true},
		{"items.2.id", nil, false},
		{"items.x", nil, false},
		{"dotted.key", true, true},
		{"nil", nil, true},
		{"a.missing", nil, false},
		{"s.deeper", nil, false},
		{"m.0", "zero", true}, // a number segment on an object is a key
		{"m[0]", "zero", true},
		{"items.99999999999999999999", nil, false},
	}
	root := mustJSON(t, doc)
	for _, tt := range tests {
		got, err := selectPath(root, tt.path)
		if err != nil {
			t.Errorf("selectPath(%q): %v", tt.path, err)
			continue
		}
		if ok := len(got.values) == 1; ok != tt.ok || len(got.values) > 1 {
			t.Errorf("selectPath(%q) = %v, want one value: %v", tt.path, got.values, tt.ok)
			continue
		}
		if tt.ok && !Equal(tt.want, got.values[0]) {
			t.Errorf("selectPath(%q) = %#v, want %#v", tt.path, got.values[0], tt.want)
		}
	}
	if _, err := selectPath(root, "items.-1.id"); err != nil {
		t.Errorf("items.-1.id: %v (a key named -1)", err)
	}
	if _, err := selectPath(root, "$.items.0"); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("$.items.0 is not RFC 9535: %v", err)
	}
}

// RFC 9535 paths: recursive descent finds nested keys, filters filter,
// and every value is located by its normalized path.
func TestSelectJSONPath(t *testing.T) {
	t.Parallel()
	doc := mustJSON(t, `{"x":0,"a":[{"b":1,"c":"one"},{"b":2,"c":"two"}],"n":{"m":{"x":5,"deep":[{"x":6}]}}}`)
	for _, tt := range []struct {
		path  string
		want  []any
		where []string
	}{
		{"$..x", []any{0, 5, 6}, []string{"$['x']", "$['n']['m']['x']", "$['n']['m']['deep'][0]['x']"}},
		{"$.n..x", []any{5, 6}, []string{"$['n']['m']['x']", "$['n']['m']['deep'][0]['x']"}},
		{"$.a[?(@.b==1)].c", []any{"one"}, []string{"$['a'][0]['c']"}},
		{"$.a[?@.b>1].c", []any{"two"}, []string{"$['a'][1]['c']"}},
		{"$.a[?@.b==3].c", nil, nil},
		{"$.a[*].b", []any{1, 2}, []string{"$['a'][0]['b']", "$['a'][1]['b']"}},
		{"$.a[-1].c", []any{"two"}, []string{"$['a'][1]['c']"}},
	} {
		got, err := selectPath(doc, tt.path)
		if err != nil {
			t.Errorf("%s: %v", tt.path, err)
			continue
		}
		if !Equal(tt.want, got.values) && !(len(tt.want) == 0 && len(got.values) == 0) {
			t.Errorf("%s = %v, want %v", tt.path, got.values, tt.want)
		}
		if !reflect.DeepEqual(got.where, tt.where) {
			t.Errorf("%s at %q, want %q", tt.path, got.where, tt.where)
		}
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want any
		got  string // JSON
		eq   bool
	}{
		{"int vs json int", 201, `201`, true},
		{"uint64 vs float json", uint64(2), `2.0`, true},
		{"float", 0.5, `0.5`, true},
		{"int vs other", int64(3), `4`, false},
		{"number vs string", 3, `"3"`, false},
		{"string", "ok", `"ok"`, true},
		{"string differs", "ok", `"OK"`, false},
		{"bool", true, `true`, true},
		{"bool vs string", true, `"true"`, false},
		{"nil vs null", nil, `null`, true},
		{"nil vs value", nil, `0`, false},
		{"slice", []any{1, "a"}, `[1,"a"]`, true},
		{"slice length", []any{1}, `[1,2]`, false},
		{"map", map[string]any{"a": 1}, `{"a":1}`, true},
		{"yaml any map", map[any]any{"a": uint64(1)}, `{"a":1}`, true},
		{"map extra key", map[string]any{"a": 1}, `{"a":1,"b":2}`, false},
		{"large ints exact", uint64(9007199254740993), `9007199254740993`, true},
		{"large ints differ", uint64(9007199254740993), `9007199254740992`, false},
	}
	for _, tt := range tests {
		if got := Equal(tt.want, mustJSON(t, tt.got)); got != tt.eq {
			t.Errorf("%s: Equal(%#v, %s) = %v, want %v", tt.name, tt.want, tt.got, got, tt.eq)
		}
	}
}

func TestStatusOK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		want, got int
		ok        bool
	}{
		{0, 200, true}, {0, 204, true}, {0, 299, true}, {0, 301, false}, {0, 500, false}, {0, 199, false},
		{201, 201, true}, {201, 200, false}, {404, 404, true},
	}
	for _, tt := range tests {
		if got := StatusOK(tt.want, tt.got); got != tt.ok {
			t.Errorf("StatusOK(%d, %d) = %v, want %v", tt.want, tt.got, got, tt.ok)
		}
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		expect  plan.Expect
		obs     Observation
		pass    bool
		details string
		errs    []string
	}{
		{
			name:    "seed's response time check passes",
			expect:  plan.Expect{MaxMS: 2100},
			obs:     Observation{Status: 200, Duration: 12 * time.Millisecond},
			pass:    true,
			details: "HTTP 200, Response time: 12ms (threshold: 2100ms)",
		},
		{
			name:    "too slow",
			expect:  plan.Expect{MaxMS: 2100},
			obs:     Observation{Status: 200, Duration: 2300 * time.Millisecond},
			details: "HTTP 200, Response time: 2300ms (threshold: 2100ms)",
			errs:    []string{"Response time 2300ms exceeds threshold 2100ms"},
		},
		{
			name:    "exactly at the threshold passes",
			expect:  plan.Expect{MaxMS: 100},
			obs:     Observation{Status: 200, Duration: 100 * time.Millisecond},
			pass:    true,
			details: "HTTP 200, Response time: 100ms (threshold: 100ms)",
		},
		{
			name:    "estimate created",
			expect:  plan.Expect{Status: 201, JSON: map[string]any{"estimateId": "*", "status": "created"}},
			obs:     Observation{Status: 201, Duration: 5 * time.Millisecond, Body: []byte(`{"estimateId":"EST-1","status":"created"}`)},
			pass:    true,
			details: "HTTP 201, Response time: 5ms, estimateId=EST-1, status=created",
		},
		{
			name:    "server error, every problem listed",
			expect:  plan.Expect{Status: 201, JSON: map[string]any{"estimateId": "*"}},
			obs:     Observation{Status: 500, Duration: time.Millisecond, Body: []byte(`{"error":"boom"}`)},
			details: "HTTP 500, Response time: 1ms",
			errs:    []string{"HTTP 500 (expected 201)", "field estimateId is missing"},
		},
		{
			name:    "default status is any 2xx",
			expect:  plan.Expect{},
			obs:     Observation{Status: 404},
			details: "HTTP 404, Response time: 0ms",
			errs:    []string{"HTTP 404 (expected 2xx)"},
		},
		{
			name:    "wrong value",
			expect:  plan.Expect{JSON: map[string]any{"data.count": 3}},
			obs:     Observation{Status: 200, Body: []byte(`{"data":{"count":2}}`)},
			details: "HTTP 200, Response time: 0ms",
			errs:    []string{"field data.count is 2 (expected 3)"},
		},
		{
			name:    "not JSON",
			expect:  plan.Expect{JSON: map[string]any{"a": "*"}},
			obs:     Observation{Status: 200, Body: []byte(`<html>`)},
			details: "HTTP 200, Response time: 0ms",
			errs:    []string{"response body is not JSON: invalid character '<' looking for beginning of value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Evaluate(tt.expect, tt.obs)
			if r.Pass != tt.pass {
				t.Errorf("pass = %v, want %v (errors %v)", r.Pass, tt.pass, r.Errors)
			}
			if r.Details != tt.details {
				t.Errorf("details = %q, want %q", r.Details, tt.details)
			}
			if strings.Join(r.Errors, "|") != strings.Join(tt.errs, "|") {
				t.Errorf("errors = %q, want %q", r.Errors, tt.errs)
			}
		})
	}
}

func TestShow(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	tests := []struct {
		in   any
		want string
	}{
		{"EST-1", "EST-1"},
		{json.Number("12.5"), "12.5"},
		{true, "true"},
		{nil, "null"},
		{map[string]any{"a": 1}, `{"a":1}`},
		{map[any]any{"a": 1}, `{"a":1}`},
		{long, strings.Repeat("x", 79) + "…"},
	}
	for _, tt := range tests {
		if got := Show(tt.in); got != tt.want {
			t.Errorf("Show(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
