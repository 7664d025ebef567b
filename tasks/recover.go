package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// SyncRuns reads the run log for SyncRecovery; *store.Store is one.
type SyncRuns interface {
	LatestSyncRuns(ctx context.Context, since time.Time) ([]store.SyncRun, error)
	SyncRunsOfTasks(ctx context.Context, taskIDs []string) (map[string]bool, error)
	SyncRunContinuedBy(ctx context.Context, loc, kind, taskID string) (*store.SyncRun, error)
	Credential(ctx context.Context, loc string) (*store.Credential, error)
}

// SyncRecovery takes up sync passes whose task is gone from the queue.
// asynq's queue in Redis is the only copy of a pass's next task, so a Redis
// that loses its data (restarted without persistence, failed over to an
// empty replica) would leave a pass stalled until the next scheduled one.
// The run log in the database says which passes were interrupted: a
// location's latest run that
//
//   - is still running (store.SyncRunning) while nobody holds the location's sync lock (its
//     worker died), or
//   - ended "error" or "rate_limited", to be retried by asynq (a run whose
//     lock went with Redis ends so, and asynq cannot retry a task Redis
//     lost), or
//   - ended "continued" but its follow-up never started,
//
// and SyncRecovery enqueues that task again under the same task id: asynq
// refuses the id while the task is still in the queue (or kept there after
// it ran), so a task that is merely waiting is never doubled.
type SyncRecovery struct {
	Runs     SyncRuns
	Enqueuer Enqueuer
	Locks    *syncer.Locks
	// Redis holds the lease under which one worker at a time looks.
	Redis redis.UniversalClient
	// Every is how often to look; 30s.
	Every time.Duration
	// Lookback bounds how old a run may be to be taken up; 24h. An older
	// pass has been overtaken by the schedules.
	Lookback time.Duration
	Log      *slog.Logger
	Clock    clock.Clock
}

const keySyncRecovery = "ghlsync:sync:recovery"

// Validate reports a required field that is not set. Call it at start.
func (s *SyncRecovery) Validate() error {
	for name, missing := range map[string]bool{"Runs": s.Runs == nil, "Enqueuer": s.Enqueuer == nil,
		"Locks": s.Locks == nil || s.Locks.Redis == nil, "Redis": s.Redis == nil} {
		if missing {
			return fmt.Errorf("tasks.SyncRecovery: %s is required", name)
		}
	}
	return nil
}

