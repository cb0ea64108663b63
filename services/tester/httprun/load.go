package httprun

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
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
)

// LoadConfig is one closed-model load test: VUs virtual users, each sending
// Requests in order and then sleeping ThinkTime, until Duration has passed.
type LoadConfig struct {
	VUs       int
	Duration  time.Duration
	ThinkTime time.Duration
	Requests  []*Prepared
	// RequestTimeout bounds one request; a request that times out is an error.
	RequestTimeout time.Duration
	// GracefulStop is how long requests in flight at the end of Duration may
	// finish; after it they are cancelled and not counted.
	GracefulStop time.Duration
	// ProgressEvery is how often OnProgress is called (at least 1s).
	ProgressEvery time.Duration
	// Client sends the requests; nil: NewLoadClient(VUs).
	Client *http.Client
}

func (c *LoadConfig) setDefaults() {
	if c.VUs <= 0 {
		c.VUs = DefaultVUs
	}
	if c.Duration <= 0 {
		c.Duration = DefaultLoadDuration
	}
	if c.ThinkTime < 0 {
		c.ThinkTime = 0
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.GracefulStop <= 0 {
		c.GracefulStop = DefaultGracefulStop
	}
	if c.ProgressEvery < time.Second {
		c.ProgressEvery = DefaultProgressEvery
	}
}

// NewLoadClient returns the one client a load test shares among its virtual
// users: keep-alive connections, enough idle ones per host for every VU.
func NewLoadClient(vus int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no global limit
	t.MaxIdleConnsPerHost = max(vus, 2)
	return &http.Client{Transport: t}
}

// Progress is the state of a running load test.
type Progress struct {
	Elapsed time.Duration
	// Second is the elapsed time in whole seconds, strictly increasing from
	// one call to the next: a stable id for the progress point.
	Second int64
	loadstat.Snapshot
}

// LoadObserver receives what a load test does as it goes. Both callbacks may
// be nil; OnRequest is called concurrently by the VUs, OnProgress from one
// goroutine and may block (it does not hold up the VUs). OnProgress is called
// every ProgressEvery and once more when the test ends.
type LoadObserver struct {
	OnRequest  func(r *Prepared, d time.Duration, failed bool)
	OnProgress func(Progress)
}

// LoadReport is the outcome of a finished load test.
type LoadReport struct {
	loadstat.Snapshot
	VUs        int
	Elapsed    time.Duration
	RPS        float64
	Iterations int64
	// Interrupted counts requests cancelled at the graceful stop (not in
	// Requests).
	Interrupted int64
}

// RunLoad runs the load test and records every request in rec. It returns an
// error when ctx ends before the test does (context.Cause tells why).
func RunLoad(ctx context.Context, cfg LoadConfig, rec *loadstat.Recorder, obs LoadObserver) (LoadReport, error) {
	cfg.setDefaults()
	if len(cfg.Requests) == 0 {
		return LoadReport{}, errors.New("load test has no requests")
	}
	client := cfg.Client
	if client == nil {
		client = NewLoadClient(cfg.VUs)
		defer client.CloseIdleConnections()
	}
	start := time.Now()
	// stop ends the starting of new requests; hard cancels those in flight.
	stop, cancelStop := context.WithTimeout(ctx, cfg.Duration)
	defer cancelStop()
	hard, cancelHard := context.WithTimeout(ctx, cfg.Duration+cfg.GracefulStop)
	defer cancelHard()

	var iterations, interrupted atomic.Int64
	vu := func() {
		think := time.NewTimer(0)
		defer think.Stop()
		for stop.Err() == nil {
			for _, p := range cfg.Requests {
				if stop.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(hard, cfg.RequestTimeout)
				resp, err := Send(rctx, client, p, 0, false)
				cancel()
				if hard.Err() != nil {
					interrupted.Add(1)
					return
				}
				failed := err != nil || resp.Status < 200 || resp.Status > 299
				rec.Record(resp.Duration, failed)
				if obs.OnRequest != nil {
					obs.OnRequest(p, resp.Duration, failed)
				}
			}
			iterations.Add(1)
			if cfg.ThinkTime > 0 {
				think.Reset(cfg.ThinkTime)
				select {
				case <-stop.Done():
					return
				case <-think.C:
				}
			}
		}
	}

	var wg sync.WaitGroup
	for range cfg.VUs {
		wg.Go(vu)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var last int64
	progress := func() {
		if obs.OnProgress == nil {
			return
		}
		el := time.Since(start)
		sec := max(int64(math.Round(el.Seconds())), last+1)
		last = sec
		obs.OnProgress(Progress{Elapsed: el, Second: sec, Snapshot: rec.Snapshot()})
	}
	ticker := time.NewTicker(cfg.ProgressEvery)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ticker.C:
			progress()
		}
	}
	if ctx.Err() != nil {
		return LoadReport{}, fmt.Errorf("load test interrupted: %w", context.Cause(ctx))
	}
	progress() // the last point: every load test has at least one
	el := time.Since(start)
	rep := LoadReport{Snapshot: rec.Snapshot(), VUs: cfg.VUs, Elapsed: el, Iterations: iterations.Load(), Interrupted: interrupted.Load()}
	if s := el.Seconds(); s > 0 {
		rep.RPS = float64(rep.Requests) / s
	}
	return rep, nil
}
