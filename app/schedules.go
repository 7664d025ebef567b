package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
)

// DefaultSchedules are the schedules of DESIGN.md, which `scheduler setup`
// (and --standalone) create. They live here, not in scheduler, because
// they name tasks, and scheduler enqueues whatever a row names without
// knowing the tasks. Token work and the alerts have the critical queue,
// whose worker slots sync work cannot take.
var DefaultSchedules = []scheduler.Default{
	{Name: "token-refresh", TaskType: tasks.TypeTokenRefreshDue, Queue: tasks.QueueCritical, Spec: scheduler.Spec{Every: 10 * time.Minute}},
	{Name: "patient-sync", TaskType: tasks.TypePatientsSync, Queue: tasks.QueueDefault, Spec: scheduler.Spec{Every: time.Hour}},
	{Name: "appointment-sync", TaskType: tasks.TypeAppointmentsSync, Queue: tasks.QueueDefault, Spec: scheduler.Spec{Every: time.Hour}},
	// The full passes read every row and find the rows gone from the
	// tables, which the hourly incremental passes do not (syncer's
	// incremental.go); they send only what changed.
	{Name: "patient-sync-full", TaskType: tasks.TypePatientsSync, Queue: tasks.QueueDefault, Payload: `{"full":true}`, Spec: scheduler.Spec{Cron: "30 2 * * *"}},
	{Name: "appointment-sync-full", TaskType: tasks.TypeAppointmentsSync, Queue: tasks.QueueDefault, Payload: `{"full":true}`, Spec: scheduler.Spec{Cron: "45 2 * * *"}},
	{Name: "alerts", TaskType: tasks.TypeAlertsEvaluate, Queue: tasks.QueueCritical, Spec: scheduler.Spec{Every: time.Minute}},
	{Name: "reconcile", TaskType: tasks.TypeReconcile, Queue: tasks.QueueDefault, Spec: scheduler.Spec{Cron: "30 3 * * *"}},
}