// Run looks at once and then every Every until ctx is done.
func (s *SyncRecovery) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = 30 * time.Second
	}
	t := clock.Or(s.Clock).NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.RecoverOnce(ctx); err != nil && ctx.Err() == nil {
			logOr(s.Log).Warn("looking for interrupted sync passes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Recovered is a pass SyncRecovery enqueued again.
type Recovered struct {
	Kind, LocationID, TaskID, After string
}

// RecoverOnce looks once, under the lease (another worker looking makes it
// return nothing), and returns the passes it enqueued again.
func (s *SyncRecovery) RecoverOnce(ctx context.Context) ([]Recovered, error) {
	lk, err := lease.TryAcquire(ctx, s.Redis, keySyncRecovery, lease.Options{TTL: time.Minute, Clock: s.Clock}, nil)
	if err != nil || lk == nil {
		return nil, err
	}
	defer lk.Release(context.WithoutCancel(ctx), nil)
	ctx = lk.Context()

	lookback := s.Lookback
	if lookback <= 0 {
		lookback = 24 * time.Hour
	}
	runs, err := s.Runs.LatestSyncRuns(ctx, clock.Or(s.Clock).Now().Add(-lookback))
	if err != nil {
		return nil, err
	}
	var followUps []string
	for _, r := range runs {
		if r.Outcome == syncer.OutcomeContinued && r.ContinuedBy != "" {
			followUps = append(followUps, r.ContinuedBy)
		}
	}
	started, err := s.Runs.SyncRunsOfTasks(ctx, followUps)
	if err != nil {
		return nil, err
	}
	var out []Recovered
	var errs []error
	for _, r := range runs {
		var taskID, after string
		var runsBefore *store.SyncRun // the last run the pass had before the task
		switch {
		case r.TaskID != "" && (r.Outcome == store.SyncRunning || r.Outcome == syncer.OutcomeError || r.Outcome == syncer.OutcomeRateLimited):
			if r.Outcome == store.SyncRunning {
				held, err := s.Locks.Held(ctx, r.LocationID)
				if err != nil {
					return out, err
				}
				if held {
					continue // it runs, or another run of the location does
				}
			}
			taskID, after = r.TaskID, r.After
			if prev, err := s.Runs.SyncRunContinuedBy(ctx, r.LocationID, r.Kind, r.TaskID); err == nil {
				runsBefore = prev
			} else if !errors.Is(err, store.ErrNotFound) {
				return out, err
			}
		case r.Outcome == syncer.OutcomeContinued && r.ContinuedBy != "" && !started[r.ContinuedBy]:
			taskID, after, runsBefore = r.ContinuedBy, r.Cursor, &r
		default:
			continue
		}
		rec, err := s.enqueue(ctx, r, taskID, after, runsBefore)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec != nil {
			out = append(out, *rec)
		}
	}
	return out, errors.Join(errs...)
}

// enqueue enqueues the task taskID of r's pass, starting after after, with
// the pass so far summed from the runs up to last (nil: none). It returns
// nil when the task is still in the queue, or the location is no longer
// synced.
func (s *SyncRecovery) enqueue(ctx context.Context, r store.SyncRun, taskID, after string, last *store.SyncRun) (*Recovered, error) {
	taskType, ok := syncTaskTypes[r.Kind]
	if !ok {
		return nil, nil
	}
	c, err := s.Runs.Credential(ctx, r.LocationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if syncer.NotSyncable(c) != "" {
		return nil, nil
	}
	p := SyncPayload{LocationID: r.LocationID, After: after, Batch: 1}
	if last != nil {
		pass, err := s.passUpTo(ctx, *last)
		if err != nil {
			return nil, err
		}
		p.Pass, p.Batch = pass, pass.Batch+1
	}
	task, err := newSyncTask(taskType, p)
	if err != nil {
		return nil, err
	}
	_, err = s.Enqueuer.EnqueueContext(ctx, task, asynq.TaskID(taskID))
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return nil, nil // still queued, running, or kept after it ran
	case err != nil:
		return nil, fmt.Errorf("re-enqueue sync %s of %s: %w", taskID, r.LocationID, err)
	}
	logOr(s.Log).Warn("took up an interrupted sync pass whose task was gone from the queue (did Redis lose its data?)",
		"kind", r.Kind, "location", r.LocationID, "task", taskID, "after", after, "batch", p.Batch)
	return &Recovered{Kind: r.Kind, LocationID: r.LocationID, TaskID: taskID, After: after}, nil
}

// passUpTo rebuilds the result of a pass from its runs up to last, walking
// back the hand-overs. The failed records of those runs are not in the run
// log: only their count is carried on.
func (s *SyncRecovery) passUpTo(ctx context.Context, last store.SyncRun) (*syncer.Result, error) {
	res := &syncer.Result{Kind: last.Kind, Location: last.LocationID, Outcome: syncer.OutcomeContinued, Cursor: last.Cursor}
	// A pass has at most a few hundred runs; the bound guards against a
	// run log edited into a loop.
	for r, n := &last, 0; r != nil && n < 100000; n++ {
		res.Batch++
		res.Scanned += r.Scanned
		res.Created += r.Created
		res.Updated += r.Updated
		res.Unchanged += r.Unchanged
		res.FailedCount += r.Failed
		res.StartedAt = r.StartedAt.UTC()
		if r.TaskID == "" {
			break
		}
		prev, err := s.Runs.SyncRunContinuedBy(ctx, r.LocationID, r.Kind, r.TaskID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		r = prev
	}
	res.Failed = []syncer.FailedRecord{}
	return res, nil
}
