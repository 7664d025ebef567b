package tasks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// A run whose location has spent its limit does not wait in its worker
// slot: it hands the rest of its pass to a follow-up scheduled for when
// the limiter grants again, which carries the pass on. Every patient is
// sent once, none fails, GHL answers no 429.
func TestSyncHandsItsSlotBackWhileTheLimitIsSpent(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{EnforceRateLimit: true, RateLimit: 20, RateInterval: 2 * time.Second},
		func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.HandBackAfter = 500 * time.Millisecond }, "loc1")
	e.seed(t, "loc1", 30, 0)
	task, err := tasks.NewPatientsSyncTask("loc1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	first := finished(t, e.insp, info.ID, 2*time.Minute)
	if !strings.Contains(string(first.Result), "rate limit is spent") {
		t.Errorf("first run's result %s, want it handed back to the limiter", first.Result)
	}
	res, last := pass(t, e.insp, info.ID)
	if last.State != asynq.TaskStateCompleted || last.Retried != 0 {
		t.Fatalf("pass ended %s after %d failures: %s", last.State, last.Retried, last.LastErr)
	}
	if res.Created != 30 || res.FailedCount != 0 || res.Batch < 2 {
		t.Errorf("pass result %+v, want 30 created in more than one run", res)
	}
	if n := len(e.Fake.Contacts("loc1")); n != 30 {
		t.Errorf("GHL holds %d contacts, want 12", n)
	}
	if n := e.Fake.RateLimited("loc1"); n != 0 {
		t.Errorf("GHL answered %d 429s", n)
	}
}
