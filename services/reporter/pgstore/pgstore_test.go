package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
	"github.com/kis-core/runbook/services/reporter/readmodeltest"
)

func open(t *testing.T) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestReadModelSuite(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) reporter.ReadModel { return open(t) })
}

func count(t *testing.T, s *pgstore.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApplyTwiceStoresOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Migrations apply once: a second Open finds them applied.
	s2, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)
	mk := func(seq uint64, p any, parts ...any) eventbus.Envelope {
		ev := eventbus.New("R", p, parts...)
		ev.Time = timestamppb.New(t0.Add(time.Duration(seq) * time.Second))
		return eventbus.Envelope{Event: ev, Seq: seq, Subject: eventbus.Subject("R", ev.Type)}
	}
	envs := []eventbus.Envelope{
		mk(1, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1"}}),
		mk(2, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "x"}}, 1),
		mk(3, &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "ops", Approver: "bob"}}, "ops"),
		mk(4, &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{}}),
		mk(5, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "INVALID", ReportJson: `{"b":1,  "a":2}`}}),
	}
	// A redelivered prefix, then everything at once, then one by one:
	// each event is stored once.
	if err := s.ApplyBatch(ctx, 0, envs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyBatch(ctx, 0, envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		if err := s.ApplyBatch(ctx, 0, []eventbus.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM events`); n != len(envs) {
		t.Errorf("events: %d rows, want %d", n, len(envs))
	}
	if n := count(t, s, `SELECT count(*) FROM approvals WHERE role = 'ops' AND approver = 'bob' AND decision = 'granted'`); n != 1 {
		t.Errorf("approvals: %d", n)
	}
	var js string
	if err := s.Pool().QueryRow(ctx, `SELECT report_json FROM reports WHERE run_id = 'R'`).Scan(&js); err != nil || js != `{"b":1,  "a":2}` {
		t.Errorf("report_json %q, %v: not byte for byte", js, err)
	}
	if last, err := s.Position(ctx); err != nil || last != 5 {
		t.Errorf("position %d, %v", last, err)
	}
	if n := count(t, s, `SELECT count(*) FROM runs WHERE run_id = 'R' AND status = 'INVALID' AND report_ready AND final AND events = 5 AND last_seq = 5`); n != 1 {
		t.Errorf("run row not INVALID, reported, 5 events")
	}

	// A second store on the same database (another reporter) writes past
	// this one's cache: this one reloads the run's fold and chain.
	s2, err = pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	more := mk(6, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "y"}}, 2)
	if err := s2.ApplyBatch(ctx, 5, []eventbus.Envelope{more}); err != nil {
		t.Fatal(err)
	}
	last := mk(7, &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "late"}})
	if err := s.ApplyBatch(ctx, 5, append(envs, more, last)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM runs WHERE run_id = 'R' AND events = 7 AND last_seq = 7`); n != 1 {
		t.Errorf("run row after a second writer: not 7 events")
	}
	all := append(envs, more, last)
	ms, _, err := s.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
		for _, e := range all {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	// The report here is made up: only its re-derivation may differ.
	if err != nil || len(ms) != 1 || !strings.Contains(ms[0].Problem, "re-derived") {
		t.Errorf("verify after two writers: %v %v", ms, err)
	}

	// Reset empties the projection.
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM runs) + (SELECT count(*) FROM reports) + (SELECT last_seq FROM projection_state)`); n != 0 {
		t.Errorf("after reset: %d rows left", n)
	}
}
