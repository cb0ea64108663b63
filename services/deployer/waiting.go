package deployer

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// errStopping gives a waiting run's message back when the deployer stops.
var errStopping = errors.New("the deployer is stopping: the run's wait resumes where its message is redelivered")

// hold makes the caller the holder of run's gate in this process. When
// another handler already holds it, that one is woken up (it re-reads the
// run) and mine is false.
func (s *Service) hold(run string) (wake chan struct{}, mine bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.holders[run]; ok {
		select {
		case w <- struct{}{}:
		default:
		}
		return nil, false
	}
	w := make(chan struct{}, 1)
	s.holders[run] = w
	return w, true
}

func (s *Service) release(run string) {
	s.mu.Lock()
	delete(s.holders, run)
	s.mu.Unlock()
}

// wait sleeps until the next poll, next (a deadline or the window's
// opening, when sooner), a wake-up or the end.
func (s *Service) wait(ctx context.Context, wake <-chan struct{}, next time.Time) error {
	d := s.o.PollInterval
	if !next.IsZero() {
		if until := next.Sub(s.o.Now()); until < d {
			d = max(until, time.Millisecond)
		}
	}
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-stopping:
		return eventbus.Retry(errStopping, 100*time.Millisecond)
	case <-wake:
	case <-t.C:
	}
	return nil
}

// judge evaluates the gate of a run whose pre-flight passed and records
// what it finds, each at most once (deterministic ids, checked against the
// run's events): approval.refused for every approval that breaks a rule,
// run.waiting for each distinct waiting state, run.expired.
func (s *Service) judge(ctx context.Context, ev *runbookv1.Event, v *runView, p *plan.Plan, cr *runbookv1.Event) (gate.Verdict, error) {
	run := ev.RunId
	log := s.log.With("run_id", run)
	g := gate.NewRun(p, []byte(cr.GetChangeRequested().GetPlanYaml()), cr.GetActor(), v.ApprovalsRequired, v.ReadyAt)
	g.RequesterKey = v.RequesterKey
	verdict := g.Evaluate(v.decisions, s.o.Now())
	for _, r := range verdict.Tally.Refused {
		d := r.Decision
		part := strings.TrimPrefix(d.ID, run+"/")
		if d.ID == "" {
			part = string(d.Kind) + "/" + gate.RoleKey(d.Role) + "/" + gate.NameKey(d.Person())
		}
		out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_ApprovalRefused{ApprovalRefused: &runbookv1.Approval{
			Role: d.Role, Approver: d.Person(), Comment: d.Comment, Reason: r.Reason, PlanSha256: d.PlanSHA256,
		}}, "of", part), ev)
		if v.known(out.Id) {
			continue
		}
		if _, err := s.bus.Publish(ctx, out); err != nil {
			return verdict, err
		}
		v.published[out.Id] = true
		log.Warn("approval refused", "role", d.Role, "approver", d.Person(), "reason", r.Reason)
	}
	switch verdict.State {
	case gate.Expired:
		out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RunExpired{RunExpired: &runbookv1.RunEnded{Reason: verdict.Reason}}), ev)
		if _, err := s.bus.PublishOnce(ctx, out); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return verdict, err
		}
		log.Info("run expired", "reason", verdict.Reason)
	case gate.WaitingApproval, gate.WaitingWindow:
		w := &runbookv1.RunWaiting{Reason: verdict.Reason, WaitingFor: verdict.WaitingFor()}
		if !verdict.Until.IsZero() {
			w.Until = timestamppb.New(verdict.Until)
		}
		if !verdict.Deadline.IsZero() {
			w.Deadline = timestamppb.New(verdict.Deadline)
		}
		out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RunWaiting{RunWaiting: w}, verdict.WaitKey()), ev)
		if v.known(out.Id) {
			break
		}
		if _, err := s.bus.Publish(ctx, out); err != nil {
			return verdict, err
		}
		v.published[out.Id] = true
		log.Info("gate closed: waiting", "waiting_for", verdict.WaitingFor(), "reason", verdict.Reason)
	}
	return verdict, nil
}
