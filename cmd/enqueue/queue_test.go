package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// decode parses a command's JSON stdout into v.
func decode(t *testing.T, stdout string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("stdout is not the JSON expected: %v\n%s", err, stdout)
	}
}

// enqueued runs `enqueue ARGS` (without --wait) and returns the task id it
// printed.
func enqueued(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	code, stdout, stderr := enqueue(t, env, args...)
	if code != 0 {
		t.Fatalf("enqueue %v: exit %d: %s", args, code, stderr)
	}
	var out struct {
		TaskID string `json:"task_id"`
	}
	decode(t, stdout, &out)
	return out.TaskID
}

// inspectJSON runs `enqueue inspect --json`.
func inspectJSON(t *testing.T, env map[string]string, section ...string) app.InspectView {
	t.Helper()
	code, stdout, stderr := enqueue(t, env, append(append([]string{"inspect"}, section...), "--json")...)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	var v app.InspectView
	decode(t, stdout, &v)
	return v
}

// taskState is the state `enqueue result` reports for id.
func taskState(t *testing.T, env map[string]string, id string) app.TaskView {
	t.Helper()
	_, stdout, stderr := enqueue(t, env, "result", id)
	var v app.TaskView
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("result %s: %v: stdout %q, stderr %q", id, err, stdout, stderr)
	}
	return v
}

func client(t *testing.T, stack *storetest.Stack) *asynq.Client {
	t.Helper()
	return asynq.NewClientFromRedisClient(stack.Redis(t))
}

