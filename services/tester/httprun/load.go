package httprun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kis-core/runbook/services/tester/loadstat"
)

// Defaults of a load test: the seed's k6 run (50 VUs, 5 minutes, sleep(1)),
// and k6's own request timeout and graceful stop.
const (
	DefaultVUs            = 50
	DefaultLoadDuration   = 5 * time.Minute
	DefaultThinkTime      = time.Second
	DefaultRequestTimeout = 60 * time.Second
	DefaultGracefulStop   = 30 * time.Second
	DefaultProgressEvery  = time.Second
	DefaultMaxInFlight    = 1000
	// abortEvery is how often a running test checks for a clearly failed
	// gate.
	abortEvery = 250 * time.Millisecond
	// rampEvery is how often the closed model's VU count follows its stages.
	rampEvery = 50 * time.Millisecond
)

// Stage is one ramp of the closed model: the VU count moves linearly to
// Target over Duration (k6's ramping-vus).
type Stage struct {
	Duration time.Duration
	Target   int
}

// LoadConfig is one load test. Each iteration sends Requests in order.
//
// Closed model (Rate 0): VUs virtual users (or the VU count Stages ramp
// through), each iterating and then sleeping ThinkTime, for Duration (or
// the stages' total). Open model (Rate > 0): an iteration starts every
// 1/Rate seconds for Duration whatever the target does; an iteration's first
// request is timed from when it was due, so a target that stalls shows in
// the latencies (no coordinated omission); at most MaxInFlight iterations
// run at once and an arrival beyond that is dropped, each of its requests
// counted as an error of kind dropped.
type LoadConfig struct {
	VUs       int
	Duration  time.Duration
	ThinkTime time.Duration
	Stages    []Stage
	Rate      float64
	// MaxInFlight bounds the open model (default DefaultMaxInFlight).
	MaxInFlight int
	Requests    []*Prepared
	// Names name Requests, pairwise (default each request's Label).
	Names []string
	// RequestTimeout bounds one request; a request that times out is an error.
	RequestTimeout time.Duration
	// GracefulStop is how long requests in flight at the end of Duration may
	// finish; after it they are cancelled and not counted.
	GracefulStop time.Duration
	// ProgressEvery is how often OnProgress is called (at least 1s).
	ProgressEvery time.Duration
	// Gates, with AbortEarly, stop the test as soon as one has clearly
	// failed (loadstat.ClearlyFailed).
	Gates      *loadstat.Gates
	AbortEarly bool
	// Client sends the requests; nil: NewLoadClient.
	Client *http.Client
}

// Open reports whether c is the open model.
func (c *LoadConfig) Open() bool { return c.Rate > 0 }

func (c *LoadConfig) setDefaults() {
	if c.Open() {
		c.VUs, c.Stages, c.ThinkTime = 0, nil, 0
		if c.MaxInFlight <= 0 {
			c.MaxInFlight = DefaultMaxInFlight
		}
	}
	if len(c.Stages) > 0 {
		c.Duration, c.VUs = 0, 0
		for _, s := range c.Stages {
			c.Duration += max(s.Duration, 0)
			c.VUs = max(c.VUs, s.Target)
		}
	}
	if !c.Open() && c.VUs <= 0 {
		c.VUs = DefaultVUs
	}
	if c.Duration <= 0 {
		c.Duration = DefaultLoadDuration
	}
	c.ThinkTime = max(c.ThinkTime, 0)
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.GracefulStop <= 0 {
		c.GracefulStop = DefaultGracefulStop
	}
	if c.ProgressEvery < time.Second {
		c.ProgressEvery = DefaultProgressEvery
	}
	names := make([]string, len(c.Requests))
	for i, p := range c.Requests {
		if i < len(c.Names) && c.Names[i] != "" {
			names[i] = c.Names[i]
		} else {
			names[i] = p.Label()
		}
	}
	c.Names = names
}

