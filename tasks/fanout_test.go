package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// The refresh fan-out reads its locations page by page (2,500 due: three
// pages) and enqueues each due one once, none that is not due. A scheduled
// fan-out's result holds the count alone and its children, batches of
// locations, are kept minutes; one that someone waits for lists its
// children, a task per location, sorted, and keeps them for the wait. A
// retry of either enqueues nothing twice.
func TestRefreshFanOutPagesAndCounts(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	const due, later = 2500, 30
	now := time.Now()
	var rows []store.Credential
	for i := range due + later {
		exp := now.Add(time.Hour)
		if i >= due {
			exp = now.Add(48 * time.Hour)
		}
		rows = append(rows, store.Credential{LocationID: fmt.Sprintf("pg%05d", i), UserType: store.UserTypeLocation,
			AccessTokenEnc: "x", RefreshTokenEnc: "x", ExpiresAt: exp.UTC(), Status: store.StatusActive})
	}
	if err := storetest.DB(t, stack.DatabaseURL).CreateInBatches(&rows, 500).Error; err != nil {
		t.Fatal(err)
	}
	rc := stack.Redis(t)
	client := asynq.NewClientFromRedisClient(rc)
	insp := asynq.NewInspectorFromRedisClient(rc)
	h := &tasks.TokenHandlers{Locations: stack.Store, Enqueuer: client, Redis: rc, Window: 4 * time.Hour}
	// Only the fan-outs run (on a queue of their own): the children stay
	// pending, to be looked at.
	const queue = "fanout-test"
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeTokenRefreshDue, h.HandleRefreshDue)
	srv := asynq.NewServerFromRedisClient(rc, asynq.Config{Concurrency: 1, Queues: map[string]int{queue: 1},
		TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	run := func(keep time.Duration, id string) tasks.FanOutResult {
		t.Helper()
		task, err := tasks.NewRefreshDueTask(false, false, keep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, asynq.Queue(queue), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		info, err := tasks.WaitTask(ctx, insp, queue, id, nil)
		if err != nil || info.State != asynq.TaskStateCompleted {
			t.Fatalf("fan-out %s: %v %+v", id, err, info)
		}
		var res tasks.FanOutResult
		if err := json.Unmarshal(info.Result, &res); err != nil {
			t.Fatalf("result %s: %v", info.Result, err)
		}
		if err := insp.DeleteTask(queue, id); err != nil {
			t.Fatal(err)
		}
		return res
	}
	pending := func() int {
		t.Helper()
		q, err := insp.GetQueueInfo(tasks.QueueCritical)
		if err != nil {
			t.Fatal(err)
		}
		return q.Pending
	}

	// A scheduled fan-out's children are batches of RefreshBatch, which
	// between them name every due location once.
	batches := (due + tasks.RefreshBatch - 1) / tasks.RefreshBatch
	scheduled := run(0, "scheduled")
	if scheduled.Count != due || scheduled.Enqueued != nil {
		t.Errorf("scheduled fan-out: count %d, %d listed; want %d and none", scheduled.Count, len(scheduled.Enqueued), due)
	}
	if got := pending(); got != batches {
		t.Fatalf("%d refresh tasks pending, want %d", got, batches)
	}
	named := map[string]bool{}
	for page := 1; ; page++ {
		infos, err := insp.ListPendingTasks(tasks.QueueCritical, asynq.PageSize(100), asynq.Page(page))
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 0 {
			break
		}
		for _, info := range infos {
			var p tasks.RefreshBatchPayload
			if err := json.Unmarshal(info.Payload, &p); err != nil || info.Type != tasks.TypeTokenRefreshBatch || !p.Due ||
				len(p.LocationIDs) == 0 || len(p.LocationIDs) > tasks.RefreshBatch {
				t.Fatalf("child %s %s: %v", info.Type, info.Payload, err)
			}
			for _, loc := range p.LocationIDs {
				if named[loc] {
					t.Fatalf("%s in two batches", loc)
				}
				named[loc] = true
			}
		}
	}
	if len(named) != due {
		t.Fatalf("the batches name %d locations, want the %d due", len(named), due)
	}
	// Its retry (the same task id) enqueues nothing more.
	if again := run(0, "scheduled"); again.Count != due || pending() != batches {
		t.Errorf("retried fan-out: count %d, %d pending; want %d and %d", again.Count, pending(), due, batches)
	}

	waited := run(2*time.Hour, "waited")
	if waited.Count != due || len(waited.Enqueued) != due {
		t.Fatalf("waited-for fan-out: count %d, %d listed; want %d of each", waited.Count, len(waited.Enqueued), due)
	}
	seen := map[string]bool{}
	for i, c := range waited.Enqueued {
		if want := fmt.Sprintf("pg%05d", i); c.LocationID != want || seen[c.TaskID] {
			t.Fatalf("child %d: %+v, want location %s once", i, c, want)
		}
		seen[c.TaskID] = true
	}
	if got := pending(); got != batches+due {
		t.Fatalf("%d refresh tasks pending, want %d", got, batches+due)
	}
	kept, err := insp.GetTaskInfo(tasks.QueueCritical, waited.Enqueued[0].TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if kept.Retention != 2*time.Hour {
		t.Errorf("a waited-for child is kept %s, want 2h", kept.Retention)
	}
	var quiet tasks.RefreshPayload
	if json.Unmarshal(kept.Payload, &quiet); quiet.Quiet {
		t.Error("a waited-for child writes no result")
	}
	// The scheduled fan-out's children are the others.
	list, err := insp.ListPendingTasks(tasks.QueueCritical, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	var sawScheduled bool
	for _, info := range list {
		if seen[info.ID] {
			continue
		}
		sawScheduled = true
		if info.Retention != tasks.ScheduledRetention || info.Type != tasks.TypeTokenRefreshBatch {
			t.Errorf("a scheduled child: %s kept %s; want a batch kept %s", info.Type, info.Retention, tasks.ScheduledRetention)
		}
	}
	if !sawScheduled {
		t.Error("no scheduled child among the first 100 pending")
	}
}
