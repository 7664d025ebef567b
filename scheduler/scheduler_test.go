package scheduler_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// bundle is one test's database and Redis, shared by its replicas the way
// separate processes share them.
type bundle struct {
	st    *store.Store
	dbURL string
	redis asynq.RedisConnOpt
	insp  *asynq.Inspector
	log   *enqueueLog
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupOn(t, testenv.RedisURL)
}

// setupOn is setup on the Redis that redisURL gives the test.
func setupOn(t *testing.T, redisURL func(testing.TB) string) *bundle {
	t.Helper()
	st, dbURL := storetest.Open(t, "")
	redisOpt, err := redisconn.Parse(redisURL(t))
	must(t, err)
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { insp.Close() })
	return &bundle{st: st, dbURL: dbURL, redis: redisOpt, insp: insp, log: &enqueueLog{}}
}

// replica builds a scheduler with a database connection and a Redis client
// of its own, as another process would have, enqueueing through the
// bundle's log. Zero options are filled in for a quiet test.
func (b *bundle) replica(t *testing.T, opt scheduler.Options) *scheduler.Scheduler {
	t.Helper()
	st, err := store.Open(context.Background(), b.dbURL, nil)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { client.Close() })
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &scheduler.Scheduler{Store: st, Enqueuer: b.log.wrap(client), Options: opt}
}

