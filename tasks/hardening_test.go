package tasks_test

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// runCounter records the engine's ended runs, as the metrics count them.
type runCounter struct {
	mu sync.Mutex
	n  map[[2]string]int
}

func (c *runCounter) observe(kind, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]string]int{}
	}
	c.n[[2]string{kind, outcome}]++
}

func (c *runCounter) get(kind, outcome string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[[2]string{kind, outcome}]
}

// Issue 14, item 4: a sync run that fails says why in an ERROR line,
// counts in the runs metric by outcome, and shows its reason on the status
// page.
func TestSyncFailureIsLoggedCountedAndShown(t *testing.T) {
	t.Parallel()
	runs := &runCounter{}
	e := newSyncEnv(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) {
		h.ObserveRun = runs.observe
	}, "loc1")
	e.seed(t, "loc1", 5, 0)
	e.Fake.InjectFault(ghltest.Fault{Path: "/contacts/upsert", Status: 403, Body: `{"message":"The token does not have access to this location."}`})

	res, err := e.h.Run(context.Background(), syncer.Request{Kind: syncer.KindPatients, Location: "loc1", RunID: "run-1"})
	if err == nil || res.Outcome != syncer.OutcomeError {
		t.Fatalf("run: %+v, %v; want it to fail", res, err)
	}
	line := regexp.MustCompile(`(?m)^.*level=ERROR msg="sync run failed".*location=loc1.*outcome=error.*reason=.*403.*$`)
	if !line.MatchString(e.logs.String()) {
		t.Errorf("no ERROR line with the run's reason:\n%s", e.logs)
	}
	if n := runs.get(syncer.KindPatients, syncer.OutcomeError); n != 1 {
		t.Errorf("runs counted as %s/%s: %d, want 1", syncer.KindPatients, syncer.OutcomeError, n)
	}
	locs, err := (&web.Status{Source: e.Store, Log: slog.New(slog.DiscardHandler)}).Locations(context.Background())
	if err != nil || len(locs) != 1 {
		t.Fatalf("status: %+v, %v", locs, err)
	}
	if s := locs[0].Syncs[syncer.KindPatients]; s == nil || s.Outcome != syncer.OutcomeError || !strings.Contains(s.Error, "403") {
		t.Errorf("status page shows the patients sync as %+v; want the error and its reason", s)
	}

	// A run that cannot start (the location is unknown) is logged too.
	if _, err := e.h.Run(context.Background(), syncer.Request{Kind: syncer.KindPatients, Location: "nowhere"}); err == nil {
		t.Fatal("sync of an unknown location did not fail")
	}
	if !regexp.MustCompile(`level=WARN msg="sync run failed".*location=nowhere.*reason=`).MatchString(e.logs.String()) {
		t.Errorf("no WARN line for the run that could not start:\n%s", e.logs)
	}
}

// Issue 14, item 12: two patients whose emails differ only in case are one
// contact to GHL. The sync reports a conflict on both, naming the other,
// reports neither as updated, and GHL holds one contact for them.
func TestSyncReportsPatientsGHLWouldMergeAsAConflict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// apart: the second patient arrives after the first was synced.
		apart bool
	}{{"in one run", false}, {"in two runs", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupSync(t, ghltest.Options{}, nil, "loc1")
			ctx := context.Background()
			ann := store.Patient{LocationID: "loc1", ExternalID: "p-ann", FirstName: "Ann", LastName: "Lee", Email: "Ann@x.test"}
			ann2 := store.Patient{LocationID: "loc1", ExternalID: "p-ann2", FirstName: "Annie", LastName: "Lee", Email: "ann@x.test"}
			bob := store.Patient{LocationID: "loc1", ExternalID: "p-bob", FirstName: "Bob", LastName: "Lee", Email: "bob@x.test"}
			first := []store.Patient{ann, ann2, bob}
			if tc.apart {
				first = []store.Patient{ann, bob}
			}
			if err := e.Store.InsertPatients(ctx, first); err != nil {
				t.Fatal(err)
			}
			res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
			if tc.apart {
				if res.Created != 2 || res.FailedCount != 0 {
					t.Fatalf("first sync: %+v", res)
				}
				if err := e.Store.InsertPatients(ctx, []store.Patient{ann2}); err != nil {
					t.Fatal(err)
				}
				res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
			}
			if res.Updated != 0 || res.FailedCount != 2 {
				t.Errorf("result %+v; want the two conflicting patients failed and none updated", res)
			}
			failed := map[string]string{}
			for _, f := range res.Failed {
				failed[f.ExternalID] = f.Reason
			}
			for id, other := range map[string]string{"p-ann": "p-ann2", "p-ann2": "p-ann"} {
				if r := failed[id]; !strings.Contains(r, "conflict") || !strings.Contains(r, other) {
					t.Errorf("%s reported as %q; want a conflict naming %s", id, r, other)
				}
				p, err := e.Store.PatientByExternalID(ctx, "loc1", id)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(p.Sync.LastError, "conflict") || !strings.Contains(p.Sync.LastError, other) {
					t.Errorf("%s: recorded error %q; want the conflict naming %s", id, p.Sync.LastError, other)
				}
			}
			var anns []ghltest.Contact
			for _, c := range e.Fake.Contacts("loc1") {
				if strings.EqualFold(c.Email, "ann@x.test") {
					anns = append(anns, c)
				}
			}
			if len(anns) != 1 || len(e.Fake.Contacts("loc1")) != 2 {
				t.Fatalf("GHL holds %d contacts, %d of them Ann's: %+v", len(e.Fake.Contacts("loc1")), len(anns), anns)
			}

			// The next sync puts back the fields of the patient whose
			// contact it is, and goes on reporting the other until it
			// changes: an incremental pass too, though neither row changed
			// since the last one (both failed).
			e.age(t, "patients", "loc1")
			res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
			if res.Updated != 1 || res.FailedCount != 1 || len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Reason, "conflict") {
				t.Fatalf("next sync: %+v; want the contact's owner sent again and the other still failed", res)
			}
			holder, err := e.Store.PatientByExternalID(ctx, "loc1", res.Failed[0].ExternalID)
			if err != nil {
				t.Fatal(err)
			}
			if holder.Sync.ContactID != "" {
				t.Errorf("the merged patient %s holds contact %s", holder.ExternalID, holder.Sync.ContactID)
			}
		})
	}
}

