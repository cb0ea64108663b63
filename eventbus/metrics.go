package eventbus

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the consume loop, shared by every consumer of a process (one
// registry may host all five services in `runbook serve`).
type Metrics struct {
	Handled      *prometheus.CounterVec
	Duration     *prometheus.HistogramVec
	DeadLettered *prometheus.CounterVec
	InFlight     *prometheus.GaugeVec
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
			Help: "Poison messages dead-lettered, by consumer.",
		}, []string{"consumer"})),
		InFlight: Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runbook_handlers_in_flight",
			Help: "Handlers running now, by consumer.",
		}, []string{"consumer"})),
	}
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
