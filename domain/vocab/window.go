package vocab

import (
	"fmt"
	"math"
	"strconv"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Seconds writes a duration given in milliseconds as the vocabulary's
// windows read: "8 s", "1.3 s" (to the tenth).
func Seconds(ms int64) string {
	return strconv.FormatFloat(math.Round(float64(ms)/100)/10, 'f', -1, 64) + " s"
}

// NotWatched is monitor.completed's reason (and the monitor's
// rollback.requested's) when a window could not be watched: its monitor
// was down longer than the window may be extended by.
func NotWatched(downMS int64) string {
	return "not watched: monitor down for " + Seconds(downMS)
}

// Observed is how much of its window a monitor.completed says was watched:
// "observed 8 s of 8 s", and when the monitor was down during it, for how
// long and whether the window was extended to make it up. "" for an event
// that does not say (older than window_ms).
func Observed(m *runbookv1.MonitorCompleted) string {
	if m.GetWindowMs() <= 0 {
		return ""
	}
	s := fmt.Sprintf("observed %s of %s", Seconds(m.GetObservedMs()), Seconds(m.GetWindowMs()))
	if m.GetMissedTicks() == 0 && m.GetDownMs() == 0 {
		return s
	}
	s += fmt.Sprintf("; the monitor was down %s (%d tick(s) missed)", Seconds(m.GetDownMs()), m.GetMissedTicks())
	if m.GetObservedMs() >= m.GetWindowMs() {
		s += ": the window was extended by as much"
	}
	return s
}
