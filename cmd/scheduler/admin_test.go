package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// setupWorker returns a stack with a worker running on it, in process, and
// the scheduler command line on the same database and Redis.
func setupWorker(t *testing.T) (*storetest.Stack, *cmdline) {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	cfg, err := config.NewLoader(flag.NewFlagSet("worker", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		d.Close()
	})
	return stack, &cmdline{dbURL: stack.DatabaseURL, redisURL: stack.RedisURL}
}

// ran is what `scheduler run` prints.
type ran struct {
	Schedule      string    `json:"schedule"`
	TaskID        string    `json:"task_id"`
	Queue         string    `json:"queue"`
	Type          string    `json:"type"`
	AlreadyQueued bool      `json:"already_queued"`
	NextRunAt     time.Time `json:"next_run_at"`
}

// `scheduler add` creates a schedule of a task a worker runs, with its
// payload, on the task's queue; `scheduler run` enqueues it now and the
// worker runs it (one location's patients reach GHL); `scheduler delete`
// removes it. Bad input changes nothing.
func TestAddRunDelete(t *testing.T) {
	t.Parallel()
	stack, c := setupWorker(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	stack.Connect(t, "loc2", time.Now().Add(20*time.Hour))
	db := storetest.DB(t, stack.DatabaseURL)
	if err := db.Create(&[]store.Patient{
		{LocationID: "loc1", ExternalID: "p-1", FirstName: "Ada", Email: "ada@example.com"},
		{LocationID: "loc2", ExternalID: "p-2", FirstName: "Bob", Email: "bob@example.com"},
	}).Error; err != nil {
		t.Fatal(err)
	}

	code, out, stderr := c.run(t, "add", "loc1-patients", "--task", tasks.TypePatientsSync, "--payload", `{"location_id":"loc1"}`, "--cron", "0 3 * * *", "--tz", "Europe/Berlin")
	if code != 0 || !strings.Contains(out, "loc1-patients: added") || !strings.Contains(out, "next run") {
		t.Fatalf("add: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	row, err := stack.Store.Schedule(context.Background(), "loc1-patients")
	if err != nil {
		t.Fatal(err)
	}
	if row.TaskType != tasks.TypePatientsSync || row.Queue != tasks.QueueDefault || row.Payload != `{"location_id":"loc1"}` ||
		row.Cron != "0 3 * * *" || row.TZ != "Europe/Berlin" || !row.Enabled || row.TotalRuns != 0 {
		t.Fatalf("added row %+v", row)
	}

	for _, args := range [][]string{
		{"add", "loc1-patients", "--task", tasks.TypePatientsSync, "--every", "1h"},                           // exists
		{"add", "x", "--task", "ghl:contacts:frobnicate", "--every", "1h"},                                    // no handler
		{"add", "x", "--every", "1h"},                                                                         // no task
		{"add", "x", "--task", tasks.TypePatientsSync},                                                        // no spec
		{"add", "x", "--task", tasks.TypePatientsSync, "--every", "1h", "--payload", `{"locaton_id":"loc1"}`}, // typo
		{"add", "x", "--task", tasks.TypePatientsSync, "--every", "1h", "--payload", `not json`},              // not JSON
		{"add", "x", "--task", tasks.TypeTokenRefresh, "--every", "1h"},                                       // needs a location
		{"add", "bad name", "--task", tasks.TypePatientsSync, "--every", "1h"},                                // name
		{"add", "x", "--task", tasks.TypePatientsSync, "--every", "1h", "--reset"},                            // setup's flag
		{"add", "x", "y", "--task", tasks.TypePatientsSync, "--every", "1h"},                                  // two names
		{"delete", "no-such-schedule"},
		{"run", "no-such-schedule"},
	} {
		code, out, stderr := c.run(t, args...)
		if code != 2 || out != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("scheduler %q: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, stderr)
		}
	}
	if rows, _ := stack.Store.Schedules(context.Background()); len(rows) != 1 {
		t.Fatalf("bad input changed the schedules: %+v", rows)
	}

	// Run now: the worker syncs loc1's patient, and only loc1's.
	code, out, stderr = c.run(t, "run", "loc1-patients")
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	var r ran
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("run printed %q: %v", out, err)
	}
	if r.Schedule != "loc1-patients" || r.Queue != tasks.QueueDefault || r.Type != tasks.TypePatientsSync || !strings.HasPrefix(r.TaskID, "sched:loc1-patients:") {
		t.Fatalf("run printed %+v", r)
	}
	insp := asynq.NewInspectorFromRedisClient(stack.Redis(t))
	var info *asynq.TaskInfo
	testenv.Eventually(t, 30*time.Second, "the run's task to complete", func() bool {
		info, err = insp.GetTaskInfo(r.Queue, r.TaskID)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	var res syncer.Result
	if err := json.Unmarshal(info.Result, &res); err != nil || res.Location != "loc1" || res.Created != 1 {
		t.Fatalf("the run's result %s: want loc1's one patient created (%v)", info.Result, err)
	}
	if n1, n2 := len(stack.Fake.Contacts("loc1")), len(stack.Fake.Contacts("loc2")); n1 != 1 || n2 != 0 {
		t.Errorf("GHL holds %d contacts of loc1 and %d of loc2; want 1 and 0", n1, n2)
	}
	row, err = stack.Store.Schedule(context.Background(), "loc1-patients")
	if err != nil {
		t.Fatal(err)
	}
	if row.TotalRuns != 1 || row.LastRunAt == nil {
		t.Errorf("after run: %d runs, last %v; want the run recorded", row.TotalRuns, row.LastRunAt)
	}
	if _, out, _ := c.run(t, "list"); !strings.Contains(out, "loc1-patients") || strings.Contains(out, "never") {
		t.Errorf("list after run:\n%s", out)
	}

	code, out, stderr = c.run(t, "delete", "loc1-patients")
	if code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, err := stack.Store.Schedule(context.Background(), "loc1-patients"); err == nil {
		t.Fatal("the schedule is still there")
	}
	if code, _, _ := c.run(t, "run", "loc1-patients"); code != 2 {
		t.Errorf("run of a deleted schedule: exit %d, want 2", code)
	}
}

// A schedule inserted by SQL naming a task type no worker handles is
// flagged by list, and run refuses it without enqueuing anything.
func TestUnknownTaskTypeFromSQL(t *testing.T) {
	t.Parallel()
	stack, c := setupWorker(t)
	if code, _, stderr := c.run(t, "setup"); code != 0 {
		t.Fatalf("setup: exit %d: %s", code, stderr)
	}
	db := storetest.DB(t, stack.DatabaseURL)
	if err := db.Exec(`INSERT INTO schedules (name, task_type, every_seconds, queue, enabled, changed_at, created_at)
		VALUES ('typo', 'ghl:patient:sync', 3600, 'default', ?, ?, ?)`, true, time.Now().UTC(), time.Now().UTC()).Error; err != nil {
		t.Fatal(err)
	}
	code, out, stderr := c.run(t, "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	for _, line := range strings.Split(out, "\n") {
		flagged := strings.Contains(line, "UNKNOWN")
		if strings.HasPrefix(line, "typo ") != flagged {
			t.Errorf("list flags the wrong rows:\n%s", out)
		}
	}
	code, out, stderr = c.run(t, "run", "typo")
	if code != 2 || out != "" || !strings.Contains(stderr, "no worker handles") {
		t.Errorf("run of an unknown task type: exit %d, stdout %q, stderr %q; want 2", code, out, stderr)
	}
	if row, _ := stack.Store.Schedule(context.Background(), "typo"); row == nil || row.TotalRuns != 0 {
		t.Errorf("the refused run was recorded: %+v", row)
	}
	insp := asynq.NewInspectorFromRedisClient(stack.Redis(t))
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		insp.ListPendingTasks, insp.ListActiveTasks, insp.ListRetryTasks, insp.ListArchivedTasks, insp.ListCompletedTasks,
	} {
		infos, _ := list(tasks.QueueDefault)
		for _, info := range infos {
			if info.Type == "ghl:patient:sync" {
				t.Errorf("the refused run enqueued task %s (%s)", info.ID, info.State)
			}
		}
	}
}
