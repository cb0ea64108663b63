// Package notify sends the notifications of the REPORT phase: for every
// report.ready, the seed's Slack message (sendSlackNotification), a generic
// webhook carrying the report JSON, and the e-mail report over SMTP for
// runs that failed, rolled back or had issues (sendReport's condition).
//
// Destinations come from the run's plan (report.notify) and from the
// server's configuration (Options.Destinations, the --notify-* flags);
// secrets stay in env vars named there (the Slack webhook URL, the SMTP
// URL) and never reach an event or a log line.
//
// # Exactly once per run and destination
//
// Each destination has a key (see Key). The outcome of one run and one key
// is recorded once on the run's subject: notification.sent, or
// notification.failed when every attempt failed, with the deterministic id
// <run>/<type>/<key>. Before sending, the notifier reads the run's history
// and skips every key that already has an outcome, so a redelivered
// report.ready — a restart, a lost ack, a deleted consumer — sends nothing
// twice. report.ready is acked only once every outcome is stored.
//
// The one gap is a crash after the receiver accepted the message and
// before its notification.sent was stored: the redelivery sends it again
// (at-least-once on the wire). Every HTTP request carries the header
// Idempotency-Key: <run>/<key>, and every e-mail a Message-ID derived from
// the same pair, so receivers can drop the duplicate.
//
// # Retries
//
// A delivery is tried Options.Attempts times (default 4) with exponential
// backoff (Options.Backoff, default 1s, doubling, capped at
// Options.MaxBackoff, default 30s; a receiver's Retry-After is honoured
// within the cap). Network errors, HTTP 5xx and 429 and SMTP 4xx replies
// are retried; other HTTP 4xx, SMTP 5xx replies and configuration errors
// (an unset env var) are not. A destination still down after the last
// attempt is recorded as notification.failed with the error and the
// attempts, logged at error level and counted
// (runbook_notifications_total{outcome="failed"}); it is never retried
// again for that run.
package notify

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Durable is the notifier's consumer. Never rename it: a new name
// re-consumes every report.ready of the stream (which the history check
// then skips, at the cost of reading every run again).
const Durable = "notifier"

// Options of the notifier.
type Options struct {
	// Consumer configures the durable consumer (Durable is always "notifier").
	// Default AckWait 60s (the router heartbeats every AckWait/3 while a
	// slow destination is retried), Concurrency 16.
	Consumer eventbus.ConsumerOptions
	// Destinations are the server's own destinations, notified for every
	// run on top of the plan's report.notify (see ServerDestinations).
	Destinations []plan.Notify
	// Getenv looks up the env vars that hold the Slack webhook and SMTP
	// URLs. Default: nothing is set (main passes os.LookupEnv).
	Getenv func(string) (string, bool)
	// HTTPClient posts Slack and webhook messages (default: a client
	// with Timeout).
	HTTPClient *http.Client
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// Attempts is how many times a delivery is tried (default 4).
	Attempts int
	// Backoff is the wait after the first failed attempt; it doubles after
	// each further one (default 1s), up to MaxBackoff (default 30s).
	Backoff, MaxBackoff time.Duration
	// Now is the clock used only when a report.ready carries no time
	// (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	o.Consumer.Durable = Durable
	if o.Consumer.AckWait <= 0 {
		o.Consumer.AckWait = time.Minute
	}
	if o.Consumer.Concurrency <= 0 {
		o.Consumer.Concurrency = 16
	}
	if o.Getenv == nil {
		o.Getenv = func(string) (string, bool) { return "", false }
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Notifier consumes report.ready and notifies each destination of the run
// once.
type Notifier struct {
	bus   *eventbus.Bus
	o     Options
	log   *slog.Logger
	em    *eventbus.Metrics
	total *prometheus.CounterVec
	// runLocks serialise the handling of one run inside this process (a
	// redelivery racing its first delivery must not send twice).
	runLocks [64]sync.Mutex
}

// New makes the notifier. log, m and reg may be nil.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Notifier {
	o.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Notifier{
		bus: bus, o: o, log: log.With("component", "notifier"), em: m,
		total: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_notifications_total",
			Help: "Notifications by channel (slack, webhook, email) and outcome: sent, failed (every attempt failed), skipped (the destination's condition), duplicate (already recorded for the run).",
		}, []string{"channel", "outcome"})),
	}
}

// Run consumes report.ready with the durable consumer until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	r := eventbus.NewRouter(n.bus, n.o.Consumer, n.log, n.em)
	eventbus.On(r, "report.ready", n.handle)
	eventbus.On(r, "deploy.started", n.started)
	return r.Run(ctx)
}

func (n *Notifier) lock(runID string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(runID))
	return &n.runLocks[h.Sum32()%uint32(len(n.runLocks))]
}

// lockRun holds the run's lock (one handler of a run at a time here) and
// returns its release.
func (n *Notifier) lockRun(runID string) (unlock func()) {
	mu := n.lock(runID)
	mu.Lock()
	return mu.Unlock
}

// startedSuffix marks the key of a destination's started notification:
// its outcome is recorded apart from the final report's.
const startedSuffix = "#started"

