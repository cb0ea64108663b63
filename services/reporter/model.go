package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ErrBehind is ApplyBatch's refusal when the model's position is below the
// one the caller expected: storing the batch would leave a gap.
var ErrBehind = errors.New("read model behind the reader")

// ReadModel is the reporter's projection of the audit stream: every run, its
// status (the runstate fold) and its events. It is fed in stream order by
// the projector (ApplyBatch) and remembers how far it got (Position), so a
// restart goes on from there and a redelivery never applies an event twice.
// Memory is the in-process implementation (its position starts at 0: it is
// rebuilt from the stream at every start); pgstore.Store keeps it in
// PostgreSQL. Both pass the suite in package readmodeltest.
//
// Every method is safe for concurrent use.
type ReadModel interface {
	// Position is the last stream sequence applied: every event of the
	// stream up to it is stored, none after it. 0 when none is.
	Position(ctx context.Context) (uint64, error)
	// Head is Position and the id of the event stored at it ("" at 0),
	// read together: the audit stream must hold that very event at that
	// sequence, or it is not the stream the model was projected from (it
	// was recreated). See CheckStream.
	Head(ctx context.Context) (seq uint64, eventID string, err error)
	// ApplyBatch stores events of the audit stream, given in stream order
	// (Seq ascending), and folds them into their runs; those at or below
	// Position are skipped. Atomic: the events and the new position are
	// stored together or not at all. expected is the position the caller
	// read, or reached with its last batch: a model below it has lost
	// what the caller stored (the projection was reset, or the database
	// lost its last commits), and applying envs would leave a gap, so it
	// stores nothing and returns ErrBehind; the caller reads the stream
	// again from Position()+1.
	ApplyBatch(ctx context.Context, expected uint64, envs []eventbus.Envelope) error
	// Run returns one run, or nil when the model has none by that id.
	Run(ctx context.Context, runID string) (*Run, error)
	// Runs lists runs matching f, newest first (by start, then run id).
	Runs(ctx context.Context, f RunFilter) ([]RunSummary, error)
	// Events returns up to limit events of one run with a sequence above
	// afterSeq, in stream order, including deploy.step.output and
	// test.load.progress. limit <= 0 means no limit.
	Events(ctx context.Context, runID string, afterSeq uint64, limit int) ([]eventbus.Envelope, error)
	// Unreported lists the runs that are final and have no report.ready, by run id.
	Unreported(ctx context.Context) ([]string, error)
	// DeadLetters returns up to limit event.dead_lettered events of the
	// stream, newest first (limit <= 0: all): the messages consumers
	// refused, those of runs that do not exist (Fold.Exists) included.
	DeadLetters(ctx context.Context, limit int) ([]eventbus.Envelope, error)
}

// RunFilter selects runs. Zero fields match every run.
type RunFilter struct {
	Status   runstate.Status
	ChangeID string
	// Since and Until bound the run's start: Since <= Started < Until.
	Since, Until time.Time
	// Limit is the page size (0: every run); Offset skips that many runs.
	Limit, Offset int
}

// Match reports whether r passes the filter (ignoring Limit and Offset).
func (f RunFilter) Match(r RunSummary) bool {
	switch {
	case f.Status != "" && r.Status != f.Status:
		return false
	case f.ChangeID != "" && r.ChangeID != f.ChangeID:
		return false
	case !f.Since.IsZero() && r.Started.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Started.Before(f.Until):
		return false
	}
	return true
}

// RunSummary is one line of a run listing.
type RunSummary struct {
	RunID     string          `json:"run_id"`
	ChangeID  string          `json:"change_id"`
	Title     string          `json:"title"`
	Requester string          `json:"requester"`
	RiskLevel string          `json:"risk_level,omitempty"`
	Status    runstate.Status `json:"status"`
	// Phase is the runbook phase of the status (runstate.Status.Phase).
	Phase string `json:"phase"`
	// Started is the time of change.requested (of the first event seen
	// until change.requested is).
	Started time.Time `json:"started"`
	// Ended is the time of the event that made the run final; zero while in progress.
	Ended time.Time `json:"ended,omitzero"`
	// Events is how many events of the run are stored.
	Events int `json:"events"`
	// LastSeq is the stream sequence of the run's latest event.
	LastSeq uint64 `json:"last_seq"`
	// Reported: the run has its report.ready.
	Reported bool `json:"reported"`
}