// start runs s until the returned stop is called (or the test ends).
func start(t *testing.T, s *scheduler.Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			must(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

func (b *bundle) create(t *testing.T, row store.Schedule) {
	t.Helper()
	if row.TaskType == "" {
		row.TaskType = tasks.TypeTokenRefreshDue
	}
	if row.Queue == "" {
		row.Queue = tasks.QueueDefault
	}
	row.Enabled = true
	created, err := b.st.CreateSchedule(context.Background(), row)
	must(t, err)
	if !created {
		t.Fatalf("schedule %s exists already", row.Name)
	}
}

func (b *bundle) row(t *testing.T, name string) *store.Schedule {
	t.Helper()
	row, err := b.st.Schedule(context.Background(), name)
	must(t, err)
	return row
}

// pending lists the ids of the tasks waiting in queue.
func (b *bundle) pending(t *testing.T, queue string) []string {
	t.Helper()
	var ids []string
	for page := 1; ; page++ {
		infos, err := b.insp.ListPendingTasks(queue, asynq.PageSize(500), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		must(t, err)
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
		if len(infos) < 500 {
			slices.Sort(ids)
			return ids
		}
	}
}

// enqueueLog records every successful enqueue of every replica.
type enqueueLog struct {
	mu      sync.Mutex
	entries []enqueued
	// clock stamps the entries; the real one when nil.
	clock clock.Clock
}

type enqueued struct {
	id   string
	slot time.Time
	at   time.Time
}

func (l *enqueueLog) wrap(e scheduler.Enqueuer) scheduler.Enqueuer {
	return enqueuerFunc(func(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
		info, err := e.EnqueueContext(ctx, task, opts...)
		if err == nil {
			at := clock.Or(l.clock).Now()
			l.mu.Lock()
			l.entries = append(l.entries, enqueued{id: info.ID, slot: slotOf(info.ID), at: at})
			l.mu.Unlock()
		}
		return info, err
	})
}

func (l *enqueueLog) all() []enqueued {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

func (l *enqueueLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

func (l *enqueueLog) ids() []string {
	var ids []string
	for _, e := range l.all() {
		ids = append(ids, e.id)
	}
	slices.Sort(ids)
	return ids
}

type enqueuerFunc func(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)

func (f enqueuerFunc) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	return f(ctx, task, opts...)
}

func slotOf(id string) time.Time {
	n, err := strconv.ParseInt(id[strings.LastIndexByte(id, ':')+1:], 10, 64)
	if err != nil {
		panic("not a schedule task id: " + id)
	}
	return time.Unix(n, 0).UTC()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func diff(t testing.TB, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
}

func ptr[T any](v T) *T { return &v }

// requireEverySlotOnce checks that the slots form an unbroken grid of step
// between the first and the last, each enqueued once.
func requireEverySlotOnce(t *testing.T, entries []enqueued, step time.Duration) {
	t.Helper()
	slices.SortFunc(entries, func(a, b enqueued) int { return a.slot.Compare(b.slot) })
	for i := 1; i < len(entries); i++ {
		if d := entries[i].slot.Sub(entries[i-1].slot); d != step {
			t.Fatalf("slots %s and %s are %s apart, want %s (a slot doubled or missed)",
				entries[i-1].id, entries[i].id, d, step)
		}
	}
}

// Test 1: three replicas, one Redis, one database, a 1 s schedule, 20 s:
// every slot is enqueued exactly once. The 20 s pass on a fake clock that
// moves to the next wake-up whenever all three replicas sleep.
func TestReplicasEnqueueEachSlotOnce(t *testing.T) {
	t.Parallel()
	testReplicasEnqueueEachSlotOnce(t, testenv.RedisURL)
}

func testReplicasEnqueueEachSlotOnce(t *testing.T, redisURL func(testing.TB) string) {
	b := setupOn(t, redisURL)
	fake := clock.NewFake(time.Now())
	b.log.clock = fake
	b.create(t, store.Schedule{Name: "tick", EverySeconds: 1, NextRunAt: ptr(fake.Now())})
	var metrics []*scheduler.Metrics
	var stops []func()
	for range 3 {
		m := scheduler.NewMetrics(nil)
		metrics = append(metrics, m)
		stops = append(stops, start(t, b.replica(t, scheduler.Options{Metrics: m, Clock: fake})))
	}

	// 21 slots span 20 s: the scenario is about elapsed time.
	for b.log.len() < 21 {
		fake.WaitForWaiters(3, t.Context().Done())
		fake.AdvanceToNext()
	}
	// Each replica finishes the slot in hand when stopped, so afterwards
	// the row has recorded exactly the slots that were enqueued.
	for _, stop := range stops {
		stop()
	}

	entries := b.log.all()
	t.Logf("%d slots enqueued in %s", len(entries), entries[len(entries)-1].at.Sub(entries[0].at).Round(time.Millisecond))
	requireEverySlotOnce(t, entries, time.Second)
	diff(t, "tasks in Redis", b.log.ids(), b.pending(t, tasks.QueueDefault))
	diff(t, "total_runs", int64(len(entries)), b.row(t, "tick").TotalRuns)
	var counted float64
	for _, m := range metrics {
		counted += counterValue(m.Enqueued.WithLabelValues("tick"))
	}
	diff(t, "ghlsync_scheduler_enqueued_total summed over the replicas", float64(len(entries)), counted)
}

// Test 2: a 2 s schedule whose scheduler is restarted every 1.5 s keeps
// firing every 2 s: the next slot comes from the database, not from the
// process's start (a countdown from each start would never fire).
func TestRestartsKeepCadence(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := clock.NewFake(time.Now())
	b.log.clock = fake
	b.create(t, store.Schedule{Name: "two", EverySeconds: 2, NextRunAt: ptr(fake.Now())})

	// The restarts are the scenario: each scheduler lives 1.5 s (of a fake
	// clock that moves in 100 ms steps while it sleeps), and the next one
	// starts at once.
	for restarts := 0; b.log.len() < 6; restarts++ {
		if restarts == 20 {
			t.Fatalf("%d slots after 20 restarts, want 6", b.log.len())
		}
		stop := start(t, b.replica(t, scheduler.Options{Clock: fake}))
		for range 15 {
			fake.WaitForWaiters(1, t.Context().Done())
			fake.Advance(100 * time.Millisecond)
		}
		stop()
	}

	entries := b.log.all()
	requireEverySlotOnce(t, entries, 2*time.Second)
	for _, e := range entries[1:] {
		// Each slot is enqueued when due, not a restart later.
		if lag := e.at.Sub(e.slot); lag > time.Second {
			t.Errorf("%s enqueued %s late", e.id, lag)
		}
	}
}

// Test 3: a schedule last run 25 h ago with a 20 h interval is enqueued
// once at scheduler start, however many replicas start; so is one that
// missed 24 slots of 1 h. The next slot is the first one after now.
func TestMissedSlotEnqueuedOnceAtStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		every time.Duration
	}{
		{"one slot missed", 20 * time.Hour},
		{"24 slots missed", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			now := time.Now().UTC().Truncate(time.Second)
			last := now.Add(-25 * time.Hour)
			firstMissed := last.Add(tc.every)
			b.create(t, store.Schedule{Name: "daily", EverySeconds: int64(tc.every / time.Second),
				LastRunAt: &last, NextRunAt: &firstMissed, TotalRuns: 7})

			// Three replicas start at once, and each ticks twice.
			var replicas []*scheduler.Scheduler
			for range 3 {
				replicas = append(replicas, b.replica(t, scheduler.Options{}))
			}
			var wg sync.WaitGroup
			for _, r := range replicas {
				wg.Go(func() {
					for range 2 {
						_, err := r.Tick(context.Background())
						must(t, err)
					}
				})
			}
			wg.Wait()

			want := []string{scheduler.TaskID("daily", firstMissed)}
			diff(t, "enqueued", want, b.log.ids())
			diff(t, "tasks in Redis", want, b.pending(t, tasks.QueueDefault))
			row := b.row(t, "daily")
			diff(t, "total_runs", int64(8), row.TotalRuns)
			if next := row.NextRunAt.UTC(); !next.After(now) || next.Sub(now) > tc.every || next.Sub(firstMissed)%tc.every != 0 {
				t.Errorf("next run %s: want the first slot on the grid of %s after %s", next, firstMissed, now)
			}
		})
	}
}

// A crash between the enqueue and its record neither doubles the slot,
// even once a worker has run it to completion, nor loses it; nor does a
// failed enqueue lose it.
func TestCrashBetweenEnqueueAndRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	slot := time.Now().UTC().Truncate(time.Second)
	b.create(t, store.Schedule{Name: "crashy", EverySeconds: 3600, NextRunAt: &slot})

	// A worker that records what it ran.
	var mu sync.Mutex
	var ran []string
	srv := asynq.NewServer(b.redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{tasks.QueueDefault: 1}, ShutdownTimeout: time.Second,
		Logger: quietAsynq{}, LogLevel: asynq.FatalLevel,
	})
	must(t, srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		mu.Lock()
		ran = append(ran, id)
		mu.Unlock()
		return nil
	})))
	t.Cleanup(srv.Shutdown)
	runs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ran)
	}

	// First, Redis is down: nothing is enqueued and nothing recorded.
	down := errors.New("redis down")
	failing := &scheduler.Scheduler{Store: b.st, Enqueuer: enqueuerFunc(func(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
		return nil, down
	}), Options: scheduler.Options{Logger: slog.New(slog.DiscardHandler)}}
	_, err := failing.Tick(context.Background())
	if !errors.Is(err, down) {
		t.Fatalf("Tick with Redis down: %v", err)
	}
	diff(t, "total_runs after a failed enqueue", int64(0), b.row(t, "crashy").TotalRuns)

	// Then the scheduler enqueues and dies before recording: its claim
	// never happens because the process is gone. Simulated by an
	// enqueuer that enqueues and then reports the death.
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { client.Close() })
	died := errors.New("process died")
	dying := &scheduler.Scheduler{Store: b.st, Enqueuer: enqueuerFunc(func(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
		if _, err := client.EnqueueContext(ctx, task, opts...); err != nil {
			return nil, err
		}
		return nil, died
	}), Options: scheduler.Options{Logger: slog.New(slog.DiscardHandler)}}
	_, err = dying.Tick(context.Background())
	if !errors.Is(err, died) {
		t.Fatalf("Tick of the dying scheduler: %v", err)
	}
	diff(t, "total_runs after the death", int64(0), b.row(t, "crashy").TotalRuns)

	// A worker runs the task to completion meanwhile.
	id := scheduler.TaskID("crashy", slot)
	testenv.Eventually(t, 10*time.Second, "the worker ran "+id, func() bool { return len(runs()) == 1 })
	testenv.Eventually(t, 10*time.Second, id+" done", func() bool {
		// Without a retention, asynq forgets a task once it is done.
		info, err := b.insp.GetTaskInfo(tasks.QueueDefault, id)
		return errors.Is(err, asynq.ErrTaskNotFound) || err == nil && info.State == asynq.TaskStateCompleted
	})

	// The next scheduler finds the slot due, and records it without
	// enqueueing it again.
	next := b.replica(t, scheduler.Options{})
	_, err = next.Tick(context.Background())
	must(t, err)
	diff(t, "enqueued again", []string(nil), b.log.ids())
	row := b.row(t, "crashy")
	diff(t, "total_runs", int64(1), row.TotalRuns)
	diff(t, "next_run_at", slot.Add(time.Hour), row.NextRunAt.UTC())
	diff(t, "tasks run", []string{id}, runs())
}