// runFacts is what the notifier reads of a run's history: its fold
// (runstate: the change request, whether it was stopped before its
// deploy) and, from the same loop, the destinations already notified (by
// key).
type runFacts struct {
	*runstate.State
	done map[string]bool
	cr   *runbookv1.ChangeRequested
}

// facts folds the run's history (runFacts), lists its destinations (the
// plan's, then the server's) and gives ev's time: the messages' time, the
// same on a redelivery.
func (n *Notifier) facts(ctx context.Context, ev *runbookv1.Event) (runFacts, []plan.Notify, time.Time, error) {
	runID := ev.GetRunId()
	at := n.o.Now()
	if ev.GetTime() != nil {
		at = ev.GetTime().AsTime()
	}
	history, err := n.bus.RunHistory(ctx, runID)
	if err != nil {
		return runFacts{}, nil, at, err
	}
	f := runFacts{State: runstate.New(runID), done: map[string]bool{}}
	for _, env := range history {
		if !f.ApplyAt(env.Seq, env.Event) {
			continue // an event id already folded
		}
		for _, p := range []*runbookv1.Notification{env.Event.GetNotificationSent(), env.Event.GetNotificationFailed()} {
			if p != nil && p.GetDestination() != "" {
				f.done[p.GetDestination()] = true
			}
		}
	}
	f.cr = f.Request.GetChangeRequested()
	dests, parsed := n.destinations(f.cr)
	if !parsed {
		n.log.Warn("the run's plan does not parse: notifying the server's destinations only", "run_id", runID, "event", ev.GetType())
	}
	return f, dests, at, nil
}

// destinations are the run's plan's destinations and the server's;
// parsed is false when the run has a plan that does not parse (the
// server's only).
func (n *Notifier) destinations(cr *runbookv1.ChangeRequested) (dests []plan.Notify, parsed bool) {
	var fromPlan []plan.Notify
	parsed = true
	if cr != nil {
		if p, _ := plan.FromChangeRequest(cr); p != nil {
			fromPlan = p.Report.Notify
		} else {
			parsed = false
		}
	}
	return merge(fromPlan, n.o.Destinations), parsed
}

// noneWants reports whether no destination of the run — the plan's and
// the server's — is notified on `on`: then the run's history need not be
// read (most runs name none).
func (n *Notifier) noneWants(ctx context.Context, runID, on string) (bool, error) {
	cr, err := n.bus.LastEvent(ctx, runID, "change.requested")
	if err != nil {
		return false, err
	}
	var req *runbookv1.ChangeRequested
	if cr != nil {
		req = cr.Event.GetChangeRequested()
	}
	dests, _ := n.destinations(req)
	for _, d := range dests {
		if d.Notifies(on) && (on != plan.NotifyOnStarted || d.Email == nil) {
			return false, nil
		}
	}
	return true, nil
}

