package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/tasks"
)

// keyQueueMetrics is the lease of the one process, among all schedulers,
// that reports the queue metrics. The queues are one per cluster: were
// every scheduler to report them, a sum over instances (what an
// autoscaler or an alert adds up) would count each task once per
// scheduler.
const keyQueueMetrics = "ghlsync:metrics:queues"

// queueMetricsTTL is the lease's TTL: a scheduler that dies without
// releasing it is followed by another within this (and a second), so a
// scrape or two sees no queue metrics at all, never two copies.
const queueMetricsTTL = 10 * time.Second

// exportQueueMetrics registers the queue metrics (metrics.QueueCollector
// over asynq's Inspector on rc) on reg, and keeps trying to hold the lease
// that makes this process the one that reports them until ctx is done.
// wait returns once the lease is released.
func exportQueueMetrics(ctx context.Context, rc redis.UniversalClient, reg prometheus.Registerer, log *slog.Logger) (wait func()) {
	h := &lease.Holder{Redis: rc, Key: keyQueueMetrics, TTL: queueMetricsTTL}
	insp := asynq.NewInspectorFromRedisClient(rc)
	reg.MustRegister(metrics.NewQueueCollector(func() ([]metrics.QueueStats, error) { return queueStats(insp) }, h.Held))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Run(ctx); err != nil {
			log.Error("queue metrics", "err", err)
		}
	}()
	return func() { <-done }
}

// queueStats reads every queue asynq knows and ghlsync's own, which are
// reported (as empty) before any task was put in them, so that their
// series exist from the start.
func queueStats(insp *asynq.Inspector) ([]metrics.QueueStats, error) {
	known, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	names := slices.Clone(known)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if !slices.Contains(names, q) {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	out := make([]metrics.QueueStats, 0, len(names))
	for _, q := range names {
		if !slices.Contains(known, q) {
			out = append(out, metrics.QueueStats{Queue: q})
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		out = append(out, metrics.QueueStats{
			Queue:   q,
			Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
			Retry: info.Retry, Archived: info.Archived, Completed: info.Completed,
			Latency:        info.Latency,
			ProcessedToday: info.Processed, FailedToday: info.Failed,
			ProcessedTotal: info.ProcessedTotal, FailedTotal: info.FailedTotal,
			Paused: info.Paused,
		})
	}
	return out, nil
}