// targetAt is the closed model's VU count at elapsed time t.
func (c *LoadConfig) targetAt(t time.Duration) int {
	if len(c.Stages) == 0 {
		return c.VUs
	}
	from, at := 0, time.Duration(0)
	for _, s := range c.Stages {
		if t < at+s.Duration {
			f := float64(t-at) / float64(s.Duration)
			return int(math.Round(float64(from) + f*float64(s.Target-from)))
		}
		at += s.Duration
		from = s.Target
	}
	return from
}

// NewLoadClient returns the one client a load test shares among its
// senders: keep-alive connections, conns idle ones per host.
func NewLoadClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no global limit
	t.MaxIdleConnsPerHost = max(conns, 2)
	return &http.Client{Transport: t}
}

// Progress is the state of a running load test.
type Progress struct {
	Elapsed time.Duration
	// Second is the elapsed time in whole seconds, strictly increasing from
	// one call to the next: a stable id for the progress point.
	Second int64
	loadstat.Snapshot
	// VUs running now (closed model), iterations in flight, and requests
	// per second since the previous point.
	VUs      int
	InFlight int64
	RPS      float64
}

// LoadObserver receives what a load test does as it goes. Both callbacks may
// be nil; OnRequest is called concurrently by the senders, OnProgress from
// one goroutine and may block (it does not hold up the senders). OnProgress
// is called every ProgressEvery and once more when the test ends.
type LoadObserver struct {
	OnRequest  func(name string, d time.Duration, kind loadstat.Kind)
	OnProgress func(Progress)
}

// LoadReport is the outcome of a finished load test.
type LoadReport struct {
	loadstat.Snapshot
	// Stats are the latencies overall and per request name, and the errors
	// by kind.
	Stats loadstat.Stats
	// Samples is a uniform sample of the latencies (ms), at most
	// loadstat.DefaultReservoir.
	Samples []float64
	// Model is closed or open; VUs the most VUs that ran (closed), Rate the
	// arrival rate asked for (open).
	Model   string
	VUs     int
	Rate    float64
	Elapsed time.Duration
	RPS     float64
	// Iterations counts iterations started (open: including dropped ones).
	Iterations int64
	// Interrupted counts requests cancelled at the graceful stop or the
	// abort (not in Requests).
	Interrupted int64
	// Aborted says why the test stopped early ("" when it ran its course).
	Aborted string
}

// engine is one running load test.
type engine struct {
	cfg    LoadConfig
	client *http.Client
	rec    *loadstat.Recorder
	obs    LoadObserver
	// stop ends the starting of new iterations; hard cancels requests in
	// flight.
	stop, hard context.Context
	start      time.Time

	iterations, interrupted, inFlight atomic.Int64
	vus                               atomic.Int64

	// raw sends rawReqs (pairwise with cfg.Requests) when every request is
	// plain http without a proxy and no client was given.
	raw     *rawClient
	rawReqs []*rawRequest
}

