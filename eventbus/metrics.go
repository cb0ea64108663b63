package eventbus

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kis-core/runbook/eventbus/buildinfo"
)

// NewRegistry is the registry a runbook process serves on /metrics (every
// service binary through svcmain, and `runbook serve`): the Go runtime and
// process collectors and runbook_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	RegisterBuildInfo(reg)
	return reg
}

// RegisterBuildInfo registers runbook_build_info{version,commit,goversion},
// always 1, from buildinfo.Get: which build a process runs (join it to any
// other series by instance). Registering it twice on one registry is a no-op.
func RegisterBuildInfo(reg prometheus.Registerer) {
	in := buildinfo.Get()
	Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "runbook_build_info",
		Help:        "Always 1; its labels name the build of runbook this process runs (version, commit, goversion).",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.Commit, "goversion": in.GoVersion},
	}, func() float64 { return 1 }))
}

// Metrics of the consume loop, shared by every consumer of a process (one
// registry may host all five services in `runbook serve`).
type Metrics struct {
	Handled      *prometheus.CounterVec
	Duration     *prometheus.HistogramVec
	DeadLettered *prometheus.CounterVec
	InFlight     *prometheus.GaugeVec
	// Lag reports each running consumer's backlog at scrape time.
	Lag *ConsumerLag
}

// NewMetrics registers the consume-loop metrics on reg, or returns the ones
// already registered there by another service of the same process.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Metrics{
		Handled: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_events_handled_total",
			Help: "Events handled by consumer, event type and outcome (ack, retry, dead_letter, shutdown).",
		}, []string{"consumer", "type", "outcome"})),
		Duration: Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runbook_handler_duration_seconds",
			Help:    "Time a handler took for one event, by consumer and event type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}, []string{"consumer", "type"})),
		DeadLettered: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_events_dead_lettered_total",
			Help: "Poison messages dead-lettered, by consumer: each is an event a run needed and did not get. Alert on any increase (GET /api/v1/dead-letters and the dashboard list them).",
		}, []string{"consumer"})),
		InFlight: Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runbook_handlers_in_flight",
			Help: "Handlers running now, by consumer.",
		}, []string{"consumer"})),
		Lag: Register(reg, NewConsumerLag()),
	}
}

// ConsumerLag is a collector of the backlog of the durable consumers this
// process runs, read from JetStream (the consumer's info) at every scrape:
//
//	runbook_consumer_pending_messages{consumer}      stored, matching the consumer's filter, not yet delivered
//	runbook_consumer_ack_pending_messages{consumer}  delivered and not yet acknowledged (being handled, or waiting for redelivery)
//	runbook_consumer_info_errors_total{consumer}     scrapes whose info request failed (the two gauges are then left out)
//
// Replicas of a service share its durable consumer, so each reports the
// same backlog: aggregate with max by (consumer).
type ConsumerLag struct {
	pending, ackPending *prometheus.Desc
	errors              *prometheus.CounterVec
	// Timeout bounds one consumer's info request (default 2s).
	Timeout time.Duration

	mu        sync.Mutex
	consumers map[string]trackedConsumer
}

type trackedConsumer struct {
	cons jetstream.Consumer
	log  *slog.Logger
}

// NewConsumerLag makes the collector; Router.Run adds its consumer to it.
func NewConsumerLag() *ConsumerLag {
	return &ConsumerLag{
		pending: prometheus.NewDesc("runbook_consumer_pending_messages",
			"Messages of the audit stream matching the durable consumer's filter not yet delivered to it (its backlog), read from JetStream at scrape time.",
			[]string{"consumer"}, nil),
		ackPending: prometheus.NewDesc("runbook_consumer_ack_pending_messages",
			"Messages delivered to the durable consumer and not yet acknowledged (being handled or waiting for redelivery), read from JetStream at scrape time.",
			[]string{"consumer"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_consumer_info_errors_total",
			Help: "Scrapes that could not read a durable consumer's info from JetStream (its lag gauges are left out of that scrape).",
		}, []string{"consumer"}),
		Timeout:   2 * time.Second,
		consumers: map[string]trackedConsumer{},
	}
}

// Track reports durable's backlog from cons until Untrack; a failed info
// request is logged on log and counted.
func (l *ConsumerLag) Track(durable string, cons jetstream.Consumer, log *slog.Logger) {
	if l == nil {
		return // Metrics built without NewMetrics
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.consumers[durable] = trackedConsumer{cons: cons, log: log}
	l.errors.WithLabelValues(durable) // present at 0, so increase() sees the first error
}

// Untrack stops reporting durable's backlog from cons (its router
// stopped); another router of the same durable in this process that
// tracked it since keeps it.
func (l *ConsumerLag) Untrack(durable string, cons jetstream.Consumer) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.consumers[durable]; ok && c.cons == cons {
		delete(l.consumers, durable)
	}
}

// Describe implements prometheus.Collector.
func (l *ConsumerLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.pending
	ch <- l.ackPending
	l.errors.Describe(ch)
}

// Collect implements prometheus.Collector: one info request per consumer.
func (l *ConsumerLag) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	consumers := maps.Clone(l.consumers)
	l.mu.Unlock()
	for durable, c := range consumers {
		ctx, cancel := context.WithTimeout(context.Background(), l.Timeout)
		info, err := c.cons.Info(ctx)
		cancel()
		if err != nil {
			l.errors.WithLabelValues(durable).Inc()
			c.log.Warn("consumer lag: reading the consumer's info failed; its lag is left out of this scrape", "err", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(l.pending, prometheus.GaugeValue, float64(info.NumPending), durable)
		ch <- prometheus.MustNewConstMetric(l.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), durable)
	}
	l.errors.Collect(ch)
}

// Register registers c on reg; when an identical collector is already
// registered it returns that one instead, so several services in one process
// can share a registry.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
