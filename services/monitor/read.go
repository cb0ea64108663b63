package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the history reads' retries (Options.ReadRetry,
// Options.ReadTimeout).
const (
	DefaultReadRetry   = 2 * time.Minute
	DefaultReadTimeout = 30 * time.Second
)

// readBackoff is the wait after the first failed read; it doubles after
// each failure, up to readBackoffMax.
const (
	readBackoff    = 100 * time.Millisecond
	readBackoffMax = 3 * time.Second
)

// retried reads the run's history (or its samples) with read, again and
// again with backoff while it fails, for up to Options.ReadRetry: a read
// that fails while NATS restarts or elects a leader ("context deadline
// exceeded") is never taken for an empty history, and the window goes on
// where it is instead of starting over from a redelivery. Each attempt is
// bounded by Options.ReadTimeout. After ReadRetry the error is returned
// (the router retries the handler; the window resumes from the stream and
// counts the ticks it missed meanwhile).
func retried[T any](ctx context.Context, s *Service, log *slog.Logger, what string, read func(context.Context) (T, error)) (T, error) {
	var (
		first time.Time
		wait  = readBackoff
	)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.o.ReadTimeout)
		v, err := read(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("read succeeded after retries", "read", what, "attempts", attempt)
			}
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first)+wait > s.o.ReadRetry {
			return v, fmt.Errorf("%s: still failing after %d attempts over %s: %w", what, attempt, time.Since(first).Round(time.Millisecond), err)
		}
		s.met.readRetries.Inc()
		log.Warn("read failed; retrying", "read", what, "attempt", attempt, "after", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, readBackoffMax)
	}
}
