package plan

import (
	"fmt"
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

var wordDuration = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)\s*$`)

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
	return time.Duration(n * float64(unit)), nil
}

// Or returns d, or def when d is not set.
func (d Duration) Or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}
