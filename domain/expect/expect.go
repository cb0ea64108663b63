package expect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// Exists is the expected value that only asks for the field to be present.
const Exists = "*"

// Observation is what one HTTP exchange produced.
type Observation struct {
	Status   int
	Duration time.Duration // from sending the request to the last byte of the body
	Body     []byte
	Header   http.Header // the response's headers (nil: none)
}

// Result is the judgement of one observation.
type Result struct {
	Pass bool
	// Details says what was measured, in the seed's words, e.g.
	// "HTTP 201, Response time: 12ms (threshold: 2100ms), estimateId=EST-1".
	Details string
	// Errors lists every unmet expectation; empty when Pass.
	Errors []string
}

// Error joins the unmet expectations.
func (r Result) Error() string { return strings.Join(r.Errors, "; ") }

// StatusOK reports whether got satisfies the expected status: want, or any
// 2xx when want is 0.
func StatusOK(want, got int) bool {
	if want == 0 {
		return got >= 200 && got <= 299
	}
	return got == want
}

// Millis is d in whole milliseconds, as reports show it.
func Millis(d time.Duration) int64 { return d.Milliseconds() }

// Evaluate judges o against e. Every expectation is checked (not just the
// first failing one) so a report shows everything that is wrong at once.
func Evaluate(e plan.Expect, o Observation) Result {
	var details, errs []string

	details = append(details, fmt.Sprintf("HTTP %d", o.Status))
	if !StatusOK(e.Status, o.Status) {
		want := "2xx"
		if e.Status != 0 {
			want = fmt.Sprint(e.Status)
		}
		errs = append(errs, fmt.Sprintf("HTTP %d (expected %s)", o.Status, want))
	}

	ms := Millis(o.Duration)
	if e.MaxMS > 0 {
		details = append(details, fmt.Sprintf("Response time: %dms (threshold: %dms)", ms, e.MaxMS))
		if o.Duration > time.Duration(e.MaxMS)*time.Millisecond {
			errs = append(errs, fmt.Sprintf("Response time %dms exceeds threshold %dms", ms, e.MaxMS))
		}
	} else {
		details = append(details, fmt.Sprintf("Response time: %dms", ms))
	}

	d, he := checkHeaders(e, o.Header)
	details = append(details, d...)
	errs = append(errs, he...)

	if len(e.JSON) > 0 || len(e.JSONMatch) > 0 || len(e.JSONAbsent) > 0 {
		doc, err := DecodeJSON(o.Body)
		if err != nil {
			errs = append(errs, fmt.Sprintf("response body is not JSON: %v", err))
		} else {
			d, fe := checkFields(e.JSON, doc)
			details = append(details, d...)
			errs = append(errs, fe...)
			d, fe = checkMatches(e.JSONMatch, doc)
			details = append(details, d...)
			errs = append(errs, fe...)
			errs = append(errs, checkAbsent(e.JSONAbsent, doc)...)
		}
	}
	for _, want := range e.BodyContains {
		if !bytes.Contains(o.Body, []byte(want)) {
			errs = append(errs, fmt.Sprintf("body does not contain %q", Show(want)))
		}
	}
	return Result{Pass: len(errs) == 0, Details: strings.Join(details, ", "), Errors: errs}
}

// checkHeaders checks headers (exact value, "*": present) and headers_match
// (regular expression), header by header in name order.
func checkHeaders(e plan.Expect, h http.Header) (details, errs []string) {
	for _, k := range sortedKeys(e.Headers) {
		w := e.Headers[k]
		vals := h.Values(k)
		switch {
		case len(vals) == 0:
			errs = append(errs, fmt.Sprintf("header %s is missing", k))
		case w == Exists || slices.Contains(vals, w):
			details = append(details, fmt.Sprintf("%s: %s", k, Show(vals[0])))
		default:
			errs = append(errs, fmt.Sprintf("header %s is %q (expected %q)", k, Show(strings.Join(vals, ", ")), w))
		}
	}
	for _, k := range sortedKeys(e.HeadersMatch) {
		re, err := regexp.Compile(e.HeadersMatch[k])
		if err != nil {
			errs = append(errs, fmt.Sprintf("headers_match %s: %v", k, err))
			continue
		}
		vals := h.Values(k)
		switch {
		case len(vals) == 0:
			errs = append(errs, fmt.Sprintf("header %s is missing", k))
		case slices.ContainsFunc(vals, re.MatchString):
			details = append(details, fmt.Sprintf("%s: %s", k, Show(vals[0])))
		default:
			errs = append(errs, fmt.Sprintf("header %s is %q (does not match %s)", k, Show(strings.Join(vals, ", ")), re))
		}
	}
	return details, errs
}