type quietAsynq struct{}

func (quietAsynq) Debug(...any) {}
func (quietAsynq) Info(...any)  {}
func (quietAsynq) Warn(...any)  {}
func (quietAsynq) Error(...any) {}
func (quietAsynq) Fatal(...any) {}

// An SQL edit of the interval takes effect on a running scheduler within
// 5 s, without a restart.
func TestSQLEditTakesEffect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Second)
	b.create(t, store.Schedule{Name: "edited", EverySeconds: 3600, LastRunAt: &now, NextRunAt: ptr(now.Add(time.Hour))})
	start(t, b.replica(t, scheduler.Options{}))

	must(t, storetest.DB(t, b.dbURL).Exec("UPDATE schedules SET every_seconds = 1 WHERE name = 'edited'").Error)
	edited := time.Now()
	testenv.Eventually(t, 10*time.Second, "an enqueue", func() bool { return b.log.len() > 0 })
	if d := time.Since(edited); d > 5*time.Second {
		t.Errorf("the edit took %s to take effect", d)
	}
	// The run is recorded just after its enqueue.
	var row *store.Schedule
	testenv.Eventually(t, 10*time.Second, "the run to be recorded", func() bool {
		row = b.row(t, "edited")
		return row.TotalRuns > 0
	})
	if d := row.NextRunAt.Sub(*row.LastRunAt); d > 2*time.Second {
		t.Errorf("next run %s after the last: the new interval is not in force", d)
	}
}

