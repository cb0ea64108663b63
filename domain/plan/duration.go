package plan

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration accepts Go durations ("30s", "1h30m") and the seed's words
// ("2 hours", "30 minutes", "15 min", "1 day").
type Duration struct {
	time.Duration
	// Raw is the value as written.
	Raw string
}

// durationWords are the units of the seed's words ("2 hours"), lower case.
const durationWords = `ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?`

var wordDuration = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*(` + durationWords + `)\s*$`)

// DurationPatterns are regular expressions, in the syntax Go's regexp and
// ECMAScript share, that together match the texts ParseDuration accepts:
// Go's form (case as Go writes it) and the seed's words (any case). The
// JSON Schema's durations use them (TestDurationPatternsAgreeWithParseDuration).
func DurationPatterns() []string {
	var anyCase strings.Builder
	for _, r := range durationWords {
		if r >= 'a' && r <= 'z' {
			anyCase.WriteString("[" + string(r) + strings.ToUpper(string(r)) + "]")
			continue
		}
		anyCase.WriteRune(r)
	}
	return []string{
		`^\s*[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)\s*$`,
		`^\s*[0-9]+(\.[0-9]+)?\s*(` + anyCase.String() + `)\s*$`,
	}
}

// ParseDuration parses a plan duration.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
		return d, nil
	}
	m := wordDuration.FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 30s, 5m, 1h30m, \"2 hours\" or \"30 minutes\"", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	unit := time.Second
	switch u := m[2]; {
	case u == "ms" || strings.HasPrefix(u, "milli"):
		unit = time.Millisecond
	case u == "s" || strings.HasPrefix(u, "sec"):
		unit = time.Second
	case u == "m" || strings.HasPrefix(u, "min"):
		unit = time.Minute
	case u == "h" || strings.HasPrefix(u, "h"):
		unit = time.Hour
	case u == "d" || strings.HasPrefix(u, "day"):
		unit = 24 * time.Hour
	}
	if v := n * float64(unit); v < float64(math.MaxInt64) {
		return time.Duration(v), nil
	}
	return 0, fmt.Errorf("%q is too long a duration", s)
}

// IsSet reports whether the duration was written (Raw) or given a non-zero
// value in code. An explicit "0" or "0s" is set: it means zero, not the
// default.
func (d Duration) IsSet() bool {
	return d.Raw != "" || d.Duration != 0
}

// Or returns d, or def when d is not set (see IsSet: "0s" written in the
// plan is set and yields 0).
func (d Duration) Or(def time.Duration) time.Duration {
	if !d.IsSet() {
		return def
	}
	return d.Duration
}

// String is the duration as written, or Go's form when built in code.
func (d Duration) String() string {
	if d.Raw != "" {
		return d.Raw
	}
	return d.Duration.String()
}

// UnmarshalYAML lets a plain yaml.Unmarshal read plan durations too (Parse
// has its own decoder that reports every error with its position).
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	if v == nil {
		*d = Duration{}
		return nil
	}
	raw := fmt.Sprint(v)
	dur, err := ParseDuration(raw)
	if err != nil {
		return err
	}
	*d = Duration{Duration: dur, Raw: raw}
	return nil
}

// MarshalYAML writes the duration as it was written (or in Go's form).
func (d Duration) MarshalYAML() (any, error) {
	if !d.IsSet() {
		return nil, nil
	}
	return d.String(), nil
}

// FormatDuration prints d without Go's trailing zero units: 30m, 2h, 1h30m.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
