package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/tasks"
)

// A task that someone asked for is kept for its wait and an hour after,
// and a refresh of every location lists its children and keeps them as
// long, so the wait can follow them; the scheduled kind keeps minutes
// (TestRefreshFanOutPagesAndCounts).
func TestEnqueuedTasksAreKeptForTheWait(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	stack.Connect(t, "loc2", time.Now().Add(20*time.Hour))
	insp := asynq.NewInspectorFromRedisClient(stack.Redis(t))
	task := func(stdout string) *asynq.TaskInfo {
		t.Helper()
		var id struct {
			TaskID string `json:"task_id"`
			Queue  string `json:"queue"`
		}
		if err := json.Unmarshal([]byte(stdout), &id); err != nil {
			t.Fatalf("stdout %q: %v", stdout, err)
		}
		info, err := insp.GetTaskInfo(id.Queue, id.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}

	code, stdout, stderr := enqueue(t, env, "refresh", "--location", "loc1", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if got := task(stdout).Retention; got != 2*time.Minute+time.Hour {
		t.Errorf("an enqueued refresh is kept %s, want its 2m timeout and an hour", got)
	}

	code, stdout, stderr = enqueue(t, env, "refresh", "--timeout", "3m")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	fan := task(stdout)
	if want := 3*time.Minute + time.Hour; fan.Retention != want {
		t.Errorf("the fan-out is kept %s, want %s", fan.Retention, want)
	}
	var ran *asynq.TaskInfo
	testenv.Eventually(t, time.Minute, "the fan-out to complete", func() bool {
		var err error
		ran, err = insp.GetTaskInfo(fan.Queue, fan.ID)
		return err == nil && ran.State == asynq.TaskStateCompleted
	})
	var res tasks.FanOutResult
	if err := json.Unmarshal(ran.Result, &res); err != nil || res.Count != 2 || len(res.Enqueued) != 2 {
		t.Fatalf("fan-out result %s (%v): want two children, listed", ran.Result, err)
	}
	for _, c := range res.Enqueued {
		info, err := insp.GetTaskInfo(c.Queue, c.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if want := 3*time.Minute + time.Hour; info.Retention != want {
			t.Errorf("child of %s kept %s, want %s", c.LocationID, info.Retention, want)
		}
	}
}
