package tasks_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// failedReasons maps the failed records of a result to their reasons.
func failedReasons(res syncer.Result) map[string]string {
	out := map[string]string{}
	for _, f := range res.Failed {
		out[f.ExternalID] = f.Reason
	}
	return out
}

// An appointment that failed because its patient had no contact yet (not
// in the patients table, or refused for its email) goes through on the
// next incremental pass after the patient syncs, though its own row did
// not change; while the patient is missing, the re-read costs no GHL call.
func TestSyncIncrementalRetriesAppointmentsOnceTheirPatientSyncs(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	ctx := context.Background()
	bad := patient("loc1", 2)
	bad.Email, bad.Phone = "not-an-email", ""
	if err := e.Store.InsertPatients(ctx, []store.Patient{bad}); err != nil {
		t.Fatal(err)
	}
	// a-0001's patient p-0001 is not in the table yet; a-0002's is p-0002.
	if err := e.Store.InsertAppointments(ctx, []store.Appointment{appointment("loc1", 1, 100), appointment("loc1", 2, 100)}); err != nil {
		t.Fatal(err)
	}
	e.age(t, "patients", "loc1")
	e.age(t, "appointments", "loc1")

	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	why := failedReasons(res)
	if res.Created != 0 || res.FailedCount != 2 || !strings.Contains(why["a-0001"], "patient p-0001 is not in the patients table") ||
		!strings.Contains(why["a-0002"], "patient p-0002") {
		t.Fatalf("first pass: %+v; want both appointments failed for their patients", res)
	}
	calls := e.calls("loc1")
	res = e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Scanned != 2 || res.FailedCount != 2 || e.calls("loc1") != calls {
		t.Errorf("pass while the patients are missing: %+v, %d GHL calls; want both re-read and failed again without a call",
			res, e.calls("loc1")-calls)
	}

	// The clinic adds p-0001 and corrects p-0002; the patient sync sends
	// them. The appointments' rows stay as they were.
	if err := e.Store.InsertPatients(ctx, []store.Patient{patient("loc1", 1)}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE patients SET email = 'p2@example.com', updated_at = CURRENT_TIMESTAMP WHERE external_id = 'p-0002'`)
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Created != 2 || res.FailedCount != 0 {
		t.Fatalf("patient sync: %+v, want both patients created", res)
	}
	res = e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Created != 2 || res.FailedCount != 0 || res.ContactsCreated != 0 {
		t.Errorf("appointment pass after the patients synced: %+v; want both booked for the patients' contacts", res)
	}
	for _, id := range []string{"p-0001", "p-0002"} {
		contact := e.patientState(t, "loc1", id).ContactID
		n := 0
		for _, a := range e.Fake.Appointments("loc1") {
			if a.ContactID == contact {
				n++
			}
		}
		if contact == "" || n != 1 {
			t.Errorf("%s: contact %q holds %d appointments, want 1", id, contact, n)
		}
	}
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Scanned != 0 {
		t.Errorf("the pass after: %+v; want nothing read, nothing having failed", res)
	}
}

// An appointment refused for want of an owner goes through on the next
// incremental pass once its cause is cured outside its row: its
// practitioner's ghl_user_id set in the practitioners table (which has no
// updated_at), the practitioner's GHL user made and added to the
// calendar's team in GHL, or a default user given to the calendar.
func TestSyncIncrementalRetriesAppointmentsWithoutAnOwner(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	ctx := context.Background()
	ada := e.Fake.AddUser(ghltest.User{LocationID: "loc1", Name: "Ada Lovelace", Email: "ada@example.com"})
	e.Fake.AddCalendar("loc1", "cal-team", "Team")
	e.Fake.SetCalendarTeam("cal-team", ada.ID)
	if err := e.Store.InsertPractitioners(ctx, []store.Practitioner{
		{LocationID: "loc1", ExternalID: "pr-bob", Name: "Dr Bob", Email: "bob@example.com"},
		{LocationID: "loc1", ExternalID: "pr-cat", Name: "Dr Cat", Email: "cat@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	e.seed(t, "loc1", 3, 0)
	rows := []store.Appointment{appointment("loc1", 0, 3), appointment("loc1", 1, 3), appointment("loc1", 2, 3)}
	rows[0].CalendarID, rows[0].PractitionerExternalID = "cal-team", "pr-bob"
	rows[1].CalendarID, rows[1].PractitionerExternalID = "cal-team", "pr-cat"
	rows[2].CalendarID = "cal-team"
	if err := e.Store.InsertAppointments(ctx, rows); err != nil {
		t.Fatal(err)
	}
	e.age(t, "patients", "loc1")
	e.age(t, "appointments", "loc1")

	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	why := failedReasons(res)
	if res.Created != 0 || res.FailedCount != 3 || !strings.Contains(why["a-0000"], "calendar cal-team has team members") ||
		!strings.Contains(why["a-0001"], "calendar cal-team has team members") || !strings.Contains(why["a-0002"], "no practitioner_external_id") {
		t.Fatalf("first pass: %+v; want the three failed for want of an owner", res)
	}
	res = e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Scanned != 3 || res.FailedCount != 3 || res.Created != 0 {
		t.Errorf("pass with the causes still there: %+v; want the three re-read and failed again", res)
	}

	// Bob is mapped in the practitioners table; Cat gets a GHL user on the
	// calendar's team, in GHL.
	e.exec(t, `UPDATE practitioners SET ghl_user_id = ? WHERE external_id = 'pr-bob'`, ada.ID)
	cat := e.Fake.AddUser(ghltest.User{LocationID: "loc1", Name: "Cat Jones", Email: "cat@example.com"})
	e.Fake.SetCalendarTeam("cal-team", ada.ID, cat.ID)
	if err := e.Store.SetCalendarDefaultUser(ctx, "loc1", "cal-team", ada.ID); err != nil {
		t.Fatal(err)
	}
	res = e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Read != syncer.ReadChanged || res.Created != 3 || res.FailedCount != 0 {
		t.Errorf("pass after the fixes: %+v; want the three booked", res)
	}
	owners := map[string]string{}
	for _, a := range e.Fake.Appointments("loc1") {
		owners[a.Title] = a.AssignedUserID
	}
	if owners[rows[0].Title] != ada.ID || owners[rows[1].Title] != cat.ID || owners[rows[2].Title] != ada.ID {
		t.Errorf("owners in GHL: %v; want %s and %s booked with %s, %s with %s", owners, rows[0].Title, rows[2].Title, ada.ID,
			rows[1].Title, cat.ID)
	}
}

// A record refused for its own content, GHL's refusal or ghlsync's, is
// read again by every incremental pass and reported failed, with no GHL
// call while it does not change.
func TestSyncIncrementalRereadsRefusedRecordsWithoutACall(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 10, 0)
	e.exec(t, `UPDATE patients SET email = 'not-an-email', phone = '' WHERE external_id = 'p-0004'`)
	e.exec(t, `UPDATE patients SET country = 'Narnia' WHERE external_id = 'p-0007'`)
	e.age(t, "patients", "loc1")
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	why := failedReasons(res)
	if res.Created != 8 || res.FailedCount != 2 || !strings.Contains(why["p-0004"], "email must be an email") ||
		!strings.Contains(why["p-0007"], `country "Narnia"`) {
		t.Fatalf("first pass: %+v; want p-0004 refused by GHL, p-0007 by ghlsync", res)
	}
	calls := e.calls("loc1")
	for range 2 {
		res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
		why = failedReasons(res)
		if res.Read != syncer.ReadChanged || res.Scanned != 2 || res.FailedCount != 2 ||
			!strings.Contains(why["p-0004"], "unchanged since it was refused") || !strings.Contains(why["p-0007"], "unchanged since it was refused") {
			t.Errorf("incremental pass: %+v; want the two refused patients re-read and reported", res)
		}
	}
	if n := e.calls("loc1") - calls; n != 0 {
		t.Errorf("%d GHL calls for refused patients that did not change, want 0", n)
	}
}
