package tasks_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// Issue 14, test 6: a worker process gets SIGTERM in the middle of a sync
// (at GHL's pace, with calls in flight). It exits within 5 s with no call
// left in flight, its run hands the rest of the pass to a follow-up task,
// and another worker's follow-up finishes the pass: every patient has one
// contact, none was created twice.
func TestSyncSurvivesSIGTERMMidSync(t *testing.T) {
	t.Parallel()
	const n = 300
	e, rec := setupProcesses(t, ghltest.Options{EnforceRateLimit: true}, n, 0, "loc1")
	// Each upsert takes a while, so that calls are in flight at SIGTERM.
	e.Fake.InjectFault(ghltest.Fault{Path: "/contacts/upsert", Latency: 300 * time.Millisecond})

	first := startWorker(t, e, 10)
	task, _ := tasks.NewPatientsSyncTask("loc1")
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the sync to be under way", func() bool {
		return e.Fake.Stats().ContactCreates["loc1"] >= 40 && rec.inFlight.Load() > 0
	})
	sent := time.Now()
	code := first.Stop(10 * time.Second)
	took := time.Since(sent)
	if code != 0 || took > 5*time.Second {
		t.Fatalf("the worker exited with %d after %s; want 0 within 5 s", code, took.Round(time.Millisecond))
	}
	t.Logf("the worker exited %s after SIGTERM", took.Round(time.Millisecond))
	testenv.Eventually(t, 10*time.Second, "the fake to finish the requests it got", func() bool { return rec.inFlight.Load() == 0 })
	if a := rec.abandoned.Load(); a != 0 {
		t.Errorf("%d GHL calls were left in flight by the exit", a)
	}
	createdByFirst := e.Fake.Stats().ContactCreates["loc1"]
	if createdByFirst >= n {
		t.Fatalf("the sync was over before SIGTERM (%d contacts)", createdByFirst)
	}

	runs, err := e.Store.SyncRuns(context.Background(), "loc1", syncer.KindPatients, 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("run log: %+v, %v; want one run", runs, err)
	}
	r := runs[0]
	if r.TaskID != info.ID || r.Outcome != syncer.OutcomeContinued || r.ContinuedBy == "" || r.FinishedAt == nil ||
		r.Created != createdByFirst || r.Failed != 0 {
		t.Fatalf("the stopped run: %+v; want it continued, with the %d contacts GHL created", r, createdByFirst)
	}
	next, err := e.insp.GetTaskInfo(tasks.QueueDefault, r.ContinuedBy)
	if err != nil || next.State != asynq.TaskStatePending {
		t.Fatalf("follow-up %s: %+v, %v; want it waiting in the queue", r.ContinuedBy, next, err)
	}
	if !strings.Contains(first.Output.String(), "outcome=continued") {
		t.Errorf("the stopped worker did not log its hand-over:\n%s", first.Output)
	}

	startWorker(t, e, 10)
	res, last := pass(t, e.insp, r.ContinuedBy)
	// The follow-up may hand its slot back to the limiter and continue
	// again (the fake enforces 100 a 10 s): 2 runs or more.
	if last.State != asynq.TaskStateCompleted || res.Outcome != syncer.OutcomeCompleted || res.Batch < 2 ||
		res.Created != n || res.FailedCount != 0 {
		t.Errorf("the pass after SIGTERM: %s, %+v; want it completed after the follow-up, %d created", last.State, res, n)
	}
	e.checkContacts(t, "loc1", n)
	if got := e.Fake.Stats().ContactCreates["loc1"]; got != n {
		t.Errorf("%d contacts created, want %d: no duplicates", got, n)
	}
	noFailures(t, e.insp)
}

// Issue 14, item 9, with worker processes: a worker is killed mid-sync and
// Redis loses asynq's keys (restarted without persistence), so the sync's
// task is gone. Another worker finds the unfinished run in the run log and
// enqueues its task again within a minute; the pass completes with every
// patient's contact created once.
func TestSyncResumesAfterRedisLosesTheQueue(t *testing.T) {
	t.Parallel()
	const n = 150
	e, _ := setupProcesses(t, ghltest.Options{EnforceRateLimit: true}, n, 0, "loc1")
	first := startWorker(t, e, 10)
	task, _ := tasks.NewPatientsSyncTask("loc1")
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the sync to be under way", func() bool {
		return e.Fake.Stats().ContactCreates["loc1"] >= 30
	})
	first.Kill()
	lostAt := time.Now()
	rc := e.Redis(t)
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "asynq:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("asynq keys: %v, %v", keys, err)
	}
	if err := rc.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.insp.GetTaskInfo(tasks.QueueDefault, info.ID); err == nil {
		t.Fatal("the sync task is still in Redis")
	}
	if e.Fake.Stats().ContactCreates["loc1"] >= n {
		t.Fatal("the sync was over before the kill")
	}

	second := startWorker(t, e, 10)
	testenv.Eventually(t, time.Minute, "the lost task to be enqueued again", func() bool {
		_, err := e.insp.GetTaskInfo(tasks.QueueDefault, info.ID)
		return err == nil
	})
	t.Logf("the sync was taken up %s after Redis lost it", time.Since(lostAt).Round(time.Second))
	res, last := pass(t, e.insp, info.ID)
	if last.State != asynq.TaskStateCompleted || res.Outcome != syncer.OutcomeCompleted || res.FailedCount != 0 {
		t.Errorf("the pass after the loss: %s, %+v", last.State, res)
	}
	if !strings.Contains(second.Output.String(), "took up an interrupted sync pass") {
		t.Errorf("the worker did not say it took the pass up:\n%s", second.Output)
	}
	e.checkContacts(t, "loc1", n)
	if got := e.Fake.Stats().ContactCreates["loc1"]; got != n {
		t.Errorf("%d contacts created, want %d", got, n)
	}
}
