package scheduler_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
)

// RunNow enqueues the slot of the current second through the tick's path:
// asked twice within the second, or once in the second a tick enqueues a
// due slot, it is one task. The run is recorded, and an interval
// schedule's next slot is one interval later.
func TestRunNowOncePerSecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := clock.NewFake(time.Now().Truncate(time.Second).Add(300 * time.Millisecond))
	now := fake.Now().Truncate(time.Second)
	// Due this very second, and payload and queue of its own.
	b.create(t, store.Schedule{Name: "sync", TaskType: tasks.TypePatientsSync, Queue: tasks.QueueCritical,
		Payload: `{"location_id":"loc1"}`, EverySeconds: 3600, NextRunAt: ptr(now)})
	s := b.replica(t, scheduler.Options{Clock: fake})

	first, err := s.RunNow(context.Background(), "sync")
	must(t, err)
	diff(t, "first RunNow", scheduler.Ran{TaskID: scheduler.TaskID("sync", now), Queue: tasks.QueueCritical, Enqueued: true, Next: now.Add(time.Hour)}, first)
	fake.Advance(500 * time.Millisecond)
	second, err := s.RunNow(context.Background(), "sync")
	must(t, err)
	if second.TaskID != first.TaskID || second.Enqueued {
		t.Errorf("second RunNow in the same second: %+v; want the same task, not enqueued again", second)
	}
	// The tick of this second finds the slot recorded: nothing more.
	_, err = s.Tick(context.Background())
	must(t, err)
	diff(t, "tasks in Redis", []string{first.TaskID}, b.pending(t, tasks.QueueCritical))
	info, err := b.insp.GetTaskInfo(tasks.QueueCritical, first.TaskID)
	must(t, err)
	if info.Type != tasks.TypePatientsSync || string(info.Payload) != `{"location_id":"loc1"}` || info.MaxRetry != scheduler.DefaultMaxRetry || info.Retention != scheduler.DefaultRetention {
		t.Errorf("enqueued %s %s, max retry %d, retention %s: want the row's task with the tick's options", info.Type, info.Payload, info.MaxRetry, info.Retention)
	}
	row := b.row(t, "sync")
	if row.TotalRuns != 1 || !row.LastRunAt.Equal(now) || !row.NextRunAt.Equal(now.Add(time.Hour)) {
		t.Errorf("row after RunNow: runs %d, last %v, next %v", row.TotalRuns, row.LastRunAt, row.NextRunAt)
	}

	// A second later it is a run of its own.
	fake.Advance(time.Second)
	third, err := s.RunNow(context.Background(), "sync")
	must(t, err)
	if third.TaskID == first.TaskID || !third.Enqueued {
		t.Errorf("RunNow a second later: %+v", third)
	}
	if _, err := s.RunNow(context.Background(), "no-such"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RunNow of an unknown name: %v", err)
	}
}

// A slot a tick enqueued this second is the one RunNow would enqueue: not
// a second task.
func TestRunNowAfterTickSameSecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := clock.NewFake(time.Now().Truncate(time.Second))
	now := fake.Now()
	b.create(t, store.Schedule{Name: "tick", EverySeconds: 60, NextRunAt: ptr(now)})
	s := b.replica(t, scheduler.Options{Clock: fake})
	_, err := s.Tick(context.Background())
	must(t, err)
	ran, err := s.RunNow(context.Background(), "tick")
	must(t, err)
	if ran.Enqueued || ran.TaskID != scheduler.TaskID("tick", now) {
		t.Errorf("RunNow after the tick's slot of the same second: %+v", ran)
	}
	diff(t, "tasks in Redis", []string{scheduler.TaskID("tick", now)}, b.pending(t, tasks.QueueDefault))
}

// Add creates an enabled schedule with its payload, due at once (interval)
// or at its next cron time, and refuses a name in use or not allowed;
// Delete removes it.
func TestAddAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	row, err := scheduler.Add(ctx, b.st, scheduler.Default{Name: "often", TaskType: tasks.TypePatientsSync, Queue: tasks.QueueDefault,
		Spec: scheduler.Spec{Every: 5 * time.Minute}}, `{"location_id":"loc1"}`, now)
	must(t, err)
	if !row.Enabled || row.Payload != `{"location_id":"loc1"}` || row.EverySeconds != 300 || !row.NextRunAt.Equal(now) {
		t.Errorf("added %+v", row)
	}
	row, err = scheduler.Add(ctx, b.st, scheduler.Default{Name: "nightly", TaskType: tasks.TypeAppointmentsSync, Queue: tasks.QueueDefault,
		Spec: scheduler.Spec{Cron: "0 3 * * *"}}, "", now)
	must(t, err)
	if !row.NextRunAt.Equal(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("a cron schedule added at %s runs next %s", now, row.NextRunAt)
	}
	for _, tc := range []struct {
		d    scheduler.Default
		want error
	}{
		{scheduler.Default{Name: "often", TaskType: tasks.TypeTokenRefreshDue, Spec: scheduler.Spec{Every: time.Hour}}, scheduler.ErrExists},
		{scheduler.Default{Name: "has space", TaskType: tasks.TypeTokenRefreshDue, Spec: scheduler.Spec{Every: time.Hour}}, scheduler.ErrBadName},
		{scheduler.Default{Name: "a:b", TaskType: tasks.TypeTokenRefreshDue, Spec: scheduler.Spec{Every: time.Hour}}, scheduler.ErrBadName},
		{scheduler.Default{Name: strings.Repeat("x", 65), TaskType: tasks.TypeTokenRefreshDue, Spec: scheduler.Spec{Every: time.Hour}}, scheduler.ErrBadName},
		{scheduler.Default{Name: "never", TaskType: tasks.TypeTokenRefreshDue, Spec: scheduler.Spec{Every: 0}}, scheduler.ErrBadSpec},
	} {
		if _, err := scheduler.Add(ctx, b.st, tc.d, "", now); !errors.Is(err, tc.want) {
			t.Errorf("Add %q: %v, want %v", tc.d.Name, err, tc.want)
		}
	}
	if got := b.row(t, "often"); got.TaskType != tasks.TypePatientsSync {
		t.Errorf("a refused Add changed the row: %+v", got)
	}
	must(t, scheduler.Delete(ctx, b.st, "often"))
	if err := scheduler.Delete(ctx, b.st, "often"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete twice: %v", err)
	}
	rows, err := b.st.Schedules(ctx)
	must(t, err)
	if len(rows) != 1 || rows[0].Name != "nightly" {
		t.Errorf("after Delete: %+v", rows)
	}
}

// List flags the rows whose task type known says no worker handles.
func TestListFlagsUnknownTaskTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, store.Schedule{Name: "good", TaskType: tasks.TypePatientsSync, EverySeconds: 60})
	b.create(t, store.Schedule{Name: "typo", TaskType: "ghl:patient:sync", EverySeconds: 60})
	var out bytes.Buffer
	must(t, scheduler.List(context.Background(), b.st, &out, time.Now(), func(tt string) bool { return tt == tasks.TypePatientsSync }))
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "good ") && strings.Contains(line, "UNKNOWN") || strings.HasPrefix(line, "typo ") && !strings.Contains(line, "UNKNOWN") {
			t.Errorf("list flags the wrong rows:\n%s", out.String())
		}
	}
}
