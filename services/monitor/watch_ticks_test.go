package monitor

import (
	"testing"
	"time"
)

// windowTicks counts the ticks a window judges: one every interval from
// its opening plus the jitter, the last one at its end.
func TestWindowTicks(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		window, interval, offset time.Duration
		want                     int
	}{
		{3000 * ms, 300 * ms, 0, 10},       // 300, 600, …, 2700, 3000
		{3000 * ms, 300 * ms, 50 * ms, 10}, // 350, …, 2750, then 3000
		{1000 * ms, 300 * ms, 250 * ms, 3}, // 550, 850, then 1000
		{8 * time.Second, 250 * ms, 40 * ms, 32},
		{100 * ms, 300 * ms, 0, 1}, // only the last, at the end
	} {
		w := &watch{window: c.window, interval: c.interval, offset: c.offset}
		if got := w.windowTicks(); got != c.want {
			t.Errorf("window %s every %s, offset %s: %d ticks; want %d", c.window, c.interval, c.offset, got, c.want)
		}
	}
}
