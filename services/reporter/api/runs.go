package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter"
)

// Page sizes.
const (
	defaultRunsLimit   = 50
	maxRunsLimit       = 1000
	defaultEventsLimit = 500
	maxEventsLimit     = 5000
	defaultDeadLimit   = 100
	maxDeadLimit       = 1000
)

// statuses are the values ?status= accepts.
var statuses = runstate.Statuses()

// badParam is a query or path parameter that cannot be used.
type badParam struct{ apiError }

func (b *badParam) Error() string { return b.apiError.Error }

func bad(param, value, allowed string) *badParam {
	return &badParam{apiError{
		Error:     fmt.Sprintf("parameter %s=%q is not valid: want %s", param, value, allowed),
		Parameter: param, Value: value, Allowed: allowed,
	}}
}

// parseRunFilter reads the query of GET /api/v1/runs.
func parseRunFilter(q url.Values) (reporter.RunFilter, error) {
	f := reporter.RunFilter{Limit: defaultRunsLimit}
	for name := range q {
		switch name {
		case "status", "change_id", "since", "until", "limit", "offset":
		default:
			return f, bad(name, q.Get(name), "one of the parameters status, change_id, since, until, limit, offset")
		}
	}
	if v := q.Get("status"); v != "" {
		s := runstate.Status(strings.ToUpper(v))
		known := false
		names := make([]string, len(statuses))
		for i, st := range statuses {
			names[i] = string(st)
			known = known || st == s
		}
		if !known {
			return f, bad("status", v, "one of "+strings.Join(names, ", "))
		}
		f.Status = s
	}
	f.ChangeID = q.Get("change_id")
	var err error
	if f.Since, err = parseTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, bad("until", q.Get("until"), "a time after since="+q.Get("since"))
	}
	if f.Limit, err = parseInt(q, "limit", defaultRunsLimit, 1, maxRunsLimit); err != nil {
		return f, err
	}
	if f.Offset, err = parseInt(q, "offset", 0, 0, 1<<31-1); err != nil {
		return f, err
	}
	return f, nil
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, bad(name, v, "an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return t, nil
}

func parseInt(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, bad(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
	}
	return n, nil
}

// runList is the body of GET /api/v1/runs.
type runList struct {
	Runs []reporter.RunSummary `json:"runs"`
	// NextOffset is the offset of the next page; absent on the last page.
	NextOffset *int `json:"next_offset,omitempty"`
}

func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	f, err := parseRunFilter(r.URL.Query())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page := f.Limit
	f.Limit++ // one more tells whether there is a next page
	runs, err := a.o.Model.Runs(r.Context(), f)
	if err != nil {
		a.internal(w, r, fmt.Errorf("list runs: %w", err))
		return
	}
	out := runList{Runs: runs}
	if len(runs) > page {
		out.Runs = runs[:page]
		next := f.Offset + page
		out.NextOffset = &next
	}
	if out.Runs == nil {
		out.Runs = []reporter.RunSummary{}
	}
	writeJSON(w, http.StatusOK, out)
}

// fail answers err: 400 for a bad parameter, 404 for an unknown run, 500
// for anything else.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch e := err.(type) {
	case *badParam:
		writeError(w, http.StatusBadRequest, e.apiError)
	case *notFound:
		writeError(w, http.StatusNotFound, apiError{Error: e.msg})
	default:
		a.internal(w, r, err)
	}
}

type notFound struct{ msg string }

func (n *notFound) Error() string { return n.msg }

// run looks up the run named by the path, or answers 400 / 404 / 500.
func (a *API) run(w http.ResponseWriter, r *http.Request) (*reporter.Run, bool) {
	id := r.PathValue("id")
	if err := eventbus.ValidateRunID(id); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Error: err.Error(), Parameter: "id", Value: id, Allowed: "1-128 characters of [A-Za-z0-9_-]"})
		return nil, false
	}
	run, err := a.o.Model.Run(r.Context(), id)
	if err != nil {
		a.internal(w, r, fmt.Errorf("read run %s: %w", id, err))
		return nil, false
	}
	if run == nil {
		a.fail(w, r, &notFound{"no run " + id})
		return nil, false
	}
	return run, true
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	run, ok := a.run(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, BuildView(run))
}

// eventList is the body of GET /api/v1/runs/{id}/events.
type eventList struct {
	RunID  string      `json:"run_id"`
	Events []wireEvent `json:"events"`
	// NextAfter is the ?after= of the next page; absent on the last page.
	NextAfter *uint64 `json:"next_after,omitempty"`
}

