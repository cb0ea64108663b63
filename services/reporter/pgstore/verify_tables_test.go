package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Every projection table is checked against the fold of the stream: an
// edit of any column of runs, approvals, events, reports or
// projection_state made in PostgreSQL (the dashboard would show it) fails
// the audit, naming the table, the row's key, the column, the stored value
// and the stream's. The stream is a real embedded NATS one, projected
// into the machine's PostgreSQL as `runbook replay --rebuild` does.
func TestVerifyEveryProjectionTable(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "test")

	// Nanoseconds in every time: PostgreSQL keeps microseconds, and that
	// is no tampering.
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 123456789, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	var published []*runbookv1.Event
	pub := func(run string, actor string, p any, parts ...any) {
		t.Helper()
		ev := eventbus.New(run, p, parts...)
		ev.Time = timestamppb.New(at(len(published)))
		ev.Actor = actor
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if run == "R" {
			published = append(published, ev)
		} else {
			published = append(published, nil)
		}
	}
	roles := []string{"technical_approval", "business_approval"}
	pub("R", "kim", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		ChangeId: "CR-2025-007", Title: "Order API v2", Requester: "Kim Operator", PlanSha256: "abc123"}}) // 1
	pub("R", "", &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "HIGH", ApprovalsRequired: roles}}) // 2
	pub("R", "", &runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: roles}})                             // 3
	pub("R", "bob", &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{
		Role: roles[0], Approver: "bob", Comment: "ok", PlanSha256: "abc123"}}, roles[0]) // 4
	pub("R", "carol", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{
		Role: roles[1], Approver: "carol", Reason: "not during the sale", PlanSha256: "abc123"}}, roles[1]) // 5
	pub("S", "kim", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-2025-008"}}) // 6
	pub("S", "", &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "x"}}, 0)                  // 7
	var history []*runbookv1.Event
	for _, ev := range published {
		if ev != nil {
			history = append(history, ev)
		}
	}
	res, err := report.Generate("R", history)
	if err != nil {
		t.Fatal(err)
	}
	pub("R", "", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status: string(res.Status), ReportJson: string(res.JSON), QcSummary: res.QCSummary}}) // 8

	rebuild := func() {
		t.Helper()
		if err := store.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if p, err := reporter.Project(ctx, bus, store, 3, nil); err != nil || p.Seq != 8 {
			t.Fatalf("project: %+v %v", p, err)
		}
	}
	verify := func() ([]string, pgstore.VerifyStats) {
		t.Helper()
		ms, st, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
			return bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, fn)
		})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.String())
		}
		return out, st
	}

	rebuild()
	ms, st := verify()
	if len(ms) != 0 {
		t.Fatalf("untampered projection: %d mismatches:\n%s", len(ms), strings.Join(ms, "\n"))
	}
	if st != (pgstore.VerifyStats{Events: 8, Runs: 2, Reports: 1, Approvals: 2}) {
		t.Errorf("stats %+v", st)
	}

	ts := func(i int) string { return at(i).Truncate(time.Microsecond).Format(time.RFC3339Nano) }
	const (
		runR     = "run R: table runs, row run_id=R, column "
		granted  = "run R event R/approval.granted/technical_approval (seq 4): table approvals, row stream_seq=4, column "
		rejected = "run R event R/approval.rejected/business_approval (seq 5): table approvals, row stream_seq=5, column "
		reportR  = "run R event R/report.ready (seq 8): table reports, row run_id=R, column "
	)
	for _, c := range []struct {
		name, sql string
		want      string
		// Long values are shown around their first difference: the
		// problem starts with want and holds every one of these.
		has []string
	}{
		{"runs.status", `UPDATE runs SET status = 'FAILED' WHERE run_id = 'R'`,
			runR + `status: stored "FAILED", the stream gives "REJECTED"`, nil},
		{"runs.phase", `UPDATE runs SET phase = 'ACT' WHERE run_id = 'R'`,
			runR + `phase: stored "ACT", the stream gives "` + runstate.Rejected.Phase() + `"`, nil},
		{"runs.change_id", `UPDATE runs SET change_id = 'CR-1999-001' WHERE run_id = 'R'`,
			runR + `change_id: stored "CR-1999-001", the stream gives "CR-2025-007"`, nil},
		{"runs.title", `UPDATE runs SET title = 'harmless' WHERE run_id = 'R'`,
			runR + `title: stored "harmless", the stream gives "Order API v2"`, nil},
		{"runs.requester", `UPDATE runs SET requester = 'mallory' WHERE run_id = 'R'`,
			runR + `requester: stored "mallory", the stream gives "Kim Operator"`, nil},
		{"runs.risk_level", `UPDATE runs SET risk_level = 'LOW' WHERE run_id = 'R'`,
			runR + `risk_level: stored "LOW", the stream gives "HIGH"`, nil},
		{"runs.started", `UPDATE runs SET started = started + interval '1 hour' WHERE run_id = 'R'`,
			runR + `started: stored ` + at(3600).Truncate(time.Microsecond).Format(time.RFC3339Nano) + `, the stream gives ` + ts(0), nil},
		{"runs.ended", `UPDATE runs SET ended = NULL WHERE run_id = 'R'`,
			runR + `ended: stored NULL, the stream gives ` + ts(4), nil},
		{"runs.final", `UPDATE runs SET final = false WHERE run_id = 'R'`,
			runR + `final: stored false, the stream gives true`, nil},
		{"runs.report_ready", `UPDATE runs SET report_ready = false WHERE run_id = 'R'`,
			runR + `report_ready: stored false, the stream gives true`, nil},
		{"runs.events", `UPDATE runs SET events = 7 WHERE run_id = 'R'`,
			runR + `events: stored 7, the stream gives 6`, nil},
		{"runs.last_seq", `UPDATE runs SET last_seq = 6 WHERE run_id = 'S'`,
			`run S: table runs, row run_id=S, column last_seq: stored 6, the stream gives 7`, nil},
		{"approvals.approver", `UPDATE approvals SET approver = 'someone else' WHERE stream_seq = 4`,
			granted + `approver: stored "someone else", the stream gives "bob"`, nil},
		{"approvals.actor", `UPDATE approvals SET actor = 'mallory' WHERE stream_seq = 4`,
			granted + `actor: stored "mallory", the stream gives "bob"`, nil},
		{"approvals.role", `UPDATE approvals SET role = 'security_approval' WHERE stream_seq = 4`,
			granted + `role: stored "security_approval", the stream gives "technical_approval"`, nil},
		{"approvals.decision", `UPDATE approvals SET decision = 'granted' WHERE stream_seq = 5`,
			rejected + `decision: stored "granted", the stream gives "rejected"`, nil},
		{"approvals.reason", `UPDATE approvals SET reason = '' WHERE stream_seq = 5`,
			rejected + `reason: stored "", the stream gives "not during the sale"`, nil},
		{"approvals.time", `UPDATE approvals SET time = time - interval '1 day' WHERE stream_seq = 4`,
			granted + `time: stored ` + at(3-86400).Truncate(time.Microsecond).Format(time.RFC3339Nano) + `, the stream gives ` + ts(3), nil},
		{"approvals.plan_sha256", `UPDATE approvals SET plan_sha256 = 'def456' WHERE stream_seq = 4`,
			granted + `plan_sha256: stored "def456", the stream gives "abc123"`, nil},
		{"approvals row deleted", `DELETE FROM approvals WHERE stream_seq = 5`,
			"run R event R/approval.rejected/business_approval (seq 5): table approvals: no row for this decision", nil},
		{"approvals row added", `INSERT INTO approvals (stream_seq, event_id, run_id, role, approver, decision, time) VALUES (6, 'X', 'S', 'r', 'a', 'granted', now())`,
			"run S event X (seq 6): table approvals: a row the stream has no decision for", nil},
		{"events.actor", `UPDATE events SET actor = 'mallory' WHERE stream_seq = 4`,
			"run R event R/approval.granted/technical_approval (seq 4): table events, row stream_seq=4, column actor: stored \"mallory\", the stream gives \"bob\"", nil},
		{"events.time", `UPDATE events SET time = time + interval '1 second' WHERE stream_seq = 1`,
			"run R event R/change.requested (seq 1): table events, row stream_seq=1, column time: stored " + ts(1) + ", the stream gives " + ts(0), nil},
		{"events.kept", `UPDATE events SET kept = true WHERE stream_seq = 7`,
			"run S event S/deploy.step.output/0 (seq 7): table events, row stream_seq=7, column kept: stored true, the stream gives false", nil},
		{"events.type", `UPDATE events SET type = 'approval.granted' WHERE stream_seq = 5`,
			"run R event R/approval.rejected/business_approval (seq 5): table events, row stream_seq=5, column type: stored \"approval.granted\", the stream gives \"approval.rejected\"", nil},
		{"reports.status", `UPDATE reports SET status = 'SUCCESS'`,
			reportR + `status: stored "SUCCESS", the stream gives "REJECTED"`, nil},
		{"reports.qc_summary", `UPDATE reports SET qc_summary = replace(qc_summary, 'REJECTED', 'SUCCESS')`,
			reportR + `qc_summary: stored …`, []string{`Status: SUCCESS (Duration: 4.000s)`, `(452 bytes), the stream gives …`, `Status: REJECTED (Duration: 4.000s)`}},
		{"reports.report", `UPDATE reports SET report = report || '{"tampered": true}'`,
			reportR + `report: stored …`, []string{`"tampered":true`, `the stream gives …`}},
		{"reports.stream_seq", `UPDATE reports SET stream_seq = 9`,
			reportR + `stream_seq: stored 9, the stream gives 8`, nil},
		{"projection_state.last_seq", `UPDATE projection_state SET last_seq = 5`,
			"table projection_state, column last_seq: stored 5, the stream gives 8 (its last event)", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			rebuild()
			if _, err := store.Pool().Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			ms, _ := verify()
			ok := len(ms) == 1 && (ms[0] == c.want || c.has != nil && strings.HasPrefix(ms[0], c.want))
			for _, h := range c.has {
				ok = ok && strings.Contains(ms[0], h)
			}
			if !ok {
				t.Errorf("after %s:\n got %s\nwant %s", c.sql, strings.Join(ms, "\n     "), c.want)
			}
			if testing.Verbose() && len(ms) > 0 {
				t.Log(ms[0])
			}
		})
	}
}