// Run is one run in detail.
type Run struct {
	RunSummary
	// State is the run's fold: a fresh copy, the caller's to keep.
	State *runstate.State
	// Events of the run the report is built from, in stream order
	// (deploy.step.output and test.load.progress are left out: see
	// ReadModel.Events).
	Events []eventbus.Envelope
	// Report is the run's report.ready payload, nil until there is one.
	Report *runbookv1.ReportReady
}

// Noise are event types that say nothing a report or a status needs and
// can be many (a step's output, a load test's progress): stored, but not
// part of Run.Events.
func Noise(typ string) bool {
	return typ == "deploy.step.output" || typ == "test.load.progress"
}

// Fold is what a read model keeps of one run besides its events: the
// status fold and the summary fields, updated one event at a time. Both
// implementations use it, so a run reads the same from either.
type Fold struct {
	State   *runstate.State
	Started time.Time
	HasCR   bool // Started comes from change.requested
	Ended   time.Time
	Risk    string
	Count   int
	LastSeq uint64
	Report  *runbookv1.ReportReady
}

// NewFold starts the fold of one run.
func NewFold(runID string) *Fold { return &Fold{State: runstate.New(runID)} }

// Apply folds one event in.
func (f *Fold) Apply(env eventbus.Envelope) {
	ev := env.Event
	f.Count++
	if env.Seq > f.LastSeq {
		f.LastSeq = env.Seq
	}
	t := ev.GetTime().AsTime()
	dead := ev.GetEventDeadLettered() != nil
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		f.Started, f.HasCR = t, true
	case *runbookv1.Event_PlanAssessed:
		f.Risk = p.PlanAssessed.GetLevel()
	case *runbookv1.Event_ReportReady:
		if f.Report == nil {
			f.Report = p.ReportReady
		}
	}
	if !f.HasCR && !dead && (f.Started.IsZero() || t.Before(f.Started)) {
		f.Started = t
	}
	if Noise(ev.GetType()) {
		return
	}
	wasFinal := f.State.Status.Final()
	f.State.ApplyAt(env.Seq, ev)
	if !wasFinal && f.State.Status.Final() {
		f.Ended = t
	}
}

// Exists reports whether the run exists (runstate.State.Exists): a run
// of dead letters only, or whose only events consumers refused, is in no
// listing and has no detail (Run returns nil), though its events are
// stored (Events) and its dead letters listed (DeadLetters).
func (f *Fold) Exists() bool { return f.State.Exists() }

// Summary is the run's listing line.
func (f *Fold) Summary() RunSummary {
	st := f.State
	status := st.Status
	if status == "" {
		status = runstate.Submitted
	}
	return RunSummary{
		RunID: st.RunID, ChangeID: st.ChangeID, Title: st.Title, Requester: st.Requester,
		RiskLevel: f.Risk, Status: status, Phase: status.Phase(),
		Started: f.Started, Ended: f.Ended, Events: f.Count, LastSeq: f.LastSeq, Reported: st.ReportReady,
	}
}