// wireEvent is one event with where it sits in the stream; Event is the
// runbook.v1.Event in protojson.
type wireEvent struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Event   json.RawMessage `json:"event"`
}

func (a *API) getEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "after" && name != "limit" {
			a.fail(w, r, bad(name, q.Get(name), "one of the parameters after, limit"))
			return
		}
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			a.fail(w, r, bad("after", v, "a stream sequence: an integer >= 0"))
			return
		}
		after = n
	}
	limit, err := parseInt(q, "limit", defaultEventsLimit, 1, maxEventsLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	run, ok := a.run(w, r)
	if !ok {
		return
	}
	envs, err := a.o.Model.Events(r.Context(), run.RunID, after, limit+1)
	if err != nil {
		a.internal(w, r, fmt.Errorf("read events of run %s: %w", run.RunID, err))
		return
	}
	out := eventList{RunID: run.RunID, Events: []wireEvent{}}
	if len(envs) > limit {
		envs = envs[:limit]
		next := envs[len(envs)-1].Seq
		out.NextAfter = &next
	}
	withhold := !allowsPlan(r)
	w.Header().Add("Vary", "Authorization, Cookie")
	for _, env := range envs {
		ev := env.Event
		if cr := ev.GetChangeRequested(); withhold && cr != nil && cr.GetPlanYaml() != "" {
			ev = proto.CloneOf(ev)
			ev.GetChangeRequested().PlanYaml = PlanWithheld
		}
		b, err := protojson.Marshal(ev)
		if err != nil {
			a.internal(w, r, fmt.Errorf("encode event %s: %w", env.Event.GetId(), err))
			return
		}
		out.Events = append(out.Events, wireEvent{Seq: env.Seq, Subject: env.Subject, Event: b})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getReport(w http.ResponseWriter, r *http.Request) {
	run, ok := a.run(w, r)
	if !ok {
		return
	}
	if run.Report == nil {
		a.fail(w, r, &notFound{fmt.Sprintf("run %s has no report yet (status %s)", run.RunID, run.Status)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(run.Report.GetReportJson()))
}

func (a *API) getSummary(w http.ResponseWriter, r *http.Request) {
	run, ok := a.run(w, r)
	if !ok {
		return
	}
	if run.Report == nil {
		a.fail(w, r, &notFound{fmt.Sprintf("run %s has no QC summary yet (status %s)", run.RunID, run.Status)})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s := run.Report.GetQcSummary()
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	_, _ = w.Write([]byte(s))
}

// deadLetter is one entry of GET /api/v1/dead-letters: a message a
// consumer refused (event.dead_lettered). RunID is the run of its
// subject, which exists only if a valid event of it was folded (a
// message that never decoded makes no run).
type deadLetter struct {
	Seq              uint64    `json:"seq"`
	RunID            string    `json:"run_id"`
	Time             time.Time `json:"time"`
	Consumer         string    `json:"consumer"`
	Reason           string    `json:"reason"`
	OriginalSubject  string    `json:"original_subject"`
	OriginalSequence uint64    `json:"original_sequence"`
	Deliveries       uint64    `json:"deliveries"`
	ContentType      string    `json:"original_content_type,omitempty"`
}

// listDeadLetters answers GET /api/v1/dead-letters?limit=N: the newest
// dead letters first.
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "limit" {
			a.fail(w, r, bad(name, q.Get(name), "the parameter limit"))
			return
		}
	}
	limit, err := parseInt(q, "limit", defaultDeadLimit, 1, maxDeadLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	envs, err := a.o.Model.DeadLetters(r.Context(), limit)
	if err != nil {
		a.internal(w, r, fmt.Errorf("list dead letters: %w", err))
		return
	}
	out := struct {
		DeadLetters []deadLetter `json:"dead_letters"`
	}{DeadLetters: []deadLetter{}}
	for _, env := range envs {
		d := env.Event.GetEventDeadLettered()
		out.DeadLetters = append(out.DeadLetters, deadLetter{
			Seq: env.Seq, RunID: env.Event.GetRunId(), Time: env.Event.GetTime().AsTime(),
			Consumer: d.GetConsumer(), Reason: d.GetReason(), OriginalSubject: d.GetOriginalSubject(),
			OriginalSequence: d.GetOriginalSequence(), Deliveries: d.GetDeliveries(), ContentType: d.GetOriginalContentType(),
		})
	}
	writeJSON(w, http.StatusOK, out)
}
