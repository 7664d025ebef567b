// Package scheduler enqueues ghlsync's periodic tasks from the schedules
// table, and administers that table (setup, list, set, enable, disable).
//
// Any number of schedulers may run against one database and one Redis.
// Each due slot of a schedule is enqueued exactly once among them, in this
// order:
//
//  1. Read the row. Its slot is next_run_at (see plan.due): a function of
//     the row alone, so every replica that read the same row agrees on it.
//  2. Enqueue the task with the asynq task id "sched:NAME:UNIXSECONDS" of
//     that slot. Redis keeps the id while the task is pending, running,
//     retrying, archived, and, thanks to asynq.Retention, for Retention
//     after it completed; meanwhile a second enqueue of the id fails with
//     asynq.ErrTaskIDConflict, which means "already enqueued" and is not an
//     error.
//  3. Record the run with a compare-and-set UPDATE on the name, the
//     next_run_at and total_runs that were read (store.ClaimScheduleRun).
//     One replica wins; the others' UPDATE matches no row.
//
// Enqueue first, record second, because a process can die between the two:
// dying after the enqueue leaves the row due, and the next tick (of any
// replica) enqueues the same id, gets the conflict, and records it, so
// nothing doubles; dying before the enqueue leaves the row due too, so
// nothing is lost. The other order, record then enqueue, loses the slot for
// good when the process dies in between. The price of this order is that a
// slot must be recorded within Retention of its first enqueue, or a replica
// that read the row before the record could enqueue it again: Retention is
// a day, and the window it guards is one tick (or a database outage that
// outlasts a day, after which a slot may run twice; the tasks are
// idempotent). What the protocol cannot see: asynq checks task ids per
// queue, so a schedule's queue changed between two replicas' enqueues of
// one slot doubles that slot; Redis losing acknowledged writes (a failover
// without persistence) may double one too; and a replica whose clock runs
// ahead enqueues early, though still once, so run NTP.
//
// Slots missed while every scheduler was down are enqueued once, as one run
// of the oldest missed slot, and the next slot is the first one after the
// time the row was read. Enqueue lag does not count as missing: a slot that
// falls due while a tick is busy is left for the next tick.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// Enqueuer puts a task into Redis; *asynq.Client is one. EnqueueContext must
// be safe for concurrent use and fail with (an error wrapping)
// asynq.ErrTaskIDConflict when a task of the same id and queue exists.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Defaults of Options.
const (
	// DefaultPoll bounds how long a change to the schedules table (by the
	// CLI, by SQL, by another replica) goes unnoticed.
	DefaultPoll = time.Second
	// DefaultRetention keeps a completed task's id in Redis for a day:
	// far longer than the one tick between a slot's first enqueue and its
	// record, during which another replica may enqueue it again.
	DefaultRetention = 24 * time.Hour
	// DefaultMaxRetry is low because a periodic task's next slot retries
	// it anyway; asynq's default of 25 would pile failed runs of a 10 min
	// schedule on top of each other for days.
	DefaultMaxRetry = 3
)

// Options configure a Scheduler. The zero value is ready for production.
type Options struct {
	// Clock reads the time and waits; the real clock when nil.
	Clock clock.Clock
	// Logger receives the scheduler's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Poll is the longest the loop sleeps between two reads of the
	// schedules table; DefaultPoll when 0.
	Poll time.Duration
	// Retention is how long a completed task's id stays in Redis;
	// DefaultRetention when 0.
	Retention time.Duration
	// MaxRetry is the asynq retry limit of enqueued tasks; DefaultMaxRetry
	// when 0.
	MaxRetry int
	// Metrics, when not nil, counts enqueues and measures lag.
	Metrics *Metrics
}

// Scheduler enqueues the due slots of the enabled schedules. Set Store
// and Enqueuer, and Options as needed; it does nothing until Run or Tick.
// Its methods are safe for concurrent use, but one Run per Scheduler is
// enough: more throughput comes from more replicas, which the protocol
// above keeps apart.
type Scheduler struct {
	// Store holds the schedules table; required.
	Store *store.Store
	// Enqueuer puts the slots' tasks into Redis; required.
	Enqueuer Enqueuer
	Options

	once sync.Once
	opt  Options // Options with the defaults filled in
	log  *slog.Logger
	// lastGood is the UnixNano of the end of the last tick without errors.
	lastGood atomic.Int64
	started  time.Time
}

// Validate reports a required field that is not set. Run calls it.
func (s *Scheduler) Validate() error {
	switch {
	case s.Store == nil:
		return errors.New("scheduler.Scheduler: Store is required")
	case s.Enqueuer == nil:
		return errors.New("scheduler.Scheduler: Enqueuer is required")
	}
	return nil
}

// init fills in the defaults of Options, once.
func (s *Scheduler) init() {
	s.once.Do(func() {
		opt := s.Options
		opt.Clock = clock.Or(opt.Clock)
		if opt.Logger == nil {
			opt.Logger = slog.Default()
		}
		if opt.Poll <= 0 {
			opt.Poll = DefaultPoll
		}
		if opt.Retention <= 0 {
			opt.Retention = DefaultRetention
		}
		if opt.MaxRetry <= 0 {
			opt.MaxRetry = DefaultMaxRetry
		}
		s.opt, s.log, s.started = opt, opt.Logger.With("component", "scheduler"), opt.Clock.Now()
	})
}

