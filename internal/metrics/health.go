package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Health is what the alert conditions are computed from, as the health
// metrics report it: the Prometheus rules in deploy/prometheus test the
// same conditions on these.
type Health struct {
	// SyncFailures: per location and kind of sync, how many of the latest
	// runs in a row failed.
	SyncFailures []SyncFailures
	// Schedules: every enabled schedule whose interval is known.
	Schedules []ScheduleRun
	// Firing counts the firing alerts by kind.
	Firing map[string]int
}

// SyncFailures is one location's streak of failed runs of one kind.
type SyncFailures struct {
	Location, Kind string
	Failures       int
}

// ScheduleRun is how long ago a schedule last ran, and its interval.
type ScheduleRun struct {
	Name               string
	SinceRun, Interval time.Duration
}

// HealthCollector reports, at scrape time, the Health that read reads
// (from the database).
type HealthCollector struct {
	read                         func(context.Context) (*Health, error)
	failures, sinceRun, interval *prometheus.Desc
	firing                       *prometheus.Desc
}

// NewHealthCollector returns a collector over what read reads at each
// scrape.
func NewHealthCollector(read func(context.Context) (*Health, error)) *HealthCollector {
	return &HealthCollector{
		read: read,
		failures: prometheus.NewDesc("ghlsync_sync_consecutive_failures",
			"How many of the location's latest sync runs of the kind failed in a row (outcome error).", []string{"location", "kind"}, nil),
		sinceRun: prometheus.NewDesc("ghlsync_schedule_last_run_age_seconds",
			"Seconds since the enabled schedule was last enqueued (never: since it was set).", []string{"schedule"}, nil),
		interval: prometheus.NewDesc("ghlsync_schedule_interval_seconds",
			"The enabled schedule's interval (a cron's: between its last and its next slot).", []string{"schedule"}, nil),
		firing: prometheus.NewDesc("ghlsync_alerts_firing",
			"Alerts firing now, by kind (location_problem, token_expiring, sync_failing, schedule_late).", []string{"kind"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *HealthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.failures
	ch <- c.sinceRun
	ch <- c.interval
	ch <- c.firing
}

// Collect implements prometheus.Collector.
func (c *HealthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.failures, err)
		return
	}
	for _, f := range h.SyncFailures {
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.GaugeValue, float64(f.Failures), f.Location, f.Kind)
	}
	for _, s := range h.Schedules {
		ch <- prometheus.MustNewConstMetric(c.sinceRun, prometheus.GaugeValue, s.SinceRun.Seconds(), s.Name)
		ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, s.Interval.Seconds(), s.Name)
	}
	for kind, n := range h.Firing {
		ch <- prometheus.MustNewConstMetric(c.firing, prometheus.GaugeValue, float64(n), kind)
	}
}