// Issue 14, item 9: Redis lost a pass's next task (or the task of a run
// whose worker died). The run log says so, and the recovery enqueues the
// task again under its id; the pass then ends with every patient synced
// once. A run whose lock is held, and a task still queued, are left alone.
func TestSyncRecoveryTakesUpPassesRedisLost(t *testing.T) {
	t.Parallel()
	locs := []string{"loc1", "loc2", "loc3", "loc4", "loc5"}
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.BatchSize = 10 }, locs...)
	ctx := context.Background()
	for _, loc := range locs {
		e.seed(t, loc, 30, 0)
	}
	rec := &tasks.SyncRecovery{Runs: e.Store, Enqueuer: e.client, Locks: e.h.Locks, Redis: e.Redis(t), Log: e.h.Log}
	if err := rec.Validate(); err != nil {
		t.Fatal(err)
	}

	// loc1: the first run handed over to a follow-up that Redis lost.
	res, err := e.h.Run(ctx, syncer.Request{Kind: syncer.KindPatients, Location: "loc1", RunID: "first-loc1",
		Continue: func(context.Context, syncer.Result, time.Duration) (string, error) { return "lost-next-loc1", nil }})
	if err != nil || res.Outcome != syncer.OutcomeContinued || res.Created != 10 {
		t.Fatalf("first run: %+v, %v", res, err)
	}
	// loc2: a run whose worker died with its task, its lock expired.
	if err := e.Store.StartSyncRun(ctx, &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc2", TaskID: "dead-loc2"}); err != nil {
		t.Fatal(err)
	}
	// loc4: a run that lost its lock with Redis ended in error, and asynq
	// could not put its task back for a retry.
	lost := &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc4", TaskID: "failed-loc4"}
	if err := e.Store.StartSyncRun(ctx, lost); err != nil {
		t.Fatal(err)
	}
	lost.Outcome, lost.Error = syncer.OutcomeError, "sync lock lost"
	if err := e.Store.FinishSyncRun(ctx, lost); err != nil {
		t.Fatal(err)
	}
	// loc5: a run that ended in error whose retry is in the queue.
	retried, err := tasks.NewPatientsSyncTask("loc5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Enqueue(retried, asynq.TaskID("retry-loc5"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waiting := &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc5", TaskID: "retry-loc5"}
	if err := e.Store.StartSyncRun(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	waiting.Outcome = syncer.OutcomeError
	if err := e.Store.FinishSyncRun(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	// loc3: a run that is still running: it holds the lock.
	lk, err := e.h.Locks.Acquire(ctx, "loc3")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(ctx, nil)
	if err := e.Store.StartSyncRun(ctx, &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc3", TaskID: "alive-loc3"}); err != nil {
		t.Fatal(err)
	}

	got, err := rec.RecoverOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tasks.Recovered{
		"loc1": {Kind: syncer.KindPatients, LocationID: "loc1", TaskID: "lost-next-loc1", After: "p-0009"},
		"loc2": {Kind: syncer.KindPatients, LocationID: "loc2", TaskID: "dead-loc2", After: ""},
		"loc4": {Kind: syncer.KindPatients, LocationID: "loc4", TaskID: "failed-loc4", After: ""},
	}
	if len(got) != len(want) {
		t.Errorf("recovered %+v, want %+v", got, want)
	}
	for _, r := range got {
		if r != want[r.LocationID] {
			t.Errorf("recovered %+v, want %+v", r, want[r.LocationID])
		}
	}
	// Asked again while the tasks are queued or done: nothing twice.
	if again, err := rec.RecoverOnce(ctx); err != nil || len(again) != 0 {
		t.Errorf("second look: %+v, %v; want nothing", again, err)
	}

	res, info := pass(t, e.insp, "lost-next-loc1")
	if info.State != asynq.TaskStateCompleted || res.Outcome != syncer.OutcomeCompleted || res.Batch != 3 ||
		res.Created != 30 || res.Scanned != 30 {
		t.Errorf("loc1's pass: %s, %+v; want it completed over 3 runs, 30 created in all", info.State, res)
	}
	res, info = pass(t, e.insp, "dead-loc2")
	if info.State != asynq.TaskStateCompleted || res.Outcome != syncer.OutcomeCompleted || res.Created != 30 {
		t.Errorf("loc2's pass: %s, %+v", info.State, res)
	}
	res, info = pass(t, e.insp, "failed-loc4")
	if info.State != asynq.TaskStateCompleted || res.Outcome != syncer.OutcomeCompleted || res.Created != 30 {
		t.Errorf("loc4's pass: %s, %+v", info.State, res)
	}
	for _, loc := range []string{"loc1", "loc2", "loc4"} {
		e.checkContacts(t, loc, 30)
		if n := e.Fake.Stats().ContactCreates[loc]; n != 30 {
			t.Errorf("%s: %d contacts created, want 30", loc, n)
		}
	}
	for _, loc := range []string{"loc3", "loc5"} {
		if n := len(e.Fake.Contacts(loc)); n != 0 {
			t.Errorf("%s, whose run holds the lock or whose retry is queued, was synced: %d contacts", loc, n)
		}
	}
}

// Issue 14, item 6, in process: a run told the worker is shutting down
// takes no new record, lets the calls it made finish, and hands the rest
// over; the follow-up covers every record the run left, so each patient
// ends with one contact.
func TestSyncHandsOverAtShutdown(t *testing.T) {
	t.Parallel()
	const n = 60
	shuttingDown := make(chan struct{})
	var once sync.Once
	e := newSyncEnv(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) {
		h.Limiter = &hookLimiter{RateLimiter: h.Limiter, onWait: func(n int64) {
			if n == 15 {
				once.Do(func() { close(shuttingDown) })
			}
		}}
	}, "loc1")
	e.seed(t, "loc1", n, 0)
	ctx := context.Background()

	stopping := *e.h
	stopping.ShuttingDown = shuttingDown
	var handed *syncer.Result
	res, err := stopping.Run(ctx, syncer.Request{Kind: syncer.KindPatients, Location: "loc1", RunID: "run-1",
		Continue: func(_ context.Context, pass syncer.Result, _ time.Duration) (string, error) {
			handed = &pass
			return "run-2", nil
		}})
	if err != nil || res.Outcome != syncer.OutcomeContinued || handed == nil || res.ContinuedBy != "run-2" {
		t.Fatalf("run at shutdown: %+v, %v; want it handed over", res, err)
	}
	if res.Created >= n || res.Created == 0 || res.FailedCount != 0 {
		t.Errorf("run at shutdown: %+v; want some patients created, none failed", res)
	}
	createdAtShutdown := e.Fake.Stats().ContactCreates["loc1"]
	if createdAtShutdown != res.Created {
		t.Errorf("GHL created %d contacts, the run counted %d: a call was left unaccounted", createdAtShutdown, res.Created)
	}

	res, err = e.h.Run(ctx, syncer.Request{Kind: syncer.KindPatients, Location: "loc1", RunID: "run-2",
		After: handed.Cursor, Batch: 2, Pass: handed})
	if err != nil || res.Outcome != syncer.OutcomeCompleted || res.Created != n || res.FailedCount != 0 {
		t.Errorf("follow-up: %+v, %v; want the pass completed with %d created", res, err, n)
	}
	e.checkContacts(t, "loc1", n)
	if got := e.Fake.Stats().ContactCreates["loc1"]; got != n {
		t.Errorf("%d contacts created, want %d", got, n)
	}
}
