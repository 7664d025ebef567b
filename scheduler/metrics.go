package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the scheduler's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	// Enqueued counts slots enqueued by this process, per schedule; the sum
	// over all replicas is the number of slots.
	Enqueued *prometheus.CounterVec
	// Lag is the time from a slot's due time to its enqueue, per schedule.
	// A slot caught up after downtime shows the whole downtime.
	Lag *prometheus.HistogramVec
	// Errors counts failures by operation: load, spec, enqueue, claim.
	Errors *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg, when reg is
// not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_scheduler_enqueued_total",
			Help: "Schedule slots enqueued by this scheduler.",
		}, []string{"schedule"}),
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ghlsync_scheduler_lag_seconds",
			Help: "Time from a schedule slot's due time to its enqueue.",
			// Milliseconds when all is well, up to the poll interval
			// when a change is picked up, hours after downtime.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
		}, []string{"schedule"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_scheduler_errors_total",
			Help: "Scheduler failures by operation (load, spec, enqueue, claim).",
		}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.Enqueued, m.Lag, m.Errors)
	}
	return m
}

func (m *Metrics) enqueued(schedule string, lag time.Duration) {
	if m == nil {
		return
	}
	m.Enqueued.WithLabelValues(schedule).Inc()
	m.Lag.WithLabelValues(schedule).Observe(lag.Seconds())
}

func (m *Metrics) error(op string) {
	if m == nil {
		return
	}
	m.Errors.WithLabelValues(op).Inc()
}
