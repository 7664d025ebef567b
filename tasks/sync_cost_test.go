package tasks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/syncer"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// A new patient costs the database three statements: what is sent,
// recorded before the call for echo suppression; the create's intent,
// before the call too; and GHL's contact, after it. The rest of a run's
// statements are its own (its run log, settings, pages, watermark), not
// each record's. At GHL's limit a location writes up to ten contacts a
// second, so these are what a worker's database work grows with.
func TestSyncStatementsPerNewContact(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, stack *storetest.Stack) {
		st, err := store.Open(context.Background(), stack.DatabaseURL, testenv.Cipher(t, stack.Key), store.CountStatements(&n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		h.State = st
	}, "loc1")
	const patients = 90
	e.seed(t, "loc1", patients, 0)
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Created != patients || res.Batch != 1 {
		t.Fatalf("pass result %+v, want %d created in one run", res, patients)
	}
	const perContact, perRun = 3, 20
	if got := n.Load(); got > perContact*patients+perRun {
		t.Errorf("the sync of %d new patients sent %d SQL statements (%.1f each), want at most %d each and %d for the run",
			patients, got, float64(got)/patients, perContact, perRun)
	}
}

// The calls of a run wait for their location's window one at a time: a
// run at its location's limit asks the limiter's Redis about once per
// grant, not once per call waiting each time a grant frees.
func TestSyncCallsWaitForTheirLimitInTurn(t *testing.T) {
	t.Parallel()
	lim := &turnLimiter{}
	e := setupSync(t, ghltest.Options{EnforceRateLimit: true, RateLimit: 20, RateInterval: 2 * time.Second},
		func(h *tasks.SyncHandlers, _ *storetest.Stack) {
			lim.RateLimiter, h.Limiter = h.Limiter, lim
			h.HandBackAfter = -1 // the run waits its windows out
		}, "loc1")
	e.seed(t, "loc1", 50, 0)
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Created != 50 || res.Batch != 1 {
		t.Fatalf("pass result %+v, want 50 created in one run", res)
	}
	if n := lim.most.Load(); n != 1 {
		t.Errorf("up to %d calls of the run waited for the limiter at once, want 1", n)
	}
	if n := e.Fake.RateLimited("loc1"); n != 0 {
		t.Errorf("GHL answered %d 429s", n)
	}
}

// turnLimiter records the most Waits in progress at once.
type turnLimiter struct {
	syncer.RateLimiter
	waiting, most atomic.Int64
}

func (l *turnLimiter) Wait(ctx context.Context, loc string) (ratelimit.Grant, error) {
	n := l.waiting.Add(1)
	defer l.waiting.Add(-1)
	for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
	}
	return l.RateLimiter.Wait(ctx, loc)
}
