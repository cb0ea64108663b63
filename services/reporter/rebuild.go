package reporter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kis-core/runbook/eventbus"
)

// Progress is how far a Project call got.
type Progress struct {
	// Seq is the last stream sequence applied, Until the one it projects to.
	Seq, Until uint64
	// Events counts the events applied by this call.
	Events  int
	Elapsed time.Duration
}

// Rate is events applied per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Events) / p.Elapsed.Seconds()
}

var errProjected = errors.New("projected up to the target sequence")

// Project applies the audit stream to model from its position up to the
// stream's last sequence as it is when Project starts, in batches of
// batch events, and returns without reporting anything (`runbook replay
// --rebuild`, benchmarks). progress, if not nil, is called after every batch.
// A stream that does not hold what model has projected (recreated or
// truncated) is refused with a *StreamBehindError (see CheckStream).
func Project(ctx context.Context, bus *eventbus.Bus, model ReadModel, batch int, progress func(Progress)) (Progress, error) {
	if _, err := CheckStream(ctx, bus, model); err != nil {
		return Progress{}, err
	}
	pos, err := model.Position(ctx)
	if err != nil {
		return Progress{}, err
	}
	until, err := bus.LastSeq(ctx)
	if err != nil {
		return Progress{}, err
	}
	p := Progress{Seq: pos, Until: until}
	if pos >= until {
		return p, nil
	}
	start := time.Now()
	applied := pos
	err = bus.Tail(ctx, pos+1, batch, func(b eventbus.Batch) error {
		if len(b.Events) > 0 {
			if err := model.ApplyBatch(ctx, applied, b.Events); err != nil {
				return err
			}
			applied = max(applied, b.Events[len(b.Events)-1].Seq)
			p.Events += len(b.Events)
		}
		p.Seq = max(p.Seq, b.LastSeq)
		p.Elapsed = time.Since(start)
		if progress != nil {
			progress(p)
		}
		if p.Seq >= until {
			return errProjected
		}
		return nil
	})
	switch {
	case errors.Is(err, errProjected):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("project the stream at sequence %d: %w", p.Seq+1, err)
	case ctx.Err() != nil:
		return p, ctx.Err()
	}
	return p, nil
}
