package tasks_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// watermark returns the location's watermark of kind, failing the test
// when there is none.
func (e *syncEnv) watermark(t testing.TB, loc, kind string) time.Time {
	t.Helper()
	w, ok, err := e.Store.Watermark(context.Background(), loc, kind)
	if err != nil || !ok {
		t.Fatalf("watermark of %s %s: %v, %v", loc, kind, ok, err)
	}
	return w
}

// age makes every row of loc's table an hour older than now, as if the
// clinic had last changed them then: out of the next pass's read, whose
// overlap (10 minutes) would otherwise cover rows written by the test a
// moment ago.
func (e *syncEnv) age(t testing.TB, table, loc string) {
	t.Helper()
	e.exec(t, `UPDATE `+table+` SET updated_at = ? WHERE location_id = ?`, time.Now().Add(-time.Hour).UTC(), loc)
}

// Issue 15, must-show 1: after the first pass (which reads every row), a
// pass reads only the rows changed since the last completed one, deleted_at
// included; a row changed without its updated_at is left to the full pass,
// which finds every change and every deletion, rows gone from the table
// included, and sends only what changed.
func TestSyncIncrementalReadsOnlyChangedRows(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 300, 0)
	e.age(t, "patients", "loc1")
	first := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if first.Read != syncer.ReadFull || first.Created != 300 || first.ReadAt == nil {
		t.Fatalf("first pass: %+v, want a full read creating 300", first)
	}
	if w := e.watermark(t, "loc1", syncer.KindPatients); !w.Equal(*first.ReadAt) {
		t.Errorf("watermark %s, want the first pass's read time %s", w, first.ReadAt)
	}

	calls := e.calls("loc1")
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Scanned != 0 || e.calls("loc1") != calls {
		t.Errorf("unchanged pass: %+v, %d GHL calls; want a changed-rows read of nothing, no call", res, e.calls("loc1")-calls)
	}

	// As the clinic system writes: updated_at with every change. A
	// deletion by deleted_at is a change too.
	e.exec(t, `UPDATE patients SET city = 'Shelbyville', updated_at = CURRENT_TIMESTAMP WHERE external_id IN ('p-0010', 'p-0020', 'p-0030')`)
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP WHERE external_id = 'p-0040'`)
	e.exec(t, `UPDATE patients SET deleted_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE external_id = 'p-0050'`)
	calls = e.calls("loc1")
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Scanned != 4 || res.Updated != 3 || res.Unchanged != 1 || res.Deleted != 1 {
		t.Errorf("pass after 4 changed rows and a deleted one: %+v; want 4 scanned (3 updated, 1 unchanged: its hash decides), 1 deleted", res)
	}
	// Three updates, a tag and DND for the deleted patient.
	if n := e.calls("loc1") - calls; n != 5 {
		t.Errorf("%d GHL calls, want 5", n)
	}
	e.age(t, "patients", "loc1")

	// A clinic system that does not maintain updated_at: the incremental
	// pass does not see its changes, the full pass sees them all, and the
	// rows gone from the table.
	e.exec(t, `UPDATE patients SET city = 'Capital City' WHERE external_id IN ('p-0100', 'p-0101')`)
	e.exec(t, `UPDATE patients SET deleted_at = CURRENT_TIMESTAMP WHERE external_id = 'p-0102'`)
	e.exec(t, `DELETE FROM patients WHERE external_id IN ('p-0103', 'p-0104')`)
	calls = e.calls("loc1")
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Scanned != 0 || res.Deleted != 0 || e.calls("loc1") != calls {
		t.Errorf("incremental pass after changes without updated_at: %+v, want nothing seen", res)
	}
	res = e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1")
	if res.Read != syncer.ReadFull || res.Scanned != 300-4 || res.Updated != 2 || res.Unchanged != 300-6 || res.Deleted != 3 || res.FailedCount != 0 {
		t.Errorf("full pass: %+v; want 296 scanned, 2 updated, 3 deleted", res)
	}
	if n := e.calls("loc1") - calls; n != 2+3*2 {
		t.Errorf("full pass: %d GHL calls, want 8 (2 updates, 3 deletions of 2 calls)", n)
	}
	cities := map[string]int{}
	deleted := 0
	for id, cs := range e.contactsByPatientID(t, "loc1") {
		if len(cs) != 1 {
			t.Errorf("%s: %d contacts", id, len(cs))
		}
		cities[cs[0].City]++
		if slices.Contains(cs[0].Tags, store.DeletedTag) {
			deleted++
		}
	}
	if cities["Shelbyville"] != 3 || cities["Capital City"] != 2 || deleted != 4 {
		t.Errorf("GHL: cities %v, %d tagged deleted; want 3 Shelbyville, 2 Capital City, 4 deleted", cities, deleted)
	}
	calls = e.calls("loc1")
	if res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1"); res.Created+res.Updated+res.Deleted != 0 || e.calls("loc1") != calls {
		t.Errorf("second full pass: %+v, %d calls; want nothing sent", res, e.calls("loc1")-calls)
	}
}

// Issue 15: a clinic transaction that stamped updated_at before the last
// pass read and committed after it (updated_at before the watermark, within
// the overlap) is picked up by the next pass; one older than the overlap is
// the full pass's.
func TestSyncIncrementalPicksUpALateCommit(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 50, 0)
	e.age(t, "patients", "loc1")
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	mark := e.watermark(t, "loc1", syncer.KindPatients)

	late := mark.Add(-syncer.DefaultOverlap + time.Minute)
	e.exec(t, `UPDATE patients SET city = 'Late', updated_at = ? WHERE external_id = 'p-0007'`, late)
	tooLate := mark.Add(-syncer.DefaultOverlap - time.Minute)
	e.exec(t, `UPDATE patients SET city = 'Too late', updated_at = ? WHERE external_id = 'p-0008'`, tooLate)
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Since == nil || !res.Since.Equal(mark.Add(-syncer.DefaultOverlap)) {
		t.Errorf("pass: read %s since %v, want changed rows since the watermark less %s", res.Read, res.Since, syncer.DefaultOverlap)
	}
	if res.Scanned != 1 || res.Updated != 1 {
		t.Errorf("pass after a late commit: %+v, want the late row updated", res)
	}
	if res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1"); res.Updated != 1 {
		t.Errorf("full pass: %+v, want the row older than the overlap updated", res)
	}
	cities := map[string]string{}
	for id, cs := range e.contactsByPatientID(t, "loc1") {
		cities[id] = cs[0].City
	}
	if cities["p-0007"] != "Late" || cities["p-0008"] != "Too late" {
		t.Errorf("GHL cities %q, %q", cities["p-0007"], cities["p-0008"])
	}
}

// Issue 15: only a completed pass moves the watermark, to the database's
// clock at the start of the pass's read, across its batches; a pass with a
// record GHL did not answer leaves it, so that the next pass reads that
// record again; a dry run and a --since pass leave it too.
func TestSyncWatermarkMovesOnlyWithACompletedPass(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.BatchSize, h.PageSize = 40, 25 }, "loc1")
	e.seed(t, "loc1", 100, 0)
	e.age(t, "patients", "loc1")
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Batch != 3 || res.Created != 100 {
		t.Fatalf("first pass: %+v, want 3 runs", res)
	}
	mark := e.watermark(t, "loc1", syncer.KindPatients)
	if !mark.Equal(*res.ReadAt) {
		t.Errorf("watermark %s, want the pass's first read %s", mark, res.ReadAt)
	}

	e.exec(t, `UPDATE patients SET city = 'Shelbyville', updated_at = CURRENT_TIMESTAMP WHERE external_id IN ('p-0001', 'p-0002')`)
	contact := e.patientState(t, "loc1", "p-0002").ContactID
	remove := e.Fake.InjectFault(ghltest.Fault{Method: "PUT", Path: "/contacts/" + contact, Status: 503})
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	remove()
	if res.Outcome != syncer.OutcomeCompleted || res.Updated != 1 || res.Unanswered != 1 {
		t.Fatalf("pass with a record GHL did not answer: %+v", res)
	}
	if w := e.watermark(t, "loc1", syncer.KindPatients); !w.Equal(mark) {
		t.Errorf("watermark moved to %s after a pass with an unanswered record", w)
	}

	dry, err := tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: "loc1", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := e.syncLocation(t, func(string) (*asynq.Task, error) { return dry, nil }, "loc1"); res.Updated != 1 {
		t.Errorf("dry run: %+v, want 1 to update", res)
	}
	since := time.Now().Add(-30 * time.Minute)
	bySince, err := tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: "loc1", Since: &since, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := e.syncLocation(t, func(string) (*asynq.Task, error) { return bySince, nil }, "loc1"); res.Read != syncer.ReadChanged || res.Scanned != 2 {
		t.Errorf("--since pass: %+v, want the 2 changed rows read", res)
	}
	if w := e.watermark(t, "loc1", syncer.KindPatients); !w.Equal(mark) {
		t.Errorf("watermark moved to %s after a dry run", w)
	}

	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Scanned != 2 || res.Updated != 1 || res.Unchanged != 1 || res.Unanswered != 0 {
		t.Errorf("pass after: %+v, want the unanswered record sent", res)
	}
	if w := e.watermark(t, "loc1", syncer.KindPatients); !w.Equal(*res.ReadAt) || !w.After(mark) {
		t.Errorf("watermark %s, want the completed pass's %s", w, res.ReadAt)
	}
}

// A change of the location's settings changes every record's hash, so the
// pass after one reads every row.
func TestSyncAfterSettingsChangeReadsEveryRow(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 20, 0)
	e.age(t, "patients", "loc1")
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if err := e.Store.SaveSettings(context.Background(), store.LocationSettings{LocationID: "loc1", Fields: "patient.email,patient.first_name,patient.last_name,patient.phone"}); err != nil {
		t.Fatal(err)
	}
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Read != syncer.ReadFull || res.Updated != 20 {
		t.Errorf("pass after a settings change: %+v, want every row read and sent", res)
	}
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Read != syncer.ReadChanged || res.Scanned != 0 {
		t.Errorf("the pass after: %+v, want a changed-rows read of nothing", res)
	}
}