// Migration 003 adds approvals.actor and approvals.plan_sha256 and fills
// them, for the rows stored before it, from their events: a database
// migrated so passes the audit as one projected afresh does.
func TestApprovalColumnsBackfilled(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)
	var stream []eventbus.Envelope
	add := func(actor string, p any, parts ...any) {
		ev := eventbus.New("R", p, parts...)
		ev.Time = timestamppb.New(t0.Add(time.Duration(len(stream)) * time.Second))
		ev.Actor = actor
		stream = append(stream, eventbus.Envelope{Event: ev, Seq: uint64(len(stream) + 1), Subject: eventbus.Subject("R", ev.Type)})
	}
	add("kim", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1", PlanSha256: "abc"}})
	add("bob", &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "ops", Approver: "bob", PlanSha256: "abc"}}, "ops")
	add("eve", &runbookv1.Event_ApprovalRefused{ApprovalRefused: &runbookv1.Approval{Role: "ops", Approver: "eve", PlanSha256: "abd", Reason: "self"}}, "eve")
	add("carol", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "biz", Approver: "carol", PlanSha256: "abc"}}, "biz")
	if err := store.ApplyBatch(ctx, 0, stream); err != nil {
		t.Fatal(err)
	}
	// The database as it was before 003.
	if _, err := store.Pool().Exec(ctx, `ALTER TABLE approvals DROP COLUMN actor, DROP COLUMN plan_sha256;
		DELETE FROM schema_migrations WHERE version = '003_approval_actor'`); err != nil {
		t.Fatal(err)
	}
	if err := pgstore.Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, store, `SELECT count(*) FROM approvals WHERE (stream_seq, actor, plan_sha256) IN ((2, 'bob', 'abc'), (3, 'eve', 'abd'), (4, 'carol', 'abc'))`); n != 3 {
		t.Errorf("%d of 3 approval rows filled", n)
	}
	ms, _, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
		for _, e := range stream {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("after the migration: %v", m)
	}
}