// `enqueue wait` and `enqueue result` of a task enqueued earlier, by id
// alone: a one-location refresh and a fan-out sync, against a real
// worker; and what result says of a task that is not done, of one that
// failed, and of an id no queue holds.
func TestResultAndWait(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))

	id := enqueued(t, env, "refresh", "--location", "loc1")
	code, stdout, stderr := enqueue(t, env, "wait", id, "--timeout", "30s")
	if code != 0 {
		t.Fatalf("wait: exit %d: %s", code, stderr)
	}
	var res refresh.Result
	decode(t, stdout, &res)
	if res.Outcome != refresh.Refreshed || res.LocationID != "loc1" {
		t.Fatalf("wait printed %+v, want loc1 refreshed", res)
	}

	code, stdout, stderr = enqueue(t, env, "result", id)
	if code != 0 {
		t.Fatalf("result: exit %d: %s", code, stderr)
	}
	var v app.TaskView
	decode(t, stdout, &v)
	if v.TaskID != id || v.Queue != tasks.QueueCritical || v.Type != tasks.TypeTokenRefresh || v.State != "completed" || v.CompletedAt == nil {
		t.Errorf("result %+v: want the completed refresh on the critical queue", v)
	}
	decode(t, string(v.Result), &res)
	if res.Outcome != refresh.Refreshed {
		t.Errorf("result's result %s: want the refresh's outcome", v.Result)
	}
	access, _ := stack.StoredTokens(t, "loc1")
	for _, secret := range []string{access.AccessToken, access.RefreshToken, stack.Key, storetest.ClientSecret} {
		if strings.Contains(stdout+stderr, secret) {
			t.Fatal("result prints a secret")
		}
	}

	// A fan-out's wait follows the tasks it enqueued.
	id = enqueued(t, env, "sync-patients")
	code, stdout, stderr = enqueue(t, env, "wait", id, "--timeout", "60s")
	if code != 0 {
		t.Fatalf("wait for a fan-out: exit %d: %s", code, stderr)
	}
	var fan struct {
		Results []struct{ Location, Outcome string }
	}
	decode(t, stdout, &fan)
	if len(fan.Results) != 1 || fan.Results[0].Location != "loc1" || fan.Results[0].Outcome != "completed" {
		t.Errorf("wait for a fan-out printed %s: want loc1's completed sync", stdout)
	}

	// Not done: exit 1, the state printed, and how to wait.
	task, err := tasks.NewRefreshTask("loc1", true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := client(t, stack).Enqueue(task, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = enqueue(t, env, "result", info.ID)
	decode(t, stdout, &v)
	if code != 1 || v.State != "scheduled" || !strings.Contains(stderr, "enqueue wait "+info.ID) {
		t.Errorf("result of a scheduled task: exit %d, state %s, stderr %q; want 1, scheduled, and how to wait", code, v.State, stderr)
	}
	code, _, stderr = enqueue(t, env, "wait", info.ID, "--timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "--timeout") {
		t.Errorf("wait in vain: exit %d, stderr %q; want 1 naming --timeout", code, stderr)
	}

	// Failed for good (a payload no handler takes): exit 1 with why.
	info, err = client(t, stack).Enqueue(asynq.NewTask(tasks.TypeTokenRefresh, []byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the bad task to be archived", func() bool { return taskState(t, env, info.ID).State == "archived" })
	code, _, stderr = enqueue(t, env, "result", info.ID)
	if code != 1 || !strings.Contains(stderr, "bad payload") {
		t.Errorf("result of a failed task: exit %d, stderr %q; want 1 and the task's error", code, stderr)
	}

	code, stdout, stderr = enqueue(t, env, "result", "no-such-task")
	if code != 2 || stdout != "" || !strings.Contains(stderr, "no task no-such-task") {
		t.Errorf("result of an unknown id: exit %d, stdout %q, stderr %q; want 2 and one line", code, stdout, stderr)
	}
}

// blockedSync starts a patients sync of loc1 that GHL keeps waiting (every
// contact call takes a minute) and returns its task id once a worker runs
// it.
func blockedSync(t *testing.T, stack *storetest.Stack, env map[string]string) string {
	t.Helper()
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	if err := storetest.DB(t, stack.DatabaseURL).Create(&store.Patient{LocationID: "loc1", ExternalID: "p-1",
		FirstName: "Ada", Email: "ada@example.com"}).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Fake.InjectFault(ghltest.Fault{Path: "/contacts", Latency: time.Minute}))
	id := enqueued(t, env, "sync-patients", "--location", "loc1")
	testenv.Eventually(t, 30*time.Second, "the sync to run", func() bool { return taskState(t, env, id).State == "active" })
	// A worker that stops lets a GHL call in flight finish: cancel the
	// sync first, or the worker's shutdown waits out its timeout.
	t.Cleanup(func() { asynq.NewInspectorFromRedisClient(stack.Redis(t)).CancelProcessing(id) })
	return id
}

// `enqueue inspect` shows the queues by state, the running task with its
// location and worker, the worker, and the task types.
func TestInspect(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	id := blockedSync(t, stack, env)

	// Workers report what they run every few seconds.
	var v app.InspectView
	testenv.Eventually(t, 30*time.Second, "a worker to report the sync", func() bool {
		v = inspectJSON(t, env)
		return len(v.Active) == 1 && v.Active[0].Server != ""
	})
	queues := map[string]app.QueueView{}
	for _, q := range v.Queues {
		queues[q.Queue] = q
	}
	if queues[tasks.QueueDefault].Active != 1 {
		t.Errorf("queues %+v: want 1 active in default", v.Queues)
	}
	if len(v.Active) != 1 || v.Active[0].TaskID != id || v.Active[0].Location != "loc1" || v.Active[0].Type != tasks.TypePatientsSync ||
		v.Active[0].Server == "" || v.Active[0].StartedAt == nil {
		t.Errorf("active %+v: want the sync of loc1, with its worker", v.Active)
	}
	// One worker process runs two servers: token slots and sync slots.
	served := map[string]app.WorkerView{}
	for _, w := range v.Workers {
		for q := range w.Queues {
			served[q] = w
		}
	}
	if len(v.Workers) != 2 || served[tasks.QueueDefault].ID != v.Active[0].Server || served[tasks.QueueDefault].Active != 1 ||
		served[tasks.QueueCritical].Active != 0 || served[tasks.QueueCritical].PID != served[tasks.QueueDefault].PID {
		t.Errorf("workers %+v: want the worker's two servers, the default one running the sync", v.Workers)
	}
	if len(v.Registered) != len(tasks.Types()) {
		t.Errorf("registered %+v: want every task type", v.Registered)
	}

	// One section, as JSON, has only that key.
	if v := inspectJSON(t, env, "active"); len(v.Active) != 1 || v.Queues != nil || v.Workers != nil || v.Registered != nil {
		t.Errorf("inspect active: %+v", v)
	}
	// The tables say the same.
	code, stdout, stderr := enqueue(t, env, "inspect")
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	for _, s := range []string{"QUEUE", "ACTIVE TASK", "WORKER", "TASK TYPE", id, "loc1", tasks.TypeAppointmentsSync} {
		if !strings.Contains(stdout, s) {
			t.Errorf("inspect does not show %q:\n%s", s, stdout)
		}
	}
	if code, _, stderr := enqueue(t, env, "inspect", "stats"); code != 2 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("inspect stats: exit %d, stderr %q; want 2 and one line", code, stderr)
	}
}

// `enqueue task cancel` stops a running task, which asynq then holds for a
// retry; `task delete` removes it then, and refuses while it runs.
func TestTaskCancelAndDelete(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	id := blockedSync(t, stack, env)

	code, _, stderr := enqueue(t, env, "task", "delete", id)
	if code != 2 || !strings.Contains(stderr, "is running") || taskState(t, env, id).State != "active" {
		t.Fatalf("delete of a running task: exit %d, stderr %q; want 2, and the task still running", code, stderr)
	}
	code, stdout, stderr := enqueue(t, env, "task", "cancel", id)
	if code != 0 || !strings.Contains(stdout, "cancelled") {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if v := taskState(t, env, id); v.State != "retry" || !strings.Contains(v.LastError, "context canceled") {
		t.Fatalf("after cancel: %+v; want retry after a cancelled attempt", v)
	}
	if code, _, stderr := enqueue(t, env, "task", "cancel", id); code != 2 || !strings.Contains(stderr, "not running") {
		t.Errorf("cancel of a waiting task: exit %d, stderr %q; want 2", code, stderr)
	}
	code, stdout, stderr = enqueue(t, env, "task", "delete", id)
	if code != 0 || !strings.Contains(stdout, "deleted") {
		t.Fatalf("delete: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := enqueue(t, env, "result", id); code != 2 {
		t.Errorf("result after delete: exit %d, want 2 (no such task)", code)
	}
	if n := len(inspectJSON(t, env, "active").Active); n != 0 {
		t.Errorf("%d tasks still active", n)
	}
}

// `enqueue task retry` runs a task that failed for good, now: it
// completes, where without the retry it would stay archived.
func TestTaskRetry(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	remove := stack.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Status: 503})
	task, err := tasks.NewRefreshTask("loc1", true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := client(t, stack).Enqueue(task, asynq.MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the refresh to fail for good", func() bool { return taskState(t, env, info.ID).State == "archived" })
	remove()

	code, stdout, stderr := enqueue(t, env, "task", "retry", info.ID)
	if code != 0 || !strings.Contains(stdout, "was archived, now pending") {
		t.Fatalf("retry: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = enqueue(t, env, "wait", info.ID, "--timeout", "30s")
	var res refresh.Result
	decode(t, stdout, &res)
	if code != 0 || res.Outcome != refresh.Refreshed {
		t.Fatalf("the retried refresh: exit %d, %+v, stderr %q; want refreshed", code, res, stderr)
	}
	if !stack.HoldsCurrent(t, "loc1") {
		t.Error("loc1 does not hold the refreshed token")
	}
	if code, _, stderr := enqueue(t, env, "task", "retry", info.ID); code != 2 || !strings.Contains(stderr, "completed") {
		t.Errorf("retry of a completed task: exit %d, stderr %q; want 2", code, stderr)
	}
	for _, args := range [][]string{{"task", "retry", "no-such-task"}, {"task", "frobnicate", info.ID}, {"task", "retry"}} {
		if code, _, stderr := enqueue(t, env, args...); code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("enqueue %v: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
}

// `enqueue queue purge` empties one state of one queue, says how many it
// deleted, and refuses running tasks and unknown queues.
func TestQueuePurge(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	c := client(t, stack)
	var bad []string
	for range 3 {
		info, err := c.Enqueue(asynq.NewTask(tasks.TypeTokenRefresh, []byte(`{}`), asynq.Queue(tasks.QueueCritical)))
		if err != nil {
			t.Fatal(err)
		}
		bad = append(bad, info.ID)
	}
	good := enqueued(t, env, "refresh", "--location", "loc1")
	testenv.Eventually(t, 30*time.Second, "three archived tasks and one completed", func() bool {
		q := queueView(t, env, tasks.QueueCritical)
		return q.Archived == 3 && q.Completed == 1
	})

	for _, args := range [][]string{
		{"queue", "purge", tasks.QueueCritical, "--state", "active"},
		{"queue", "purge", tasks.QueueCritical},
		{"queue", "purge", tasks.QueueCritical, "--state", "dead"},
		{"queue", "purge", "no-such-queue", "--state", "archived"},
		{"queue", "drain", tasks.QueueCritical, "--state", "archived"},
	} {
		if code, _, stderr := enqueue(t, env, args...); code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("enqueue %v: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
	if q := queueView(t, env, tasks.QueueCritical); q.Archived != 3 {
		t.Fatalf("a refused purge deleted tasks: %+v", q)
	}

	code, stdout, stderr := enqueue(t, env, "queue", "purge", tasks.QueueCritical, "--state", "archived")
	if code != 0 || strings.TrimSpace(stdout) != "queue critical: deleted 3 archived tasks" {
		t.Fatalf("purge: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if q := queueView(t, env, tasks.QueueCritical); q.Archived != 0 || q.Completed != 1 {
		t.Errorf("after purge: %+v; want no archived task and the completed one kept", q)
	}
	for _, id := range bad {
		if code, _, _ := enqueue(t, env, "result", id); code != 2 {
			t.Errorf("purged task %s is still there", id)
		}
	}
	if v := taskState(t, env, good); v.State != "completed" {
		t.Errorf("the completed task: %+v", v)
	}
}

func queueView(t *testing.T, env map[string]string, name string) app.QueueView {
	t.Helper()
	for _, q := range inspectJSON(t, env, "queues").Queues {
		if q.Queue == name {
			return q
		}
	}
	return app.QueueView{}
}

// The commands that only read or act on the queue need no database, GHL
// or key: REDIS_URL alone.
func TestQueueCommandsNeedOnlyRedis(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_URL": testenv.RedisURL(t)}
	code, stdout, stderr := enqueue(t, env, "inspect", "registered", "--json")
	if code != 0 {
		t.Fatalf("inspect registered: exit %d: %s", code, stderr)
	}
	var v app.InspectView
	decode(t, stdout, &v)
	if len(v.Registered) != len(tasks.Types()) {
		t.Errorf("registered: %s", stdout)
	}
}
