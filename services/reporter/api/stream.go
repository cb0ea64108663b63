package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter"
)

// keepFinal is how many final runs the hub keeps folded, so the events
// that trail a final status (report.ready, notifications) need no re-read.
const keepFinal = 1024

// keepAlerts is how many of the latest alerts a client gets when it
// connects (the dashboard's live alerts are not empty on load), and
// alertLookback how far back in the stream the hub looks for them when it
// starts.
const (
	keepAlerts    = 50
	alertLookback = 50_000
)

// RunChange is the data of an SSE `event: run`: a run's status changed
// (a new run appears with SUBMITTED).
type RunChange struct {
	RunID  string          `json:"run_id"`
	Status runstate.Status `json:"status"`
	Phase  string          `json:"phase"`
	// Type and Seq are the event that changed it.
	Type string    `json:"type"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
}

// EventNote is the data of an SSE `event: event`: any event of a run
// except step output and load-test progress, so a run page can refresh.
type EventNote struct {
	RunID string    `json:"run_id"`
	Type  string    `json:"type"`
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
}

// hub follows the audit stream once per process and fans it out to the
// SSE clients.
type hub struct {
	o     Options
	log   *slog.Logger
	ready chan struct{} // closed once the follower's start position is fixed

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
	alerts  [][]byte // the latest keepAlerts alert messages, oldest first

	// Only the follower goroutine touches these.
	folds      map[string]*runstate.State
	finalOrder []string
}

type client struct {
	ch chan []byte
}

func newHub(o Options) *hub {
	return &hub{o: o, log: o.Log, ready: make(chan struct{}), clients: map[*client]struct{}{}, folds: map[string]*runstate.State{}}
}

// Ready is closed once the live stream follows the audit stream: every
// event published after it reaches the SSE clients.
func (a *API) Ready() <-chan struct{} { return a.hub.ready }

func (h *hub) run(ctx context.Context) error {
	defer h.shutdown()
	if h.o.Bus == nil {
		close(h.ready)
		<-ctx.Done()
		return nil
	}
	var next uint64
	for {
		if next == 0 {
			last, err := h.o.Bus.LastSeq(ctx)
			if err == nil {
				next = last + 1
				h.recentAlerts(ctx, last)
				close(h.ready)
			} else {
				if ctx.Err() != nil {
					return nil
				}
				h.log.Warn("live stream: audit stream position", "err", err)
				if !sleep(ctx, time.Second) {
					return nil
				}
				continue
			}
		}
		err := h.o.Bus.Follow(ctx, []string{eventbus.SubjectPrefix + ".>"}, next, func(env eventbus.Envelope) error {
			next = env.Seq + 1
			h.handle(ctx, env)
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		h.log.Warn("live stream: follow ended, resuming", "next_seq", next, "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// recentAlerts keeps the latest alerts stored up to last (among the
// stream's last alertLookback events), for the clients to come. Without
// them the page shows only what happens from now on: said in the log.
func (h *hub) recentAlerts(ctx context.Context, last uint64) {
	start := uint64(1)
	if last > alertLookback {
		start = last - alertLookback + 1
	}
	err := h.o.Bus.Scan(ctx, []string{eventbus.TypeSubjects("threshold.violated")}, start, func(env eventbus.Envelope) error {
		if env.Seq <= last {
			h.keepAlert(h.message("alert", env.Seq, violation(env)))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		h.log.Warn("live stream: the latest alerts could not be read; clients get the new ones only", "err", err)
	}
}

func (h *hub) keepAlert(msg []byte) {
	if msg == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.alerts = append(h.alerts, msg)
	if len(h.alerts) > keepAlerts {
		h.alerts = h.alerts[len(h.alerts)-keepAlerts:]
	}
}

// handle turns one event into SSE messages.
func (h *hub) handle(ctx context.Context, env eventbus.Envelope) {
	ev := env.Event
	typ := ev.GetType()
	if typ == "threshold.violated" {
		h.broadcast("alert", env.Seq, violation(env))
	}
	if reporter.Noise(typ) {
		return
	}
	runID := ev.GetRunId()
	h.broadcast("event", env.Seq, EventNote{RunID: runID, Type: typ, Seq: env.Seq, Time: ev.GetTime().AsTime()})
	st := h.fold(ctx, runID, env.Seq)
	before := st.Status
	st.ApplyAt(env.Seq, ev)
	// A run that does not exist (dead letters only) is announced to no one.
	if st.Status != before && st.Exists() {
		h.broadcast("run", env.Seq, RunChange{RunID: runID, Status: st.Status, Phase: st.Status.Phase(), Type: typ, Seq: env.Seq, Time: ev.GetTime().AsTime()})
		if st.Status.Final() {
			h.finalOrder = append(h.finalOrder, runID)
			if len(h.finalOrder) > keepFinal {
				delete(h.folds, h.finalOrder[0])
				h.finalOrder = h.finalOrder[1:]
			}
		}
	}
}

// fold returns the run's status fold as it was before stream sequence
// seq: from memory, or, the first time the run is seen, from its history.
func (h *hub) fold(ctx context.Context, runID string, seq uint64) *runstate.State {
	if st := h.folds[runID]; st != nil {
		return st
	}
	st := runstate.New(runID)
	hist, err := h.o.Bus.RunHistory(ctx, runID)
	if err != nil {
		h.log.Warn("live stream: run history", "run_id", runID, "err", err)
	}
	for _, e := range hist {
		if e.Seq < seq && !reporter.Noise(e.Event.GetType()) {
			st.ApplyAt(e.Seq, e.Event)
		}
	}
	h.folds[runID] = st
	return st
}

// broadcast sends one message to every client. A client whose buffer is
// full is dropped (its stream ends; EventSource reconnects), never waited for.
func (h *hub) broadcast(event string, seq uint64, data any) {
	msg := h.message(event, seq, data)
	if msg == nil {
		return
	}
	if event == "alert" {
		h.keepAlert(msg)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c.ch <- msg:
		default:
			delete(h.clients, c)
			close(c.ch)
			h.log.Warn("live stream: slow client dropped", "buffer", cap(c.ch))
		}
	}
}

// message is one SSE message (nil when data does not encode).
func (h *hub) message(event string, seq uint64, data any) []byte {
	b, err := json.Marshal(data)
	if err != nil {
		h.log.Error("live stream: encode", "event", event, "err", err)
		return nil
	}
	return fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", seq, event, b)
}

// add registers a client, its buffer holding the latest alerts first.
func (h *hub) add() *client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	c := &client{ch: make(chan []byte, h.o.ClientBuffer)}
	recent := h.alerts
	if n := cap(c.ch) / 2; len(recent) > n {
		recent = recent[len(recent)-n:] // room left for what happens next
	}
	for _, msg := range recent {
		c.ch <- msg
	}
	h.clients[c] = struct{}{}
	return c
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.ch)
	}
}

func (h *hub) shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c.ch)
	}
}

// serve is GET /api/v1/stream.
func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	c := h.add()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, apiError{Error: "the live stream is shutting down"})
		return
	}
	defer h.remove(c)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	beat := time.NewTicker(h.o.Heartbeat)
	defer beat.Stop()
	for {
		var out []byte
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-c.ch:
			if !ok {
				return // dropped as too slow, or shutting down
			}
			out = msg
		case <-beat.C:
			out = []byte(": heartbeat\n\n")
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