// Migration 004 removes the run rows stored before it for run ids that are
// no runs (runstate.State.Exists): dead letters only, or a change request
// its consumers refused; a database migrated so passes the audit, and a
// real run's row stays.
func TestPhantomRunRowsRemoved(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)
	var stream []eventbus.Envelope
	add := func(run string, p any, parts ...any) {
		ev := eventbus.New(run, p, parts...)
		ev.Time = timestamppb.New(t0.Add(time.Duration(len(stream)) * time.Second))
		stream = append(stream, eventbus.Envelope{Event: ev, Seq: uint64(len(stream) + 1), Subject: eventbus.Subject(run, ev.Type)})
	}
	dead := func(run string, original uint64) *runbookv1.Event_EventDeadLettered {
		return &runbookv1.Event_EventDeadLettered{EventDeadLettered: &runbookv1.DeadLettered{Consumer: "preflight", Reason: "refused",
			OriginalSubject: eventbus.Subject(run, "change.requested"), OriginalSequence: original}}
	}
	add("REAL", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1"}})
	add("GARBAGE", dead("GARBAGE", 99), "preflight", 99)
	add("REFUSED", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-2"}})
	add("REFUSED", dead("REFUSED", 3), "preflight", 3)
	add("REAL", dead("REAL", 1), "monitor", 1)
	add("REAL", &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{}})
	if err := store.ApplyBatch(ctx, 0, stream); err != nil {
		t.Fatal(err)
	}
	if n := count(t, store, `SELECT count(*) FROM runs`); n != 1 {
		t.Fatalf("%d run rows after projecting, want REAL's only", n)
	}
	// The database as it was before 004: a row for every run id.
	if _, err := store.Pool().Exec(ctx, `INSERT INTO runs (run_id, status, phase, chain) VALUES ('GARBAGE', 'SUBMITTED', 'PRE-FLIGHT', ''), ('REFUSED', 'SUBMITTED', 'PRE-FLIGHT', '');
		DROP INDEX events_dead_letters; DELETE FROM schema_migrations WHERE version = '004_dead_letters'`); err != nil {
		t.Fatal(err)
	}
	if err := pgstore.Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, store, `SELECT count(*) FROM runs WHERE run_id = 'REAL'`); n != 1 || count(t, store, `SELECT count(*) FROM runs`) != 1 {
		t.Fatalf("run rows after the migration: %d of REAL, want it alone", n)
	}
	ms, _, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
		for _, e := range stream {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("after the migration: %v", m)
	}
}