// openSchedules opens and migrates the database of cfg for the scheduler
// and its subcommands. Every subcommand migrates: `scheduler setup` must
// work on a new database, and Migrate is idempotent and locked against
// other processes. The scheduler reads no token, so the store has no
// cipher.
func openSchedules(ctx context.Context, cfg *config.Config, opts ...store.Option) (*store.Store, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL, nil, opts...)
	if err != nil {
		return nil, databaseError(err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// RunScheduler runs the scheduler loop, with /metrics, /healthz and
// /readyz on cfg.MetricsAddr, until ctx is done.
//
// It does not use Open: that needs TOKEN_ENCRYPTION_KEY and builds a GHL
// client, and the scheduler reads no token and calls no GHL. It takes
// only what fits: ConnectRedis, and Deps.Ready over the store and Redis
// it has.
func RunScheduler(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// ConnectRedis does not tell a bad URL from a Redis that does not
	// answer; only the first is bad configuration, found before the
	// database is touched.
	if _, err := redisconn.Parse(cfg.RedisURL); err != nil {
		return &config.Error{Var: config.VarRedisURL, Msg: err.Error()}
	}
	tp, err := tracing.Setup(ctx, "ghlsync-scheduler", log)
	if err != nil {
		return err
	}
	defer flushTracing(tp, log)
	st, err := openSchedules(ctx, cfg, store.WithTracer(tp))
	if err != nil {
		return err
	}
	defer st.Close()
	rc, err := ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rc.Close()
	// The client shares rc, so /readyz pings the connections the loop
	// enqueues on; closing rc closes them.
	client := asynq.NewClientFromRedisClient(rc)
	deps := &Deps{Store: st, Redis: rc}

	// The scheduler updates none of the worker's and web's metrics, so its
	// /metrics has only its own, the runtime's and, on the one scheduler
	// holding their lease, the queues'.
	reg := metrics.NewRegistry()
	sched := &scheduler.Scheduler{Store: st, Enqueuer: tracing.Enqueue(tp, client), Options: scheduler.Options{Logger: log, Metrics: scheduler.NewMetrics(reg)}}

	ready := func(ctx context.Context) error {
		return errors.Join(deps.Ready(ctx), sched.Check(ctx))
	}
	// The ops server and the queue metrics' lease end with the loop, also
	// when it stops on an error of its own.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	waitOps, err := ops.Serve(ctx, cfg.MetricsAddr, opsHandler(cfg, reg, ready, log), log)
	if err != nil {
		return &config.Error{Var: config.VarMetricsAddr, Msg: err.Error()}
	}
	waitQueueMetrics := exportQueueMetrics(ctx, rc, reg, log)
	if rows, err := st.EnabledSchedules(ctx); err == nil && len(rows) == 0 {
		log.Warn("no enabled schedules: run `scheduler setup` to create the defaults")
	}
	log.Info("scheduler running", "config", cfg)
	// Shutdown: the scheduler only produces, so nothing waits on it. The
	// cancelled ctx stops the loop (which first enqueues and records the
	// slot in hand), the ops server and the queue metrics' lease (released,
	// so another scheduler reports them at once); only then are Redis and
	// the database closed (deferred), since they still use them.
	runErr := sched.Run(ctx)
	stop()
	if err := waitOps(); err != nil && runErr == nil {
		runErr = err
	}
	waitQueueMetrics()
	return runErr
}

// SetupSchedules is `scheduler setup [--reset]`: it creates or updates
// DefaultSchedules (see scheduler.Setup) and prints a line per schedule
// on stdout saying what it did.
func SetupSchedules(ctx context.Context, cfg *config.Config, reset bool, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := scheduler.Setup(ctx, st, DefaultSchedules, time.Now(), reset)
	for _, r := range res {
		if r.Detail != "" {
			fmt.Fprintf(stdout, "%s: %s: %s\n", r.Name, r.Action, r.Detail)
		} else {
			fmt.Fprintf(stdout, "%s: %s\n", r.Name, r.Action)
		}
	}
	return err
}

// ListSchedules is `scheduler list`: the schedules as a table on stdout.
func ListSchedules(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return scheduler.List(ctx, st, stdout, time.Now(), knownTask)
}

// knownTask reports whether a worker handles taskType.
func knownTask(taskType string) bool {
	_, ok := tasks.Lookup(taskType)
	return ok
}

// knownTypes lists the task types a worker handles, for an error message.
func knownTypes() string {
	var names []string
	for _, t := range tasks.Types() {
		names = append(names, t.Type)
	}
	return strings.Join(names, ", ")
}

// NewSchedule is a schedule `scheduler add` creates.
type NewSchedule struct {
	Name string
	// TaskType is the task it enqueues: one a worker handles (tasks.Types).
	TaskType string
	// Payload is the task's JSON payload, "" for none.
	Payload string
	Spec    scheduler.Spec
}

// Check refuses a schedule that could only fail: a task type no worker
// handles, or a payload its task would not run as meant (see
// tasks.TypeInfo.CheckPayload). Its error is a *UsageError. The spec is
// checked by ParseScheduleSpec, the name by AddSchedule.
func (n NewSchedule) Check() (tasks.TypeInfo, error) {
	t, ok := tasks.Lookup(n.TaskType)
	if !ok {
		return t, Usagef("--task %q: no worker handles that task type (known: %s)", n.TaskType, knownTypes())
	}
	if err := t.CheckPayload([]byte(n.Payload)); err != nil {
		return t, Usagef("--payload: %v", err)
	}
	return t, nil
}

// AddSchedule is `scheduler add NAME --task TYPE [--payload JSON] --every D
// | --cron SPEC`: it creates the schedule, on the queue of its task type,
// and says on stdout when it runs next. Bad input (see NewSchedule.Check,
// a name in use or not allowed) is a *UsageError, and changes nothing.
func AddSchedule(ctx context.Context, cfg *config.Config, n NewSchedule, stdout io.Writer) error {
	t, err := n.Check()
	if err != nil {
		return err
	}
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	row, err := scheduler.Add(ctx, st, scheduler.Default{Name: n.Name, TaskType: t.Type, Queue: t.Queue, Spec: n.Spec}, strings.TrimSpace(n.Payload), time.Now())
	switch {
	case errors.Is(err, scheduler.ErrExists):
		return Usagef("a schedule named %q exists (scheduler set changes its schedule; scheduler delete removes it)", n.Name)
	case errors.Is(err, scheduler.ErrBadName), errors.Is(err, scheduler.ErrBadSpec):
		return Usage(err)
	case err != nil:
		return err
	}
	reportSchedule(stdout, row, true, fmt.Sprintf("added, %s %s on queue %s", row.TaskType, scheduler.SpecOf(row), row.Queue))
	return nil
}

// DeleteSchedule is `scheduler delete NAME`. An unknown name is a
// *UsageError. Tasks the schedule enqueued stay queued.
func DeleteSchedule(ctx context.Context, cfg *config.Config, name string, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := scheduler.Delete(ctx, st, name); err != nil {
		return scheduleError(name, err)
	}
	fmt.Fprintf(stdout, "%s: deleted (tasks it enqueued stay queued)\n", name)
	return nil
}

// RunSchedule is `scheduler run NAME`: it enqueues the schedule's task now
// through the scheduler's own path (scheduler.RunNow: the same task id
// scheme, so a run of this second is enqueued once however many ask), and
// prints the task's id, queue and type as JSON, as `enqueue` does, for
// `enqueue wait`. An unknown name, or a schedule whose task type no worker
// handles, is a *UsageError, and nothing is enqueued.
func RunSchedule(ctx context.Context, cfg *config.Config, name string, stdout io.Writer) error {
	if _, err := asynq.ParseRedisURI(cfg.RedisURL); err != nil {
		return &config.Error{Var: config.VarRedisURL, Msg: err.Error()}
	}
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	row, err := st.Schedule(ctx, name)
	if err != nil {
		return scheduleError(name, err)
	}
	if !knownTask(row.TaskType) {
		return Usagef("schedule %s enqueues %q, which no worker handles (known: %s): nothing enqueued", name, row.TaskType, knownTypes())
	}
	rc, err := ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rc.Close()
	sched := &scheduler.Scheduler{Store: st, Enqueuer: asynq.NewClientFromRedisClient(rc), Options: scheduler.Options{Logger: slog.New(slog.DiscardHandler)}}
	ran, err := sched.RunNow(ctx, name)
	if errors.Is(err, scheduler.ErrBadSpec) {
		return Usagef("schedule %s cannot run: %v (scheduler set %s fixes it)", name, err, name)
	}
	if err != nil {
		return err
	}
	printJSON(stdout, struct {
		Schedule      string    `json:"schedule"`
		TaskID        string    `json:"task_id"`
		Queue         string    `json:"queue"`
		Type          string    `json:"type"`
		AlreadyQueued bool      `json:"already_queued,omitempty"`
		NextRunAt     time.Time `json:"next_run_at"`
	}{name, ran.TaskID, ran.Queue, row.TaskType, !ran.Enqueued, ran.Next.UTC()})
	return nil
}

// ScheduleSpec is when a schedule runs (scheduler.Spec), named here for
// the command lines.
type ScheduleSpec = scheduler.Spec

// ParseScheduleSpec is scheduler.ParseSpec for the command line (`scheduler
// set NAME --every D | --cron SPEC [--tz ZONE]`): its error is a
// *UsageError.
func ParseScheduleSpec(every, cron, tz string) (scheduler.Spec, error) {
	sp, err := scheduler.ParseSpec(every, cron, tz)
	return sp, Usage(err)
}

// SetSchedule is `scheduler set NAME ...`: it gives the schedule name the
// spec sp and says on stdout what changed and when it runs next. An
// unknown name is a *UsageError, and changes nothing.
func SetSchedule(ctx context.Context, cfg *config.Config, name string, sp scheduler.Spec, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	row, changed, err := scheduler.Set(ctx, st, name, sp, time.Now())
	if err != nil {
		return scheduleError(name, err)
	}
	reportSchedule(stdout, row, changed, scheduler.SpecOf(row).String())
	return nil
}

// EnableSchedule is `scheduler enable NAME` (enabled true) and `scheduler
// disable NAME`, saying on stdout what changed. An unknown name is a
// *UsageError, and changes nothing.
func EnableSchedule(ctx context.Context, cfg *config.Config, name string, enabled bool, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	row, changed, err := scheduler.SetEnabled(ctx, st, name, enabled)
	if err != nil {
		return scheduleError(name, err)
	}
	what := "disabled"
	if enabled {
		what = "enabled"
	}
	reportSchedule(stdout, row, changed, what)
	return nil
}

// scheduleError turns the error of changing the schedule name into what
// the command line says: an unknown name is bad input, with where to find
// the right ones.
func scheduleError(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return Usagef("no schedule named %q (scheduler list shows them; scheduler setup creates the defaults)", name)
	}
	return err
}

// reportSchedule prints what a change did to row: what it is now (what),
// and when it runs next if it runs.
func reportSchedule(w io.Writer, row *store.Schedule, changed bool, what string) {
	switch {
	case !changed:
		fmt.Fprintf(w, "%s: unchanged (already %s)\n", row.Name, what)
	case !row.Enabled || row.NextRunAt == nil:
		fmt.Fprintf(w, "%s: %s\n", row.Name, what)
	default:
		fmt.Fprintf(w, "%s: %s; next run %s\n", row.Name, what, row.NextRunAt.UTC().Format(time.RFC3339))
	}
}