// TaskID is the asynq task id of a schedule's slot.
func TaskID(name string, slot time.Time) string {
	return "sched:" + name + ":" + strconv.FormatInt(slot.Unix(), 10)
}

// Run ticks until ctx is done, sleeping between ticks until the next slot is
// due but never longer than Options.Poll. It returns nil once ctx is done; a
// slot it has begun to enqueue is first enqueued and recorded.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s.init()
	s.log.Info("scheduler started", "poll", s.opt.Poll)
	defer s.log.Info("scheduler stopped")
	var lastErr string
	var lastLogged time.Time
	var wait time.Duration
	for {
		if clock.Sleep(ctx, s.opt.Clock, wait) != nil {
			return nil
		}
		var err error
		wait, err = s.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			// A database or Redis outage fails every tick; say so when
			// it starts, changes, or every half minute, not every second.
			if msg := err.Error(); msg != lastErr || clock.Since(s.opt.Clock, lastLogged) > 30*time.Second {
				s.log.Error("scheduler tick failed; retrying", "err", err, "retry_in", wait)
				lastErr, lastLogged = msg, s.opt.Clock.Now()
			}
		} else if err == nil && lastErr != "" {
			s.log.Info("scheduler recovered")
			lastErr = ""
		}
	}
}

// Tick reads the enabled schedules once, enqueues and records each due slot
// (in random order, so that replicas that woke together split the work),
// and returns how long to wait before the next tick: until the earliest
// next slot, at most Options.Poll. The error joins every failure; a failed
// slot stays due and is tried again next tick.
func (s *Scheduler) Tick(ctx context.Context) (time.Duration, error) {
	s.init()
	rows, err := s.Store.EnabledSchedules(ctx)
	if err != nil {
		s.opt.Metrics.error("load")
		return s.opt.Poll, err
	}
	// now is when the rows were read. Slots due by then are covered by
	// this tick's run; one that falls due while the tick is busy is not
	// skipped but left for the next tick.
	now := s.opt.Clock.Now()
	earliest := now.Add(s.opt.Poll)
	// errs are every failure; infra those of the database or Redis. A
	// bad row (a cron expression written by SQL, say) is reported but
	// neither makes the process unhealthy nor slows the other schedules.
	var errs []error
	infra := false
	var due []slotRun
	for i := range rows {
		row := &rows[i]
		p, err := SpecOf(row).plan()
		if err != nil {
			s.opt.Metrics.error("spec")
			errs = append(errs, fmt.Errorf("schedule %s: %w", row.Name, err))
			continue
		}
		if row.NextRunAt == nil {
			if _, err := s.Store.InitScheduleNext(ctx, row.Name, p.resume(row.LastRunAt, now)); err != nil {
				s.opt.Metrics.error("claim")
				errs, infra = append(errs, err), true
				continue
			}
			earliest = now // read it back: whoever won the race wrote it
			continue
		}
		slot := p.due(row)
		if slot.After(now) {
			earliest = minTime(earliest, slot)
			continue
		}
		r := slotRun{row: row, plan: p, slot: slot, next: p.after(slot, now), ranAt: now}
		earliest = minTime(earliest, r.next)
		due = append(due, r)
	}
	rand.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	// Enqueue every due slot, then record them all: lag is the time until
	// the task is in Redis, and a slot's record then waits on no other
	// slot's. Each slot is still enqueued before it is recorded.
	var inRedis []slotRun
	for _, r := range due {
		if ctx.Err() != nil {
			break
		}
		if _, err := s.enqueue(ctx, r); err != nil {
			errs, infra = append(errs, err), true
			continue
		}
		inRedis = append(inRedis, r)
	}
	// Not interrupted by a shutdown: what is in Redis gets recorded.
	for _, r := range inRedis {
		if err := s.record(ctx, r); err != nil {
			errs, infra = append(errs, err), true
		}
	}
	if infra {
		return s.opt.Poll, errors.Join(errs...)
	}
	s.lastGood.Store(s.opt.Clock.Now().UnixNano())
	// Measured from the end of the tick, which may have taken a while.
	return min(max(earliest.Sub(s.opt.Clock.Now()), 0), s.opt.Poll), errors.Join(errs...)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// slotRun is a due slot of a schedule as read, and what recording it
// writes: ranAt into last_run_at and next into next_run_at.
type slotRun struct {
	row         *store.Schedule
	plan        plan
	slot        time.Time
	next, ranAt time.Time
}

// opTimeout bounds one enqueue or record. Neither takes a cancellation: a
// slot that a shutdown caught between them would be left for the next
// scheduler to find in Redis and record, which is safe but slower.
const opTimeout = 10 * time.Second

// enqueue puts a slot's task into Redis, unless it is there already, and
// reports whether this call put it there.
func (s *Scheduler) enqueue(ctx context.Context, r slotRun) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	id := TaskID(r.row.Name, r.slot)
	// An empty header map of its own lets a tracing enqueuer add the trace
	// context (tracing.Enqueue).
	task := asynq.NewTaskWithHeaders(r.row.TaskType, []byte(r.row.Payload), map[string]string{})
	_, err := s.Enqueuer.EnqueueContext(ctx, task,
		asynq.TaskID(id),
		asynq.Queue(r.row.Queue),
		asynq.MaxRetry(s.opt.MaxRetry),
		asynq.Retention(s.opt.Retention),
	)
	switch {
	case err == nil:
		lag := s.opt.Clock.Now().Sub(r.slot)
		s.opt.Metrics.enqueued(r.row.Name, lag)
		s.log.Info("enqueued", "schedule", r.row.Name, "task", r.row.TaskType, "queue", r.row.Queue, "task_id", id, "slot", r.slot, "lag", lag)
		return true, nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		// Another replica enqueued this slot, or one enqueued it and
		// died before recording it: it is in Redis, so record it.
		return false, nil
	default:
		s.opt.Metrics.error("enqueue")
		return false, fmt.Errorf("schedule %s: enqueue %s: %w", r.row.Name, id, err)
	}
}