// RunLoad runs the load test. It returns an error when ctx ends before the
// test does (context.Cause tells why), with the report of what it measured
// until then (requests cut by the end are not counted; no last progress
// point); an early abort on a clearly failed gate is a report with Aborted
// set.
func RunLoad(ctx context.Context, cfg LoadConfig, obs LoadObserver) (LoadReport, error) {
	cfg.setDefaults()
	if len(cfg.Requests) == 0 {
		return LoadReport{}, errors.New("load test has no requests")
	}
	if cfg.Open() && (math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate)) {
		return LoadReport{}, fmt.Errorf("load test rate %v is not a number of iterations per second", cfg.Rate)
	}
	e := &engine{cfg: cfg, obs: obs, client: cfg.Client}
	if e.client == nil {
		e.client = NewLoadClient(max(cfg.VUs, cfg.MaxInFlight))
		defer e.client.CloseIdleConnections()
		raw := true
		for _, p := range cfg.Requests {
			raw = raw && rawEligible(p)
		}
		if raw {
			for _, p := range cfg.Requests {
				r, err := newRawRequest(p)
				if err != nil {
					return LoadReport{}, err
				}
				e.rawReqs = append(e.rawReqs, r)
			}
		}
	}
	// Requests carrying environment values (Guard) are never redirected
	// to an undeclared host (the raw client follows no redirect at all).
	e.client = GuardRedirects(e.client)
	rc := loadstat.Config{Names: cfg.Names, Shards: 4 * runtime.GOMAXPROCS(0)}
	if cfg.Gates != nil {
		rc.AboveMS = cfg.Gates.AboveMS()
	}
	e.rec = loadstat.New(rc)

	e.start = time.Now()
	stop, cancelStop := context.WithCancelCause(ctx)
	defer cancelStop(nil)
	stopTimer := time.AfterFunc(cfg.Duration, func() { cancelStop(errDurationOver) })
	defer stopTimer.Stop()
	hard, cancelHard := context.WithCancelCause(ctx)
	defer cancelHard(nil)
	e.stop, e.hard = stop, hard
	if e.rawReqs != nil {
		e.raw = newRawClient(hard)
		defer e.raw.closeIdle()
	}

	done := make(chan struct{})
	go func() {
		if cfg.Open() {
			e.open()
		} else {
			e.closed()
		}
		close(done)
	}()

	var (
		last     int64
		lastReq  int64
		lastTime = e.start
		aborted  string
		graceful <-chan time.Time
		stopC    = stop.Done()
	)
	progress := func() {
		if e.obs.OnProgress == nil {
			return
		}
		now := time.Now()
		st := e.rec.Stats()
		el := now.Sub(e.start)
		sec := max(int64(math.Round(el.Seconds())), last+1)
		last = sec
		p := Progress{Elapsed: el, Second: sec, Snapshot: st.Snapshot(), VUs: int(e.vus.Load()), InFlight: e.inFlight.Load()}
		if d := now.Sub(lastTime).Seconds(); d > 0 {
			p.RPS = float64(p.Requests-lastReq) / d
		}
		lastReq, lastTime = p.Requests, now
		e.obs.OnProgress(p)
	}
	ticker := time.NewTicker(cfg.ProgressEvery)
	defer ticker.Stop()
	abortTick := time.NewTicker(abortEvery)
	defer abortTick.Stop()
	if cfg.Gates == nil || !cfg.AbortEarly {
		abortTick.Stop()
	}
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ticker.C:
			progress()
		case <-abortTick.C:
			if why, failed := loadstat.ClearlyFailed(e.rec.Stats(), *cfg.Gates); failed && aborted == "" {
				aborted = why
				abortTick.Stop()
				cancelStop(errAborted)
				cancelHard(errAborted)
			}
		case <-stopC:
			stopC = nil
			if aborted == "" {
				graceful = time.After(cfg.GracefulStop)
			}
		case <-graceful:
			cancelHard(errGracefulStop)
			graceful = nil
		}
	}
	interrupted := ctx.Err()
	if interrupted == nil {
		progress() // the last point: every load test has at least one
	}
	el := time.Since(e.start)
	st := e.rec.Stats()
	rep := LoadReport{
		Snapshot: st.Snapshot(), Stats: st, Samples: e.rec.Samples(),
		Model: "closed", VUs: cfg.VUs, Rate: cfg.Rate, Elapsed: el,
		Iterations: e.iterations.Load(), Interrupted: e.interrupted.Load(), Aborted: aborted,
	}
	if cfg.Open() {
		rep.Model = "open"
	}
	if s := el.Seconds(); s > 0 {
		rep.RPS = float64(rep.Requests) / s
	}
	if interrupted != nil {
		return rep, fmt.Errorf("load test interrupted: %w", context.Cause(ctx))
	}
	return rep, nil
}

var (
	errDurationOver = errors.New("load test duration over")
	errAborted      = errors.New("load test aborted: a gate clearly failed")
	errGracefulStop = errors.New("graceful stop over")
)

// iterate sends the iteration's requests in order. due is when the first
// request was meant to be sent (zero: now). It reports false when the test
// is over.
func (e *engine) iterate(shardHint int, due time.Time) bool {
	for i, p := range e.cfg.Requests {
		if i > 0 && e.stop.Err() != nil {
			return false
		}
		start := time.Now()
		if i == 0 && !due.IsZero() {
			start = due
		}
		kind, ok := e.send(i, p)
		if !ok {
			e.interrupted.Add(1)
			return false
		}
		d := time.Since(start)
		e.rec.Add(shardHint, i, d, kind)
		if e.obs.OnRequest != nil {
			e.obs.OnRequest(e.cfg.Names[i], d, kind)
		}
	}
	return true
}

