package pgstore_test

import (
	"context"
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
	// First live deliveries without a sequence, then the rebuild scan with
	// them, in one batch, then again one by one.
	for _, e := range envs[:2] {
		e.Seq = 0
		if _, err := s.Apply(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ApplyBatch(ctx, envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		a, err := s.Apply(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if a.New {
			t.Errorf("%s applied again as new", e.Event.GetType())
		}
	}
	if n := count(t, s, `SELECT count(*) FROM events`); n != len(envs) {
		t.Errorf("events: %d rows, want %d", n, len(envs))
	}
	if n := count(t, s, `SELECT count(*) FROM events WHERE stream_seq IS NULL`); n != 0 {
		t.Errorf("%d events without their sequence", n)
	}
	if n := count(t, s, `SELECT count(*) FROM approvals WHERE role = 'ops' AND approver = 'bob' AND decision = 'granted'`); n != 1 {
		t.Errorf("approvals: %d", n)
	}
	var js string
	if err := s.Pool().QueryRow(ctx, `SELECT report_json FROM reports WHERE run_id = 'R'`).Scan(&js); err != nil || js != `{"b":1,  "a":2}` {
		t.Errorf("report_json %q, %v: not byte for byte", js, err)
	}
	if last, err := s.LastSeq(ctx); err != nil || last != 5 {
		t.Errorf("last_seq %d, %v", last, err)
	}
	if n := count(t, s, `SELECT count(*) FROM runs WHERE run_id = 'R' AND status = 'INVALID' AND report_ready AND final`); n != 1 {
		t.Errorf("run row not INVALID and reported")
	}
	// A sequence after a gap is stored but does not move last_seq.
	gap := mk(9, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-2"}})
	gap.Event.RunId = "S"
	gap.Event.Id = "S/change.requested"
	if _, err := s.Apply(ctx, gap); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastSeq(ctx); last != 5 {
		t.Errorf("last_seq moved over a gap: %d", last)
	}
}
