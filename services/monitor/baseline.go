package monitor

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// onChangeRequested samples the pre-deployment baseline: from the run's
// change.requested, every interval (at least three rounds), until the
// plan's baseline window has passed or the run's deploy.started is
// stored, whichever comes first. The samples go to RUNBOOK_METRICS; at
// deploy.started the window's monitor.started summarises those taken
// before the deploy (preDeployBaseline). Nothing waits for this: a run
// without monitor sources or with `baseline: 0s` costs one plan parse, and
// a deploy that starts at once simply has a shorter baseline.
func (s *Service) onChangeRequested(ctx context.Context, ev *runbookv1.Event, cr *runbookv1.ChangeRequested) error {
	run := ev.RunId
	// An invalid plan is the preflight's to reject: nothing to sample.
	p, _ := plan.FromChangeRequest(cr)
	if p == nil || len(p.Monitor.Sources) == 0 || p.Monitor.EffectiveBaseline() <= 0 {
		return nil
	}
	span := p.Monitor.EffectiveBaseline()
	end := ev.GetTime().AsTime().Add(span)
	every := max(min(p.Monitor.EffectiveInterval(), span/3), MinInterval)
	log := s.log.With("run_id", run, "event", ev.Type)
	w := newWatch(s, ev, p.Monitor, log)
	rounds := 0
	for now := time.Now(); now.Before(end); now = time.Now() {
		// A read the bus cannot serve for a moment (a NATS restart, a
		// leader election) is retried, never taken for "not deployed yet".
		d, err := retried(ctx, s, log, "read deploy.started", func(ctx context.Context) (*eventbus.Envelope, error) {
			return s.bus.LastEvent(ctx, run, "deploy.started")
		})
		if err != nil {
			return err
		}
		if d != nil {
			break
		}
		if _, _, err := w.round(ctx, false); err != nil {
			return err
		}
		rounds++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(every, time.Until(end))):
		}
	}
	log.Info("pre-deployment baseline sampled", "rounds", rounds, "window", span)
	return nil
}

// preDeployBaseline summarises the run's samples taken before deployAt:
// one sample per metric and source, the mean of its values, stamped with
// the last one's time. span is the time they cover.
func (s *Service) preDeployBaseline(ctx context.Context, run string, deployAt time.Time) ([]*runbookv1.MetricSample, time.Duration, error) {
	all, err := s.bus.RunSamples(ctx, run)
	if err != nil {
		return nil, 0, err
	}
	type key struct{ metric, source string }
	type acc struct {
		sum  float64
		n    int
		last time.Time
	}
	accs := map[key]*acc{}
	var order []key
	var first, last time.Time
	for _, smp := range all {
		t := smp.GetTime().AsTime()
		if !t.Before(deployAt) || smp.Value != smp.Value {
			continue
		}
		k := key{smp.Metric, smp.Source}
		a := accs[k]
		if a == nil {
			a = &acc{}
			accs[k] = a
			order = append(order, k)
		}
		a.sum += smp.Value
		a.n++
		a.last = t
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	out := make([]*runbookv1.MetricSample, 0, len(order))
	for _, k := range order {
		a := accs[k]
		out = append(out, &runbookv1.MetricSample{RunId: run, Metric: k.metric, Source: k.source, Value: a.sum / float64(a.n), Time: timestamppb.New(a.last)})
	}
	return out, last.Sub(first), nil
}