// A schedule the loop cannot run (a bad cron written by SQL) is reported
// and skipped; the others go on.
func TestBadScheduleIsSkipped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	b.create(t, store.Schedule{Name: "bad", Cron: "not a cron", NextRunAt: &now})
	b.create(t, store.Schedule{Name: "good", EverySeconds: 60, NextRunAt: &now})
	m := scheduler.NewMetrics(nil)
	_, err := b.replica(t, scheduler.Options{Metrics: m}).Tick(context.Background())
	if !errors.Is(err, scheduler.ErrBadSpec) || !strings.Contains(err.Error(), "schedule bad") {
		t.Fatalf("Tick: %v, want an error about schedule bad", err)
	}
	diff(t, "enqueued", []string{scheduler.TaskID("good", now)}, b.log.ids())
	diff(t, "spec errors", 1.0, counterValue(m.Errors.WithLabelValues("spec")))
}

// A row inserted by hand without next_run_at runs at once, once.
func TestHandInsertedRowRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	must(t, storetest.DB(t, b.dbURL).Exec(`INSERT INTO schedules (name, task_type, every_seconds, queue, enabled, changed_at, created_at)
		VALUES ('manual', ?, 3600, ?, ?, ?, ?)`, tasks.TypePatientsSync, tasks.QueueDefault, true, time.Now().UTC(), time.Now().UTC()).Error)
	r := b.replica(t, scheduler.Options{})
	for range 3 {
		_, err := r.Tick(context.Background())
		must(t, err)
	}
	if ids := b.log.ids(); len(ids) != 1 {
		t.Fatalf("enqueued %q, want one task", ids)
	}
	diff(t, "total_runs", int64(1), b.row(t, "manual").TotalRuns)
}

// The task carries the row's type, payload and queue.
func TestEnqueuedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	b.create(t, store.Schedule{Name: "refresh", TaskType: tasks.TypeTokenRefreshDue, Queue: tasks.QueueCritical,
		Payload: `{"location_id":"loc-1"}`, EverySeconds: 600, NextRunAt: &now})
	_, err := b.replica(t, scheduler.Options{}).Tick(context.Background())
	must(t, err)
	info, err := b.insp.GetTaskInfo(tasks.QueueCritical, scheduler.TaskID("refresh", now))
	must(t, err)
	diff(t, "task", []any{tasks.TypeTokenRefreshDue, `{"location_id":"loc-1"}`, scheduler.DefaultMaxRetry, scheduler.DefaultRetention},
		[]any{info.Type, string(info.Payload), info.MaxRetry, info.Retention})
}

func TestTaskID(t *testing.T) {
	t.Parallel()
	got := scheduler.TaskID("token-refresh", time.Date(2024, 11, 29, 4, 40, 0, 0, time.UTC))
	diff(t, "TaskID", "sched:token-refresh:1732855200", got)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
