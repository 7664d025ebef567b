package tasks_test

import (
	"context"
	"sync/atomic"
	"testing"

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
