package pgstore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// The rows of the projection, one type per table, each with the one rule
// that derives it from the stream: ApplyBatch writes what these give and
// Verify compares every stored row, column by column, with what they give
// for the stream's events. A column added to a table is added to its cols
// list, and so written and verified alike.

// col is one column of a projection row: its name, its SQL type and a
// pointer to the Go field holding its value (written from, scanned into).
type col struct {
	name, typ string
	ptr       any
}

func colNames(cs []col) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

// colValues are the values to write.
func colValues(cs []col) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = reflect.ValueOf(c.ptr).Elem().Interface()
	}
	return out
}

// colTargets are the destinations of a scan of selectList(cs).
func colTargets(cs []col) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = c.ptr
	}
	return out
}

// selectList selects the columns (jsonb as its text).
func selectList(cs []col) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
		if c.typ == "jsonb" {
			out[i] += "::text"
		}
	}
	return strings.Join(out, ", ")
}

func insertSQL(table string, cs []col, suffix string) string {
	ph := make([]string, len(cs))
	for i := range cs {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	return "INSERT INTO " + table + " (" + strings.Join(colNames(cs), ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")" + suffix
}

// eventRow is a row of events.
type eventRow struct {
	Seq                           int64
	EventID, RunID, Type, Subject string
	Time                          time.Time
	Actor                         string
	// Kept is false for the events a run's fold skips (reporter.Noise).
	Kept bool
	// Payload is the whole event in protojson.
	Payload string
	// Chain is the run's hash chain up to and including this event.
	Chain []byte
}

func (r *eventRow) cols() []col {
	return []col{{"stream_seq", "bigint", &r.Seq}, {"event_id", "text", &r.EventID}, {"run_id", "text", &r.RunID},
		{"type", "text", &r.Type}, {"subject", "text", &r.Subject}, {"time", "timestamptz", &r.Time},
		{"actor", "text", &r.Actor}, {"kept", "boolean", &r.Kept}, {"payload", "jsonb", &r.Payload}, {"chain", "bytea", &r.Chain}}
}

// newEventRow is the events row of env, whose run's chain up to env
// included is chain.
func newEventRow(env eventbus.Envelope, chain []byte) (eventRow, error) {
	ev := env.Event
	payload, err := marshal.Marshal(ev)
	if err != nil {
		return eventRow{}, fmt.Errorf("event %s: %w", ev.GetId(), err)
	}
	return eventRow{Seq: int64(env.Seq), EventID: ev.GetId(), RunID: ev.GetRunId(), Type: ev.GetType(), Subject: env.Subject,
		Time: ev.GetTime().AsTime(), Actor: ev.GetActor(), Kept: !reporter.Noise(ev.GetType()), Payload: string(payload), Chain: chain}, nil
}

// apply folds one event into the run: its summary fold (reporter.Fold, the
// same as the in-memory model's) and its hash chain (ChainNext).
func (f *runFold) apply(env eventbus.Envelope) error {
	chain, err := ChainNext(f.chain, env.Seq, env.Event)
	if err != nil {
		return err
	}
	f.Fold.Apply(env)
	f.chain = chain
	return nil
}

// runRow is a row of runs.
type runRow struct {
	RunID, Status, Phase, ChangeID, Title, Requester, RiskLevel string
	Started, Ended                                              *time.Time
	HasCR, Final, ReportReady                                   bool
	Events                                                      int32
	LastSeq                                                     int64
	Chain                                                       []byte
}

func (r *runRow) cols() []col {
	return []col{{"run_id", "text", &r.RunID}, {"status", "text", &r.Status}, {"phase", "text", &r.Phase},
		{"change_id", "text", &r.ChangeID}, {"title", "text", &r.Title}, {"requester", "text", &r.Requester},
		{"risk_level", "text", &r.RiskLevel}, {"started", "timestamptz", &r.Started}, {"ended", "timestamptz", &r.Ended},
		{"has_cr", "boolean", &r.HasCR}, {"final", "boolean", &r.Final}, {"report_ready", "boolean", &r.ReportReady},
		{"events", "int", &r.Events}, {"last_seq", "bigint", &r.LastSeq}, {"chain", "bytea", &r.Chain}}
}

// row is the run's row of runs.
func (f *runFold) row() runRow {
	sum := f.Summary()
	return runRow{RunID: sum.RunID, Status: string(sum.Status), Phase: sum.Phase, ChangeID: sum.ChangeID, Title: sum.Title,
		Requester: sum.Requester, RiskLevel: sum.RiskLevel, Started: timePtr(sum.Started), Ended: timePtr(sum.Ended),
		HasCR: f.HasCR, Final: sum.Status.Final(), ReportReady: sum.Reported, Events: int32(sum.Events),
		LastSeq: int64(sum.LastSeq), Chain: f.chain}
}

// approvalRow is a row of approvals: one per decision event.
type approvalRow struct {
	Seq                                                       int64
	EventID, RunID, Role, Approver, Decision, Comment, Reason string
	Time                                                      time.Time
	// Actor is the event's actor (the key that signed the decision);
	// PlanSHA256 the plan it is about.
	Actor, PlanSHA256 string
}

func (r *approvalRow) cols() []col {
	return []col{{"stream_seq", "bigint", &r.Seq}, {"event_id", "text", &r.EventID}, {"run_id", "text", &r.RunID},
		{"role", "text", &r.Role}, {"approver", "text", &r.Approver}, {"decision", "text", &r.Decision},
		{"comment", "text", &r.Comment}, {"reason", "text", &r.Reason}, {"time", "timestamptz", &r.Time},
		{"actor", "text", &r.Actor}, {"plan_sha256", "text", &r.PlanSHA256}}
}

// newApprovalRow is the approvals row of env; false when env is no decision.
func newApprovalRow(env eventbus.Envelope) (approvalRow, bool) {
	ev := env.Event
	var a *runbookv1.Approval
	var decision string
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ApprovalGranted:
		a, decision = p.ApprovalGranted, "granted"
	case *runbookv1.Event_ApprovalRejected:
		a, decision = p.ApprovalRejected, "rejected"
	case *runbookv1.Event_ApprovalRefused:
		a, decision = p.ApprovalRefused, "refused"
	default:
		return approvalRow{}, false
	}
	return approvalRow{Seq: int64(env.Seq), EventID: ev.GetId(), RunID: ev.GetRunId(), Role: a.GetRole(), Approver: a.GetApprover(),
		Decision: decision, Comment: a.GetComment(), Reason: a.GetReason(), Time: ev.GetTime().AsTime(),
		Actor: ev.GetActor(), PlanSHA256: a.GetPlanSha256()}, true
}

// reportRow is a row of reports: a run's first report.ready (the stream
// refuses a second one; a replayed stream keeps the first).
type reportRow struct {
	RunID                       string
	Seq                         int64
	EventID, Status, ReportJSON string
	// Report is ReportJSON as jsonb, when it is valid JSON.
	Report    *string
	QCSummary string
}

func (r *reportRow) cols() []col {
	return []col{{"run_id", "text", &r.RunID}, {"stream_seq", "bigint", &r.Seq}, {"event_id", "text", &r.EventID},
		{"status", "text", &r.Status}, {"report_json", "text", &r.ReportJSON}, {"report", "jsonb", &r.Report},
		{"qc_summary", "text", &r.QCSummary}}
}

// newReportRow is the reports row of env; false when env is no report.ready.
func newReportRow(env eventbus.Envelope) (reportRow, bool) {
	ev := env.Event
	r := ev.GetReportReady()
	if r == nil {
		return reportRow{}, false
	}
	row := reportRow{RunID: ev.GetRunId(), Seq: int64(env.Seq), EventID: ev.GetId(), Status: r.GetStatus(),
		ReportJSON: r.GetReportJson(), QCSummary: r.GetQcSummary()}
	if j := r.GetReportJson(); j != "" && json.Valid([]byte(j)) {
		row.Report = &j
	}
	return row, true
}

// Statements built from the column lists.
var (
	eventColumns      = colNames((&eventRow{}).cols())
	insertApprovalSQL = insertSQL("approvals", (&approvalRow{}).cols(), "")
	insertReportSQL   = insertSQL("reports", (&reportRow{}).cols(), " ON CONFLICT (run_id) DO NOTHING")
	upsertRunsSQL     = func() string {
		cs := (&runRow{}).cols()
		arrays := make([]string, len(cs))
		var set []string
		for i, c := range cs {
			arrays[i] = fmt.Sprintf("$%d::%s[]", i+1, c.typ)
			if i > 0 {
				set = append(set, c.name+" = excluded."+c.name)
			}
		}
		return "INSERT INTO runs (" + strings.Join(colNames(cs), ", ") + ") SELECT * FROM unnest(" + strings.Join(arrays, ", ") +
			") ON CONFLICT (" + cs[0].name + ") DO UPDATE SET " + strings.Join(set, ", ")
	}()
)

// colDiff is a column whose stored value is not the one the stream gives.
type colDiff struct {
	column, stored, want string
}

// diffCols compares a stored row with the row the stream gives, column by
// column, leaving out the columns in skip (checked otherwise).
func diffCols(stored, want []col, skip ...string) []colDiff {
	var out []colDiff
	for i, w := range want {
		if slices.Contains(skip, w.name) {
			continue
		}
		s, g := canon(stored[i]), canon(w)
		if s != g {
			ds, dg := excerpts(s, g)
			out = append(out, colDiff{w.name, ds, dg})
		}
	}
	return out
}

// canon is a column's value as text, equal for equal values as PostgreSQL
// stores them: timestamps to the microsecond in UTC, JSON with its keys
// sorted, NULL for a nil pointer.
func canon(c col) string {
	switch v := c.ptr.(type) {
	case *string:
		return canonText(c.typ, *v)
	case **string:
		if *v == nil {
			return "NULL"
		}
		return canonText(c.typ, **v)
	case *int64:
		return strconv.FormatInt(*v, 10)
	case *int32:
		return strconv.FormatInt(int64(*v), 10)
	case *bool:
		return strconv.FormatBool(*v)
	case *time.Time:
		return canonTime(*v)
	case **time.Time:
		if *v == nil {
			return "NULL"
		}
		return canonTime(**v)
	case *[]byte:
		return `\x` + hex.EncodeToString(*v)
	}
	panic(fmt.Sprintf("pgstore: column %s holds a %T", c.name, c.ptr))
}

func canonText(typ, s string) string {
	if typ == "jsonb" {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err == nil {
			if b, err := json.Marshal(v); err == nil {
				return string(b)
			}
		}
	}
	return strconv.Quote(s)
}

// canonTime: PostgreSQL keeps microseconds (pgx truncates the rest).
func canonTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

// excerpts shortens two long values that differ to the stretch around
// their first difference.
func excerpts(a, b string) (string, string) {
	const width = 100
	if len(a) <= width && len(b) <= width {
		return a, b
	}
	d := 0
	for d < len(a) && d < len(b) && a[d] == b[d] {
		d++
	}
	start := max(0, d-width/2)
	cut := func(s string) string {
		i := min(start, len(s))
		for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
			i--
		}
		j := min(i+width, len(s))
		for j < len(s) && !utf8.RuneStart(s[j]) {
			j--
		}
		out := s[i:j]
		if i > 0 {
			out = "…" + out
		}
		if j < len(s) {
			out += "…"
		}
		return fmt.Sprintf("%s (%d bytes)", out, len(s))
	}
	return cut(a), cut(b)
}