// SortRuns orders runs newest first (by start, then run id).
func SortRuns(runs []RunSummary) {
	slices.SortFunc(runs, func(a, b RunSummary) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
}

// Page applies f's Offset and Limit to sorted runs.
func (f RunFilter) Page(runs []RunSummary) []RunSummary {
	if f.Offset > 0 {
		if f.Offset >= len(runs) {
			return []RunSummary{}
		}
		runs = runs[f.Offset:]
	}
	if f.Limit > 0 && len(runs) > f.Limit {
		runs = runs[:f.Limit]
	}
	return runs
}

// Memory is the in-memory ReadModel.
type Memory struct {
	mu     sync.RWMutex
	pos    uint64
	headID string // the id of the event at pos
	runs   map[string]*memRun
	// unreported are the final runs without report.ready, kept as events
	// come so Unreported (asked after every caught-up batch) is cheap.
	unreported map[string]bool
	// dead are the event.dead_lettered events, stream order.
	dead []eventbus.Envelope
}

type memRun struct {
	fold   *Fold
	events []eventbus.Envelope // every event, stream order
}

// NewMemory returns an empty in-memory read model.
func NewMemory() *Memory {
	return &Memory{runs: map[string]*memRun{}, unreported: map[string]bool{}}
}

var _ ReadModel = (*Memory)(nil)

// Position implements ReadModel.
func (m *Memory) Position(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos, nil
}

// Head implements ReadModel.
func (m *Memory) Head(context.Context) (uint64, string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos, m.headID, nil
}

// ApplyBatch implements ReadModel.
func (m *Memory) ApplyBatch(_ context.Context, expected uint64, envs []eventbus.Envelope) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pos < expected {
		return fmt.Errorf("%w: position %d, expected %d", ErrBehind, m.pos, expected)
	}
	for _, env := range envs {
		if env.Seq <= m.pos {
			continue
		}
		m.pos, m.headID = env.Seq, env.Event.GetId()
		runID := env.Event.GetRunId()
		r := m.runs[runID]
		if r == nil {
			r = &memRun{fold: NewFold(runID)}
			m.runs[runID] = r
		}
		r.events = append(r.events, env)
		r.fold.Apply(env)
		if env.Event.GetEventDeadLettered() != nil {
			m.dead = append(m.dead, env)
		}
		if st := r.fold.State; r.fold.Exists() && st.Status.Final() && !st.ReportReady {
			m.unreported[runID] = true
		} else {
			delete(m.unreported, runID)
		}
	}
	return nil
}

// Run implements ReadModel.
func (m *Memory) Run(_ context.Context, runID string) (*Run, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.runs[runID]
	if r == nil || !r.fold.Exists() {
		return nil, nil
	}
	out := &Run{RunSummary: r.fold.Summary(), State: runstate.New(runID), Report: r.fold.Report}
	for _, env := range r.events {
		if !Noise(env.Event.GetType()) {
			out.Events = append(out.Events, env)
			out.State.ApplyAt(env.Seq, env.Event)
		}
	}
	return out, nil
}

// Runs implements ReadModel.
func (m *Memory) Runs(_ context.Context, f RunFilter) ([]RunSummary, error) {
	m.mu.RLock()
	out := make([]RunSummary, 0, len(m.runs))
	for _, r := range m.runs {
		if !r.fold.Exists() {
			continue
		}
		if s := r.fold.Summary(); f.Match(s) {
			out = append(out, s)
		}
	}
	m.mu.RUnlock()
	SortRuns(out)
	return f.Page(out), nil
}

// Events implements ReadModel.
func (m *Memory) Events(_ context.Context, runID string, afterSeq uint64, limit int) ([]eventbus.Envelope, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.runs[runID]
	if r == nil {
		return nil, nil
	}
	i, _ := slices.BinarySearchFunc(r.events, afterSeq+1, func(e eventbus.Envelope, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	evs := r.events[i:]
	if limit > 0 && len(evs) > limit {
		evs = evs[:limit]
	}
	return slices.Clone(evs), nil
}

// Unreported implements ReadModel.
func (m *Memory) Unreported(context.Context) ([]string, error) {
	m.mu.RLock()
	out := make([]string, 0, len(m.unreported))
	for id := range m.unreported {
		out = append(out, id)
	}
	m.mu.RUnlock()
	slices.Sort(out)
	return out, nil
}

// DeadLetters implements ReadModel.
func (m *Memory) DeadLetters(_ context.Context, limit int) ([]eventbus.Envelope, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := len(m.dead)
	if limit > 0 && n > limit {
		n = limit
	}
	out := make([]eventbus.Envelope, 0, n)
	for i := len(m.dead) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, m.dead[i])
	}
	return out, nil
}
