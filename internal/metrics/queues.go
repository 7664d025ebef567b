package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueStats is one task queue as the queue's inspector (asynq's
// Inspector.GetQueueInfo) reports it.
type QueueStats struct {
	Queue string
	// Tasks in the queue by state.
	Pending, Active, Scheduled, Retry, Archived, Completed int
	// Latency is the age of the oldest pending task (0 when none is).
	Latency time.Duration
	// ProcessedToday and FailedToday count the tasks processed (failed
	// included) and failed since midnight UTC; the totals since the queue
	// began.
	ProcessedToday, FailedToday int
	ProcessedTotal, FailedTotal int
	Paused                      bool
}

// QueueStates are the values of the state label of
// ghlsync_queue_tasks, in QueueStats' order.
var QueueStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

// QueueCollector reports, at scrape time, what read says of every queue,
// but only while exporting says so: the queues are one per cluster, so of
// all the processes that could report them one does (the holder of a
// lease), and the others report nothing rather than the same numbers
// again.
type QueueCollector struct {
	read      func() ([]QueueStats, error)
	exporting func() bool

	tasks, latency, processedToday, failedToday, processedTotal, failedTotal, paused *prometheus.Desc
}

// NewQueueCollector returns a collector over read, which reads every
// queue from Redis at each scrape (bounded by the Redis client's own
// timeouts: asynq's Inspector takes no context), reporting while
// exporting returns true.
func NewQueueCollector(read func() ([]QueueStats, error), exporting func() bool) *QueueCollector {
	q := []string{"queue"}
	return &QueueCollector{
		read: read, exporting: exporting,
		tasks: prometheus.NewDesc("ghlsync_queue_tasks",
			"Tasks in the queue, by state (pending, active, scheduled, retry, archived, completed).", []string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("ghlsync_queue_latency_seconds",
			"Age of the queue's oldest pending task (0 when none is pending).", q, nil),
		processedToday: prometheus.NewDesc("ghlsync_queue_processed_today",
			"Tasks of the queue processed (failed ones included) since midnight UTC.", q, nil),
		failedToday: prometheus.NewDesc("ghlsync_queue_failed_today",
			"Tasks of the queue that failed since midnight UTC.", q, nil),
		processedTotal: prometheus.NewDesc("ghlsync_queue_processed_total",
			"Tasks of the queue processed (failed ones included), as counted in Redis.", q, nil),
		failedTotal: prometheus.NewDesc("ghlsync_queue_failed_total",
			"Tasks of the queue that failed, as counted in Redis.", q, nil),
		paused: prometheus.NewDesc("ghlsync_queue_paused",
			"1 while the queue is paused (none of its tasks run), else 0.", q, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.latency, c.processedToday, c.failedToday, c.processedTotal, c.failedTotal, c.paused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.exporting() {
		return
	}
	queues, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.tasks, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range queues {
		for i, n := range []int{s.Pending, s.Active, s.Scheduled, s.Retry, s.Archived, s.Completed} {
			gauge(c.tasks, float64(n), s.Queue, QueueStates[i])
		}
		gauge(c.latency, s.Latency.Seconds(), s.Queue)
		gauge(c.processedToday, float64(s.ProcessedToday), s.Queue)
		gauge(c.failedToday, float64(s.FailedToday), s.Queue)
		ch <- prometheus.MustNewConstMetric(c.processedTotal, prometheus.CounterValue, float64(s.ProcessedTotal), s.Queue)
		ch <- prometheus.MustNewConstMetric(c.failedTotal, prometheus.CounterValue, float64(s.FailedTotal), s.Queue)
		paused := 0.0
		if s.Paused {
			paused = 1
		}
		gauge(c.paused, paused, s.Queue)
	}
}