// started tells the destinations that asked for it (on: [started]) that
// the run's deploy started, once per run and destination.
func (n *Notifier) started(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
	runID := ev.GetRunId()
	if none, err := n.noneWants(ctx, runID, plan.NotifyOnStarted); none || err != nil {
		return err
	}
	defer n.lockRun(runID)()
	f, dests, at, err := n.facts(ctx, ev)
	if err != nil {
		return err
	}
	if f.Stopped != nil {
		// A deploy.started that lost the race with a rejection or a
		// cancel: the deployer runs no step, so nothing started.
		n.log.Info("the run was stopped before its deploy started: no started notification", "run_id", runID, "stopped_by", f.Stopped.GetType())
		return nil
	}
	run := StartedRun(runID, f.cr.GetChangeId(), f.cr.GetTitle(), at)
	errs := make([]error, len(dests))
	var wg sync.WaitGroup
	for i, d := range dests {
		if !d.Notifies(plan.NotifyOnStarted) || d.Email != nil {
			continue
		}
		key := Key(d) + startedSuffix
		log := n.log.With("run_id", runID, "channel", d.Kind(), "destination", key)
		if f.done[key] {
			n.total.WithLabelValues(d.Kind(), "duplicate").Inc()
			continue
		}
		wg.Go(func() { errs[i] = n.notify(ctx, ev, run, d, key, log) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handle notifies every destination of the run that has no outcome yet;
// it returns nil once every outcome is stored.
func (n *Notifier) handle(ctx context.Context, ev *runbookv1.Event, rr *runbookv1.ReportReady) error {
	runID := ev.GetRunId()
	if none, err := n.noneWants(ctx, runID, plan.NotifyOnFinal); none || err != nil {
		return err
	}
	defer n.lockRun(runID)()
	f, dests, at, err := n.facts(ctx, ev)
	if err != nil {
		return err
	}
	done := f.done
	run, err := NewRun(runID, rr.GetStatus(), rr.GetReportJson(), rr.GetQcSummary(), at)
	if err != nil {
		n.log.Warn("report JSON does not decode: messages lack its duration, operator and issues", "run_id", runID, "err", err)
	}

	errs := make([]error, len(dests))
	var wg sync.WaitGroup
	for i, d := range dests {
		if !d.Notifies(plan.NotifyOnFinal) {
			continue
		}
		key := Key(d)
		log := n.log.With("run_id", runID, "channel", d.Kind(), "destination", key)
		switch {
		case done[key]:
			n.total.WithLabelValues(d.Kind(), "duplicate").Inc()
			log.Debug("already notified: skipped")
			continue
		case !ShouldSend(d, run):
			n.total.WithLabelValues(d.Kind(), "skipped").Inc()
			log.Debug("condition not met: not sent", "status", run.Status, "when", d.When())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.notify(ctx, ev, run, d, key, log)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// notify delivers to one destination and records the outcome.
func (n *Notifier) notify(ctx context.Context, ev *runbookv1.Event, run Run, d plan.Notify, key string, log *slog.Logger) error {
	target, attempts, err := n.deliver(ctx, run, d, key)
	if err != nil && ctx.Err() != nil {
		// Shutting down: the outcome is not known; the redelivery decides.
		return fmt.Errorf("notify %s of run %s: %w", key, run.ID, err)
	}
	p := &runbookv1.Notification{Channel: d.Kind(), Target: target, Destination: key, Attempts: int32(attempts)}
	var out *runbookv1.Event
	if err == nil {
		out = eventbus.New(run.ID, &runbookv1.Event_NotificationSent{NotificationSent: p}, key)
	} else {
		p.Error = err.Error()
		out = eventbus.New(run.ID, &runbookv1.Event_NotificationFailed{NotificationFailed: p}, key)
	}
	if _, perr := n.bus.Publish(ctx, eventbus.CausedBy(out, ev)); perr != nil {
		// Not recorded: report.ready is redelivered and this destination
		// tried again (a sent message may then be sent twice: see the
		// package doc).
		return fmt.Errorf("record %s for %s of run %s: %w", out.GetType(), key, run.ID, perr)
	}
	if err != nil {
		n.total.WithLabelValues(d.Kind(), "failed").Inc()
		log.Error("notification failed", "event", out.GetType(), "target", target, "attempts", attempts, "err", err)
		return nil
	}
	n.total.WithLabelValues(d.Kind(), "sent").Inc()
	log.Info("notification sent", "event", out.GetType(), "target", target, "attempts", attempts)
	return nil
}

// deliver sends run's message to d, retrying; it returns the target as
// recorded (no secrets) and the attempts made.
func (n *Notifier) deliver(ctx context.Context, run Run, d plan.Notify, key string) (target string, attempts int, err error) {
	idem := run.ID + "/" + key
	var send func(context.Context) error
	switch {
	case d.Slack != nil:
		target = "env:" + d.Slack.WebhookEnv
		hook, ok := n.o.Getenv(d.Slack.WebhookEnv)
		if !ok || hook == "" {
			return target, 0, fmt.Errorf("env %s (the Slack webhook URL) is not set", d.Slack.WebhookEnv)
		}
		body := SlackJSON(run)
		send = func(ctx context.Context) error {
			return postJSON(ctx, n.o.HTTPClient, hook, target, body, idem, nil)
		}
	case d.Webhook != nil:
		target = RedactURL(d.Webhook.URL)
		extra := http.Header{"X-Runbook-Run-Id": {run.ID}, "X-Runbook-Status": {run.Status}}
		body := run.ReportJSON
		if run.Started {
			body = StartedJSON(run)
			extra.Set("X-Runbook-Event", "deploy.started")
		}
		send = func(ctx context.Context) error {
			return postJSON(ctx, n.o.HTTPClient, d.Webhook.URL, target, body, idem, extra)
		}
	case d.Email != nil && run.Started:
		return "", 0, permanent(errors.New("e-mail carries the report only, not the started notification"))
	case d.Email != nil:
		to := strings.Join(d.Email.To, ",")
		target = "env:" + d.Email.SMTPEnv + " to " + to
		raw, ok := n.o.Getenv(d.Email.SMTPEnv)
		if !ok || raw == "" {
			return target, 0, fmt.Errorf("env %s (the SMTP URL) is not set", d.Email.SMTPEnv)
		}
		cfg, perr := ParseSMTPURL(raw)
		if perr != nil {
			return target, 0, fmt.Errorf("env %s: %w", d.Email.SMTPEnv, perr)
		}
		target = cfg.Addr() + " to " + to
		msg := Email(run, cfg.From, d.Email.To, key)
		send = func(ctx context.Context) error {
			return sendMail(ctx, cfg, d.Email.To, msg, n.o.Timeout)
		}
	default:
		return "", 0, errors.New("a destination without slack, webhook or email")
	}

	for attempts = 1; ; attempts++ {
		actx, cancel := context.WithTimeout(ctx, n.o.Timeout)
		err = send(actx)
		cancel()
		if err == nil || !Retryable(err) || attempts >= n.o.Attempts || ctx.Err() != nil {
			return target, attempts, err
		}
		wait := Delay(attempts, n.o.Backoff, n.o.MaxBackoff, err)
		n.log.Warn("notification attempt failed; retrying", "run_id", run.ID, "destination", key, "attempt", attempts, "after", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return target, attempts, err
		case <-t.C:
		}
	}
}
