package reporter

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ReadModel is the reporter's projection of the audit stream: every run, its
// status (the runstate fold) and the events its report needs. It is rebuilt
// from the stream at start-up, so it can always be thrown away. Memory is the
// in-process implementation; a PostgreSQL one (runs, events, reports tables)
// satisfies the same interface and runs the same test suite.
//
// Every method is safe for concurrent use. Apply and Reconcile are
// idempotent: an event already stored (same id) changes nothing.
type ReadModel interface {
	// Apply stores one event of the audit stream and folds it into its run.
	// env.Seq is the stream sequence, 0 when the caller does not know it (a
	// consumer delivery); events then keep their arrival order until
	// Reconcile puts them in stream order.
	Apply(ctx context.Context, env eventbus.Envelope) (Applied, error)
	// Reconcile replaces what the model holds of one run with its history as
	// read from the stream (stream order, sequences known), keeping any event
	// the history does not have yet, and folds the run again.
	Reconcile(ctx context.Context, runID string, history []eventbus.Envelope) error
	// Run returns one run, or nil when the model has none by that id.
	Run(ctx context.Context, runID string) (*Run, error)
	// Runs lists every run, newest first (by start, then run id).
	Runs(ctx context.Context) ([]RunSummary, error)
	// Unreported lists the runs that are final and have no report.ready, by run id.
	Unreported(ctx context.Context) ([]string, error)
}

// Applied is what Apply did.
type Applied struct {
	New         bool            // the event was not stored before
	Status      runstate.Status // the run's status after it
	ReportReady bool            // the run has its report.ready
}

// RunSummary is one line of a run listing.
type RunSummary struct {
	RunID    string          `json:"run_id"`
	ChangeID string          `json:"change_id"`
	Title    string          `json:"title"`
	Status   runstate.Status `json:"status"`
	// Started is the time of change.requested (of the first event seen
	// until change.requested is).
	Started time.Time `json:"started"`
	// Ended is the time of the event that made the run final; zero while in progress.
	Ended time.Time `json:"ended,omitzero"`
}

// Run is one run in detail.
type Run struct {
	RunSummary
	// State is the run's fold: a fresh copy, the caller's to keep.
	State *runstate.State
	// Events of the run the report is built from (deploy.step.output and
	// test.load.progress are not kept): stream order once the run is
	// reported, arrival order before.
	Events []eventbus.Envelope
	// Report is the run's report.ready payload, nil until there is one.
	Report *runbookv1.ReportReady
}

// noise are event types that say nothing a report or a status needs and
// can be many (a step's output, a load test's progress): counted as seen,
// not kept.
func noise(typ string) bool {
	return typ == "deploy.step.output" || typ == "test.load.progress"
}

// Memory is the in-memory ReadModel.
type Memory struct {
	mu   sync.RWMutex
	runs map[string]*memRun
}

type memRun struct {
	state   *runstate.State
	events  []eventbus.Envelope
	ids     map[string]bool
	started time.Time
	hasCR   bool // started comes from change.requested
	ended   time.Time
	report  *runbookv1.ReportReady
}

// NewMemory returns an empty in-memory read model.
func NewMemory() *Memory {
	return &Memory{runs: map[string]*memRun{}}
}

var _ ReadModel = (*Memory)(nil)

func newMemRun(runID string) *memRun {
	return &memRun{state: runstate.New(runID), ids: map[string]bool{}}
}

func (r *memRun) applied(isNew bool) Applied {
	return Applied{New: isNew, Status: r.state.Status, ReportReady: r.state.ReportReady}
}

// add folds one event in, if its id is new.
func (r *memRun) add(env eventbus.Envelope) bool {
	ev := env.Event
	if r.ids[ev.GetId()] {
		return false
	}
	r.ids[ev.GetId()] = true
	if !noise(ev.GetType()) {
		r.events = append(r.events, env)
	}
	t := ev.GetTime().AsTime()
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		r.started, r.hasCR = t, true
	case *runbookv1.Event_ReportReady:
		r.report = p.ReportReady
	}
	if !r.hasCR && (r.started.IsZero() || t.Before(r.started)) {
		r.started = t
	}
	wasFinal := r.state.Status.Final()
	r.state.Apply(ev)
	if !wasFinal && r.state.Status.Final() {
		r.ended = t
	}
	return true
}

func (r *memRun) summary() RunSummary {
	return RunSummary{
		RunID:    r.state.RunID,
		ChangeID: r.state.ChangeID,
		Title:    r.state.Title,
		Status:   r.state.Status,
		Started:  r.started,
		Ended:    r.ended,
	}
}

// Apply implements ReadModel.
func (m *Memory) Apply(_ context.Context, env eventbus.Envelope) (Applied, error) {
	runID := env.Event.GetRunId()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.runs[runID]
	if r == nil {
		r = newMemRun(runID)
		m.runs[runID] = r
	}
	return r.applied(r.add(env)), nil
}

// Reconcile implements ReadModel.
func (m *Memory) Reconcile(_ context.Context, runID string, history []eventbus.Envelope) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.runs[runID]
	r := newMemRun(runID)
	for _, env := range history {
		r.add(env)
	}
	if old != nil {
		// Events the history did not have yet (applied while it was read)
		// keep their place after it; ids seen but not kept (noise) stay seen.
		for _, env := range old.events {
			r.add(env)
		}
		for id := range old.ids {
			r.ids[id] = true
		}
	}
	m.runs[runID] = r
	return nil
}

// Run implements ReadModel.
func (m *Memory) Run(_ context.Context, runID string) (*Run, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.runs[runID]
	if r == nil {
		return nil, nil
	}
	evs := slices.Clone(r.events)
	fold := runstate.New(runID)
	for _, env := range evs {
		fold.Apply(env.Event)
	}
	return &Run{RunSummary: r.summary(), State: fold, Events: evs, Report: r.report}, nil
}

// Runs implements ReadModel.
func (m *Memory) Runs(context.Context) ([]RunSummary, error) {
	m.mu.RLock()
	out := make([]RunSummary, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, r.summary())
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b RunSummary) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return out, nil
}

// Unreported implements ReadModel.
func (m *Memory) Unreported(context.Context) ([]string, error) {
	m.mu.RLock()
	var out []string
	for id, r := range m.runs {
		if r.state.Status.Final() && !r.state.ReportReady {
			out = append(out, id)
		}
	}
	m.mu.RUnlock()
	slices.Sort(out)
	return out, nil
}
