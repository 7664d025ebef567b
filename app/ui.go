package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// webActions are the buttons of a location's page: the enqueue command's
// tasks (enqueueCommands), built by the same constructors.
type webActions struct {
	redis  redis.UniversalClient
	client *asynq.Client
}

func (a webActions) Enqueue(ctx context.Context, action, loc string) (web.Enqueued, error) {
	cmd, ok := enqueueCommands[action]
	if !ok {
		return web.Enqueued{}, &web.InputError{Err: fmt.Errorf("no action %q", action)}
	}
	// Redis's clock, as for `enqueue refresh --location`: the workers
	// compare the request's time with it.
	now, err := refresh.SharedTime(ctx, a.redis)
	if err != nil {
		return web.Enqueued{}, err
	}
	keep := tasks.WaitRetention(cmd.timeout)
	task, err := cmd.one(loc, now, keep)
	if err != nil {
		return web.Enqueued{}, &web.InputError{Err: err}
	}
	// Someone pressed the button and may follow the task: kept as the
	// enqueue command keeps its tasks.
	info, err := a.client.EnqueueContext(ctx, task, asynq.Retention(keep))
	if err != nil {
		return web.Enqueued{}, fmt.Errorf("enqueue %s %s: %w", action, loc, err)
	}
	return web.Enqueued{TaskID: info.ID, Queue: info.Queue}, nil
}

// webSchedules are the schedules page: the scheduler command's
// subcommands on the store, with its validation and its words.
type webSchedules struct {
	store  *store.Store
	client *asynq.Client
	clock  clock.Clock
}

func (s webSchedules) List(ctx context.Context) ([]web.ScheduleView, error) {
	rows, err := s.store.Schedules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]web.ScheduleView, len(rows))
	for i := range rows {
		r := &rows[i]
		sp := scheduler.SpecOf(r)
		v := web.ScheduleView{Name: r.Name, TaskType: r.TaskType, Queue: r.Queue, Spec: sp.String(),
			Cron: r.Cron, TZ: r.TZ, Enabled: r.Enabled, LastRunAt: r.LastRunAt, TotalRuns: r.TotalRuns}
		if r.Cron == "" {
			v.Every = strings.TrimPrefix(sp.String(), "every ")
		}
		if v.NextRunAt, err = scheduler.NextRun(r); err != nil {
			v.Problem = err.Error()
		}
		out[i] = v
	}
	return out, nil
}

func (s webSchedules) Set(ctx context.Context, name, every, cron, tz string) (string, error) {
	sp, err := scheduler.ParseSpec(every, cron, tz)
	if err != nil {
		return "", &web.InputError{Err: err}
	}
	row, changed, err := scheduler.Set(ctx, s.store, name, sp, clock.Or(s.clock).Now())
	if err != nil {
		return "", webScheduleError(name, err)
	}
	return scheduleReport(row, changed, scheduler.SpecOf(row).String()), nil
}

func (s webSchedules) SetEnabled(ctx context.Context, name string, enabled bool) (string, error) {
	row, changed, err := scheduler.SetEnabled(ctx, s.store, name, enabled)
	if err != nil {
		return "", webScheduleError(name, err)
	}
	what := "disabled"
	if enabled {
		what = "enabled"
	}
	return scheduleReport(row, changed, what), nil
}

// RunNow is `scheduler run NAME`: the scheduler's own path
// (scheduler.RunNow), so a run of this second is enqueued once however
// many ask, and a task type no worker handles is refused.
func (s webSchedules) RunNow(ctx context.Context, name string) (string, error) {
	row, err := s.store.Schedule(ctx, name)
	if err != nil {
		return "", webScheduleError(name, err)
	}
	if !knownTask(row.TaskType) {
		return "", &web.InputError{Err: fmt.Errorf("schedule %s enqueues %q, which no worker handles (known: %s): nothing enqueued", name, row.TaskType, knownTypes())}
	}
	sched := &scheduler.Scheduler{Store: s.store, Enqueuer: s.client,
		Options: scheduler.Options{Clock: s.clock, Logger: slog.New(slog.DiscardHandler)}}
	ran, err := sched.RunNow(ctx, name)
	if errors.Is(err, scheduler.ErrBadSpec) {
		return "", &web.InputError{Err: fmt.Errorf("schedule %s cannot run: %v", name, err)}
	}
	if err != nil {
		return "", fmt.Errorf("schedule %s: %w", name, err)
	}
	if !ran.Enqueued {
		return fmt.Sprintf("%s: task %s of this second is queued already (queue %s)", name, ran.TaskID, ran.Queue), nil
	}
	return fmt.Sprintf("%s: enqueued %s now as task %s (queue %s); next run %s", name, row.TaskType, ran.TaskID, ran.Queue,
		ran.Next.UTC().Format(time.RFC3339)), nil
}

// webScheduleError is scheduleError for the web: bad input is an
// *web.InputError with the command line's words.
func webScheduleError(name string, err error) error {
	err = scheduleError(name, err)
	var ue *UsageError
	if errors.As(err, &ue) {
		return &web.InputError{Err: ue.Err}
	}
	return err
}

// scheduleReport is reportSchedule's line, without its newline.
func scheduleReport(row *store.Schedule, changed bool, what string) string {
	var b strings.Builder
	reportSchedule(&b, row, changed, what)
	return strings.TrimSuffix(b.String(), "\n")
}

// uiFormKey is the purpose of the key that signs the pages' forms.
const uiFormKey = "web-forms"