// send sends p once and reads its answer to the end. ok is false when the
// test's hard stop cut it (the request is not counted).
func (e *engine) send(i int, p *Prepared) (loadstat.Kind, bool) {
	if e.raw != nil {
		status, err := e.raw.do(e.rawReqs[i], e.cfg.RequestTimeout)
		switch {
		case e.hard.Err() != nil:
			return 0, false
		case err != nil:
			return errKind(err), true
		}
		return loadstat.StatusKind(status), true
	}
	rctx, cancel := context.WithTimeout(e.hard, e.cfg.RequestTimeout)
	defer cancel()
	req, err := p.NewRequest(rctx)
	if err != nil {
		return loadstat.KindOther, true
	}
	resp, err := e.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if e.hard.Err() != nil {
		return 0, false
	}
	if err != nil {
		return errKind(err), true
	}
	return loadstat.StatusKind(resp.StatusCode), true
}

func errKind(err error) loadstat.Kind {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return loadstat.KindTimeout
	}
	return loadstat.KindConnection
}

// closed runs the closed model: VU i runs while i is below the stages'
// current target, finishing its iteration when the target drops.
func (e *engine) closed() {
	var wg sync.WaitGroup
	alive := make([]atomic.Bool, e.cfg.VUs)
	var target atomic.Int64
	vu := func(id int) {
		defer e.vus.Add(-1)
		think := time.NewTimer(time.Hour)
		think.Stop()
		defer think.Stop()
		for e.stop.Err() == nil && id < int(target.Load()) {
			e.iterations.Add(1)
			if !e.iterate(id, time.Time{}) {
				return
			}
			if e.cfg.ThinkTime > 0 {
				think.Reset(e.cfg.ThinkTime)
				select {
				case <-e.stop.Done():
					return
				case <-think.C:
				}
			}
		}
	}
	follow := func() {
		n := min(e.cfg.targetAt(time.Since(e.start)), len(alive))
		target.Store(int64(n))
		for id := range n {
			if alive[id].CompareAndSwap(false, true) {
				e.vus.Add(1)
				wg.Go(func() {
					defer alive[id].Store(false)
					vu(id)
				})
			}
		}
	}
	follow()
	if len(e.cfg.Stages) > 0 {
		t := time.NewTicker(rampEvery)
		defer t.Stop()
	ramp:
		for {
			select {
			case <-e.stop.Done():
				break ramp
			case <-t.C:
				follow()
			}
		}
	}
	wg.Wait()
}

// open runs the open model: iteration i is due at start + i/Rate.
func (e *engine) open() {
	var wg sync.WaitGroup
	interval := float64(time.Second) / e.cfg.Rate
	maxIn := int64(e.cfg.MaxInFlight)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		off := time.Duration(float64(i) * interval)
		if off >= e.cfg.Duration {
			break
		}
		due := e.start.Add(off)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-e.stop.Done():
				if errors.Is(context.Cause(e.stop), errDurationOver) {
					<-timer.C // due before the end: it still starts, on time
				}
			case <-timer.C:
			}
		}
		// The duration ending while this loop slept past a due time does
		// not cancel an iteration due before it; an abort or interrupt does.
		if e.stop.Err() != nil && !errors.Is(context.Cause(e.stop), errDurationOver) {
			break
		}
		e.iterations.Add(1)
		if e.inFlight.Add(1) > maxIn {
			e.inFlight.Add(-1)
			for n := range e.cfg.Requests {
				e.rec.Drop(int(i), n)
				if e.obs.OnRequest != nil {
					e.obs.OnRequest(e.cfg.Names[n], 0, loadstat.KindDropped)
				}
			}
			continue
		}
		wg.Go(func() {
			defer e.inFlight.Add(-1)
			e.iterate(int(i), due)
		})
	}
	wg.Wait()
}
