package tasks_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// deletionPatients is the size of the deletion tests' location.
const deletionPatients = 1000

// contactsByPatientID maps the patient id custom field of loc's contacts
// to the contacts holding it, so that a duplicate shows.
func (e *syncEnv) contactsByPatientID(t testing.TB, loc string) map[string][]ghltest.Contact {
	t.Helper()
	field := e.patientField(t, loc)
	out := map[string][]ghltest.Contact{}
	for _, c := range e.Fake.Contacts(loc) {
		for _, f := range c.CustomFields {
			if f.ID == field {
				id := fmt.Sprint(f.Value)
				out[id] = append(out[id], c)
			}
		}
	}
	return out
}

// fullSync returns the task of a full pass (the nightly full schedules'
// payload) of taskType: every row read, so rows gone from the table are
// seen.
func fullSync(taskType string) func(string) (*asynq.Task, error) {
	return func(loc string) (*asynq.Task, error) {
		return tasks.NewSyncTask(taskType, tasks.SyncPayload{LocationID: loc, Full: true})
	}
}

// Issue 10, test 2: deleting 10 of 1,000 patients and 5 appointments, by
// deleted_at and by removing rows: exactly those are tagged (tag_dnd, the
// default), deleted (delete) or left alone (none), the appointments
// cancelled; removing 600 rows at once stops the pass under the cap and
// changes nothing in GHL. Rows removed from the table are seen by the
// full pass.
func TestSyncActsOnDeletionsUnderTheCap(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{RateInterval: 100 * time.Millisecond}, nil, "loc1")
	e.seed(t, "loc1", deletionPatients, 20)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	before := e.contactsByPatientID(t, "loc1")
	ctx := context.Background()

	// Patients with no appointments (those hold 0..19): five marked
	// deleted, five rows removed.
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP, deleted_at = CURRENT_TIMESTAMP WHERE location_id = 'loc1' AND external_id IN
		('p-0100', 'p-0101', 'p-0102', 'p-0103', 'p-0104')`)
	e.exec(t, `DELETE FROM patients WHERE location_id = 'loc1' AND external_id IN
		('p-0200', 'p-0201', 'p-0202', 'p-0203', 'p-0204')`)
	e.exec(t, `UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, deleted_at = CURRENT_TIMESTAMP WHERE location_id = 'loc1' AND external_id IN
		('a-0001', 'a-0002', 'a-0003')`)
	e.exec(t, `DELETE FROM appointments WHERE location_id = 'loc1' AND external_id IN ('a-0004', 'a-0005')`)
	tagged := []string{"p-0100", "p-0101", "p-0102", "p-0103", "p-0104", "p-0200", "p-0201", "p-0202", "p-0203", "p-0204"}

	res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1")
	if res.Deleted != 10 || res.Scanned != deletionPatients-10 || res.Created+res.Updated != 0 || res.FailedCount != 0 {
		t.Errorf("patient sync after the deletions: %+v, want 10 deleted, the rest unchanged", res)
	}
	after := e.contactsByPatientID(t, "loc1")
	for id, cs := range after {
		deleted := slices.Contains(tagged, id)
		c := cs[0]
		if len(cs) != 1 || c.ID != before[id][0].ID {
			t.Errorf("%s: contacts %v, want the one it had", id, cs)
		}
		if deleted != (slices.Contains(c.Tags, store.DeletedTag) && c.DND) {
			t.Errorf("%s: tags %v, dnd %v; deleted in the clinic: %v", id, c.Tags, c.DND, deleted)
		}
	}
	if len(after) != deletionPatients {
		t.Errorf("%d contacts, want all %d: tag_dnd deletes none", len(after), deletionPatients)
	}
	res = e.syncLocation(t, fullSync(tasks.TypeAppointmentsSync), "loc1")
	if res.Deleted != 5 || res.Created+res.Updated != 0 {
		t.Errorf("appointment sync after the deletions: %+v, want 5 deleted (cancelled)", res)
	}
	for _, a := range e.Fake.Appointments("loc1") {
		n := 0
		fmt.Sscanf(a.Title, "Session %d", &n)
		wasCancelled := statuses[n%len(statuses)] == "cancelled"
		if want := n >= 1 && n <= 5 || wasCancelled; want != (a.AppointmentStatus == "cancelled") {
			t.Errorf("%s: status %s; deleted in the clinic: %v", a.Title, a.AppointmentStatus, n >= 1 && n <= 5)
		}
	}
	st := e.Fake.Stats()
	if st.TagAdds["loc1"] != 10 || st.ContactDeletes["loc1"] != 0 || st.AppointmentDeletes["loc1"] != 0 {
		t.Errorf("tag adds %d, contact deletes %d, appointment deletes %d; want 10, 0, 0",
			st.TagAdds["loc1"], st.ContactDeletes["loc1"], st.AppointmentDeletes["loc1"])
	}
	// Acted on once: the next passes find nothing to do.
	calls := e.calls("loc1")
	if res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1"); res.Deleted != 0 || e.calls("loc1") != calls {
		t.Errorf("the pass after: %+v, %d calls; want nothing", res, e.calls("loc1")-calls)
	}

	// delete: the contacts go; none: they stay untouched.
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc1", DeletionAction: store.DeletionDelete}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `DELETE FROM patients WHERE location_id = 'loc1' AND external_id IN ('p-0300', 'p-0301', 'p-0302')`)
	if res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1"); res.Deleted != 3 {
		t.Errorf("delete: %+v, want 3 deleted", res)
	}
	after = e.contactsByPatientID(t, "loc1")
	for _, id := range []string{"p-0300", "p-0301", "p-0302"} {
		if len(after[id]) != 0 {
			t.Errorf("%s: still in GHL after delete", id)
		}
	}
	if st := e.Fake.Stats(); st.ContactDeletes["loc1"] != 3 {
		t.Errorf("contact deletes %d, want 3", st.ContactDeletes["loc1"])
	}
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc1", DeletionAction: store.DeletionNone}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP, deleted_at = CURRENT_TIMESTAMP WHERE location_id = 'loc1' AND external_id = 'p-0400'`)
	calls = e.calls("loc1")
	if res := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1"); res.Deleted != 1 || e.calls("loc1") != calls {
		t.Errorf("none: %+v, %d calls; want 1 deleted, no call", res, e.calls("loc1")-calls)
	}

	// A truncated table: 600 rows gone at once pass the cap (5% of the
	// location's contacts, or 50). Nothing is sent, the pass says why and
	// is not retried.
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc1", DeletionAction: store.DeletionDelete}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `DELETE FROM patients WHERE location_id = 'loc1' AND external_id < 'p-0600'`)
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP, first_name = 'Changed' WHERE location_id = 'loc1' AND external_id = 'p-0700'`)
	calls, contacts := e.calls("loc1"), len(e.Fake.Contacts("loc1"))
	res, info := e.start(t, fullSync(tasks.TypePatientsSync), "loc1")
	if info.State != asynq.TaskStateArchived || info.Retried != 0 {
		t.Errorf("capped pass: task %s after %d retries, want archived at once", info.State, info.Retried)
	}
	if res.Outcome != syncer.OutcomeDeletionCapped || res.Deleted != 0 || res.Updated != 0 ||
		!strings.Contains(res.Message, "nothing was changed in GHL") {
		t.Errorf("capped pass: %+v", res)
	}
	if e.calls("loc1") != calls || len(e.Fake.Contacts("loc1")) != contacts {
		t.Errorf("capped pass: %d GHL calls, %d contacts gone; want none", e.calls("loc1")-calls, contacts-len(e.Fake.Contacts("loc1")))
	}
	runs, err := e.Store.SyncRuns(ctx, "loc1", syncer.KindPatients, 1)
	if err != nil || len(runs) != 1 || runs[0].Outcome != syncer.OutcomeDeletionCapped || !strings.Contains(runs[0].Error, "deletion_cap") {
		t.Errorf("sync_runs of the capped pass: %+v, %v", runs, err)
	}
}

// Issue 10, test 4: after GHL lost 50 contacts (deleted on its side), a
// normal sync sends nothing (the patients did not change); --full
// (Force) creates the 50 again and updates the rest in place, with no
// duplicate.
func TestSyncFullRepairsContactsGHLLost(t *testing.T) {
	t.Parallel()
	const n, lost = 200, 50
	e := setupSync(t, ghltest.Options{RateInterval: 100 * time.Millisecond}, nil, "loc1")
	e.seed(t, "loc1", n, 0)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	before := e.contactsByPatientID(t, "loc1")
	for i := range lost {
		id := fmt.Sprintf("p-%04d", i*3)
		if !e.Fake.DeleteContact(before[id][0].ID) {
			t.Fatalf("%s: no contact to delete", id)
		}
	}
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Unchanged != n {
		t.Fatalf("the normal sync: %+v, want all unchanged (what makes --full needed)", res)
	}
	full := func(loc string) (*asynq.Task, error) {
		return tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: loc, Force: true})
	}
	res := e.syncLocation(t, full, "loc1")
	if res.Created != lost || res.Updated != n-lost || res.FailedCount != 0 {
		t.Errorf("--full: %+v, want %d created, %d updated", res, lost, n-lost)
	}
	after := e.contactsByPatientID(t, "loc1")
	for i := range n {
		id := fmt.Sprintf("p-%04d", i)
		switch {
		case len(after[id]) != 1:
			t.Errorf("%s: %d contacts, want 1", id, len(after[id]))
		case i%3 != 0 || i >= lost*3:
			if after[id][0].ID != before[id][0].ID {
				t.Errorf("%s: contact %s, want %s updated in place", id, after[id][0].ID, before[id][0].ID)
			}
		}
	}
	e.checkContacts(t, "loc1", n)
}

// Issue 10, test 3: --dry-run on 1,000 changed patients (and deletions,
// and a record that cannot be sent) makes no GHL call and writes nothing,
// and its counts equal those of the real sync that follows. Both are full
// passes, which see the rows removed from the table.
func TestSyncDryRunCountsWhatTheSyncDoes(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{RateInterval: 100 * time.Millisecond}, nil, "loc1")
	e.seed(t, "loc1", deletionPatients, 0)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP, first_name = first_name || ' changed' WHERE location_id = 'loc1'`)
	e.exec(t, `DELETE FROM patients WHERE location_id = 'loc1' AND external_id IN ('p-0010', 'p-0011')`)
	e.exec(t, `UPDATE patients SET updated_at = CURRENT_TIMESTAMP, country = 'Atlantis' WHERE location_id = 'loc1' AND external_id = 'p-0012'`)
	e.seedPatients(t, "loc1", deletionPatients, deletionPatients+5) // five new ones
	dry := func(loc string) (*asynq.Task, error) {
		return tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: loc, DryRun: true, Full: true})
	}
	calls, tokens := e.calls("loc1"), e.Fake.TokenCalls("loc1")
	runs, err := e.Store.SyncRuns(context.Background(), "loc1", syncer.KindPatients, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := e.syncLocation(t, dry, "loc1")
	if e.calls("loc1") != calls || e.Fake.TokenCalls("loc1") != tokens {
		t.Errorf("dry run: %d GHL calls, %d token calls; want none", e.calls("loc1")-calls, e.Fake.TokenCalls("loc1")-tokens)
	}
	if after, _ := e.Store.SyncRuns(context.Background(), "loc1", syncer.KindPatients, 100); len(after) != len(runs) {
		t.Errorf("dry run: %d runs logged, want none", len(after)-len(runs))
	}
	if !got.DryRun || got.Updated != deletionPatients-3 || got.Created != 5 || got.Deleted != 2 || got.FailedCount != 1 {
		t.Errorf("dry run: %+v", got)
	}
	want := e.syncLocation(t, fullSync(tasks.TypePatientsSync), "loc1")
	type counts struct{ Scanned, Created, Updated, Unchanged, Failed, Deleted int }
	if g, w := (counts{got.Scanned, got.Created, got.Updated, got.Unchanged, got.FailedCount, got.Deleted}),
		(counts{want.Scanned, want.Created, want.Updated, want.Unchanged, want.FailedCount, want.Deleted}); g != w {
		t.Errorf("dry run counted %+v, the real sync did %+v", g, w)
	}
}

// seedPatients inserts the test's patients from..to-1 of loc.
func (e *syncEnv) seedPatients(t testing.TB, loc string, from, to int) {
	t.Helper()
	var ps []store.Patient
	for i := from; i < to; i++ {
		ps = append(ps, patient(loc, i))
	}
	if err := e.Store.InsertPatients(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
}