// checkMatches checks json_match: the text of each value a path selects
// against its regular expression.
func checkMatches(want map[string]string, doc any) (details, errs []string) {
	for _, p := range sortedKeys(want) {
		re, err := regexp.Compile(want[p])
		if err != nil {
			errs = append(errs, fmt.Sprintf("json_match %s: %v", p, err))
			continue
		}
		got, err := selectPath(doc, p)
		if err != nil {
			errs = append(errs, fmt.Sprintf("json_match %s: %v", p, err))
			continue
		}
		first, failing := got.firstFailing(func(v any) bool { return re.MatchString(Text(v)) })
		switch {
		case len(got.values) == 0:
			errs = append(errs, fmt.Sprintf("field %s is missing", p))
		case failing > 0:
			errs = append(errs, fmt.Sprintf("field %s is %s%s (does not match %s%s)", p, Show(got.values[first]), got.at(first), re, got.of(failing)))
		default:
			details = append(details, fmt.Sprintf("%s=%s", p, got.show()))
		}
	}
	return details, errs
}

// checkAbsent checks json_absent: none of the paths may select a value.
func checkAbsent(paths []string, doc any) (errs []string) {
	for _, p := range paths {
		got, err := selectPath(doc, p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("json_absent %s: %v", p, err))
		case len(got.values) > 0:
			errs = append(errs, fmt.Sprintf("field %s is present (expected absent): %s", p, got.show()))
		}
	}
	return errs
}

// Text is a JSON value as a text, uncut: strings as they are, numbers as
// written, everything else as compact JSON. json_match and captures use it.
func Text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	if m, ok := stringMap(v); ok {
		v = m
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// checkFields checks each expected field in path order, so the details and
// errors read the same on every run: every value a path selects must equal
// the expected one ("*": the path selects at least one value).
func checkFields(want map[string]any, doc any) (details, errs []string) {
	for _, p := range sortedKeys(want) {
		w := want[p]
		got, err := selectPath(doc, p)
		if err != nil {
			errs = append(errs, fmt.Sprintf("json %s: %v", p, err))
			continue
		}
		first, failing := got.firstFailing(func(v any) bool { return w == Exists || Equal(w, v) })
		switch {
		case len(got.values) == 0:
			errs = append(errs, fmt.Sprintf("field %s is missing", p))
		case failing > 0:
			errs = append(errs, fmt.Sprintf("field %s is %s%s (expected %s%s)", p, ShowValue(got.values[first]), got.at(first), ShowValue(w), got.of(failing)))
		default:
			details = append(details, fmt.Sprintf("%s=%s", p, got.show()))
		}
	}
	return details, errs
}

// ShowValue is Show with a string in quotes, so that where a value is
// compared the text "2" and the number 2 read differently:
// field $.release is "old" (expected "new").
func ShowValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(Show(s))
	}
	return Show(v)
}

// maxShown bounds a value shown in details and errors.
const maxShown = 80

// Show renders a value for details: strings as they are, everything else as
// compact JSON, cut to 80 characters.
func Show(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	default:
		if m, ok := stringMap(v); ok {
			v = m
		}
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	if r := []rune(s); len(r) > maxShown {
		s = string(r[:maxShown-1]) + "…"
	}
	return s
}
