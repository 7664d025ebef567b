// Package metrics defines ghlsync's Prometheus metrics.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// Metrics holds the collectors a process updates.
type Metrics struct {
	Registry    *prometheus.Registry
	Refreshes   *prometheus.CounterVec
	GHLRequests *prometheus.CounterVec
	GHLLatency  *prometheus.HistogramVec
	SyncRecords *prometheus.CounterVec
	RateLimited *prometheus.CounterVec
	// RefreshFailures counts failed refreshes by reason; SyncRuns counts
	// ended sync runs by kind and outcome.
	RefreshFailures *prometheus.CounterVec
	SyncRuns        *prometheus.CounterVec
	// AlertEvaluations counts this process's evaluations of the alert
	// conditions by outcome (ok, error); AlertDeliveries its attempts to
	// deliver an alert, by receiver type (webhook, slack) and outcome
	// (sent, error, gave_up).
	AlertEvaluations *prometheus.CounterVec
	AlertDeliveries  *prometheus.CounterVec
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors, which every ghlsync process exports. A process that updates
// none of Metrics (the scheduler) registers its own collectors on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New registers ghlsync's metrics on a NewRegistry.
func New() *Metrics {
	m := &Metrics{
		Registry: NewRegistry(),
		Refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_token_refreshes_total",
			Help: "Token refresh requests handled, by outcome (refreshed, fresh, needs_reauth, inactive).",
		}, []string{"outcome"}),
		GHLRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_ghl_requests_total",
			Help: "Calls to the GHL API by endpoint and HTTP status (0: no answer).",
		}, []string{"endpoint", "status"}),
		GHLLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ghlsync_ghl_request_duration_seconds",
			Help:    "Duration of GHL API calls by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 8),
		}, []string{"endpoint"}),
		SyncRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_sync_records_total",
			Help: "Records handled by syncs, by kind (patient, appointment) and outcome (created, updated, unchanged, failed).",
		}, []string{"kind", "outcome"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_ghl_rate_limited_total",
			Help: "HTTP 429 answers from GHL, by endpoint.",
		}, []string{"endpoint"}),
		RefreshFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_token_refresh_failures_total",
			Help: "Failed token refreshes, by reason (key_missing, token_unreadable, needs_reauth, inactive, unknown_location, rate_limited, ghl_unavailable, ghl_refused, cancelled, other).",
		}, []string{"reason"}),
		SyncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_sync_runs_total",
			Help: "Ended sync runs, by kind (patients, appointments) and outcome (completed, continued, needs_reauth, inactive, uninstalled, rate_limited, error).",
		}, []string{"kind", "outcome"}),
		AlertEvaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_alert_evaluations_total",
			Help: "Evaluations of the alert conditions run by this process, by outcome (ok, error).",
		}, []string{"outcome"}),
		AlertDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ghlsync_alert_deliveries_total",
			Help: "Attempts to deliver an alert, by receiver type (webhook, slack) and outcome (sent, error, gave_up).",
		}, []string{"receiver_type", "outcome"}),
	}
	m.Registry.MustRegister(m.Refreshes, m.GHLRequests, m.GHLLatency, m.SyncRecords, m.RateLimited, m.RefreshFailures, m.SyncRuns,
		m.AlertEvaluations, m.AlertDeliveries)
	return m
}

// ObserveGHL records one GHL call; it fits ghl.Config.OnResponse.
func (m *Metrics) ObserveGHL(endpoint string, status int, elapsed time.Duration) {
	m.GHLRequests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.GHLLatency.WithLabelValues(endpoint).Observe(elapsed.Seconds())
	if status == 429 {
		m.RateLimited.WithLabelValues(endpoint).Inc()
	}
}

// TokenState is one location's token as the expiry metrics report it.
type TokenState struct {
	Location, Status string
	ExpiresAt        time.Time
}

// ExpiryCollector reports, at scrape time, the seconds until each location's
// token expires and each location's status, as list reads them.
type ExpiryCollector struct {
	list   func(context.Context) ([]TokenState, error)
	clock  clock.Clock
	expiry *prometheus.Desc
	status *prometheus.Desc
}

// NewExpiryCollector returns a collector over what list reads (from the
// database) at each scrape.
func NewExpiryCollector(list func(context.Context) ([]TokenState, error), clk clock.Clock) *ExpiryCollector {
	return &ExpiryCollector{
		list: list, clock: clk,
		expiry: prometheus.NewDesc("ghlsync_token_expires_in_seconds",
			"Seconds until the location's access token expires (negative: expired).", []string{"location"}, nil),
		status: prometheus.NewDesc("ghlsync_location_status",
			"1 for the location's current status.", []string{"location", "status"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ExpiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.status
}

// Collect implements prometheus.Collector.
func (c *ExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	toks, err := c.list(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.expiry, err)
		return
	}
	now := clock.Or(c.clock).Now()
	for _, t := range toks {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, t.ExpiresAt.Sub(now).Seconds(), t.Location)
		ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, 1, t.Location, t.Status)
	}
}