// Ran is what RunNow did.
type Ran struct {
	// TaskID and Queue name the task of the run.
	TaskID, Queue string
	// Enqueued is false when a task of that id was queued already: the
	// slot of this second was enqueued before, by a tick or a RunNow.
	Enqueued bool
	// Next is the schedule's next slot after this run.
	Next time.Time
}

// RunNow runs the schedule called name now, enabled or not, as a tick runs
// a due slot: the slot is the current second, enqueued with the same task
// id scheme, queue, payload and options, so a second RunNow within the
// second, or a tick's slot of the same second, is the same task and not a
// second one; then a run it enqueued is recorded with the tick's
// compare-and-set, so the next slot follows from it (for an interval, one
// interval from now).
// An unknown name gives an error wrapping store.ErrNotFound, a row whose
// spec cannot run one wrapping ErrBadSpec.
func (s *Scheduler) RunNow(ctx context.Context, name string) (Ran, error) {
	if err := s.Validate(); err != nil {
		return Ran{}, err
	}
	s.init()
	row, err := s.Store.Schedule(ctx, name)
	if err != nil {
		return Ran{}, err
	}
	p, err := SpecOf(row).plan()
	if err != nil {
		return Ran{}, fmt.Errorf("schedule %s: %w", name, err)
	}
	now := s.opt.Clock.Now().UTC().Truncate(time.Second)
	if row.NextRunAt == nil {
		// A row inserted by SQL: the compare-and-set needs the slot
		// every scheduler agrees on.
		if _, err := s.Store.InitScheduleNext(ctx, name, p.resume(row.LastRunAt, now)); err != nil {
			return Ran{}, err
		}
		if row, err = s.Store.Schedule(ctx, name); err != nil {
			return Ran{}, err
		}
	}
	r := slotRun{row: row, plan: p, slot: now, next: p.after(now, now), ranAt: now}
	fresh, err := s.enqueue(ctx, r)
	if err != nil {
		return Ran{}, err
	}
	// A task of this slot in Redis already is a run that was, or is being,
	// recorded by whoever enqueued it: a tick whose slot this second is,
	// or a RunNow of this second. Recording it again would count one run
	// twice.
	if fresh {
		if err := s.record(ctx, r); err != nil {
			return Ran{}, err
		}
	}
	ran := Ran{TaskID: TaskID(name, now), Queue: row.Queue, Enqueued: fresh, Next: r.next}
	// A tick or an edit may have changed the row first, and won the
	// compare-and-set: the next slot is then theirs.
	if after, err := s.Store.Schedule(ctx, name); err == nil && after.NextRunAt != nil {
		ran.Next = p.due(after)
	}
	return ran, nil
}

// record advances the schedule past a slot that is in Redis, with a
// compare-and-set that one replica wins.
func (s *Scheduler) record(ctx context.Context, r slotRun) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	won, err := s.Store.ClaimScheduleRun(ctx, r.row, r.ranAt, r.next)
	if err != nil {
		s.opt.Metrics.error("claim")
		return fmt.Errorf("schedule %s: record slot %s: %w", r.row.Name, TaskID(r.row.Name, r.slot), err)
	}
	if won {
		s.log.Debug("recorded", "schedule", r.row.Name, "slot", r.slot, "next", r.next)
	}
	return nil
}

// Check is the scheduler's part of /readyz: an error when no tick has
// succeeded for a while (the loop is stuck, or the database or Redis has
// been failing it). A bad schedule row does not count: neither waiting nor
// restarting the process would mend it.
func (s *Scheduler) Check(context.Context) error {
	s.init()
	limit := max(15*time.Second, 10*s.opt.Poll)
	last := time.Unix(0, s.lastGood.Load())
	if s.lastGood.Load() == 0 {
		last = s.started
	}
	if age := clock.Since(s.opt.Clock, last); age > limit {
		return fmt.Errorf("no successful scheduler tick for %s", age.Round(time.Second))
	}
	return nil
}
