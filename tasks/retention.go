package tasks

import "time"

// How long asynq keeps a completed task (and its result) in Redis. A result
// is kept only where someone waits for it: sync_runs and the refresh
// history in the database are the durable record of what ran, and a day of
// results for every location's scheduled tasks would cost Redis about 57 KB
// per location.
const (
	// ScheduledRetention keeps the tasks no one waits for (the scheduled
	// fan-outs' children, a sync's follow-ups) for a few minutes: enough
	// for asynqmon's completed tab and for an `enqueue wait` started
	// while they ran, and little enough that Redis holds a few minutes of
	// work, not a day of it.
	ScheduledRetention = 5 * time.Minute
	// OnDemandRetention is how long a task that someone asked for (the
	// enqueue command, the location page's buttons) is kept after the
	// time its asker waits for it, for `enqueue result` and `enqueue
	// wait` to read it later.
	OnDemandRetention = time.Hour
)

// WaitRetention is the retention of a task that someone asked for and may
// wait for timeout: the wait, then OnDemandRetention.
func WaitRetention(timeout time.Duration) time.Duration {
	return max(timeout, 0) + OnDemandRetention
}
