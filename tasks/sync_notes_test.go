package tasks_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
)

// eventIDs maps loc's appointments to their GHL appointments.
func (e *syncEnv) eventIDs(t testing.TB, loc string) map[string]string {
	t.Helper()
	rows, err := e.Store.AppointmentPage(context.Background(), loc, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.ExternalID] = r.Sync.EventID
	}
	return out
}

// notesOf returns the bodies of the notes of appointment ext in the fake.
func (e *syncEnv) notesOf(t testing.TB, loc, ext string) []string {
	t.Helper()
	var out []string
	for _, n := range e.Fake.Notes(e.eventIDs(t, loc)[ext]) {
		out = append(out, n.Body)
	}
	return out
}

// Issue 10, must-show 6: notes edited in the clinic row are updated in GHL
// in place, never added twice, also across a create whose answer was lost;
// an emptied note is deleted; a note the allow-list leaves out is deleted
// and never sent.
func TestSyncAppointmentNotesUpdatedInPlace(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 3, 4)
	e.exec(t, `UPDATE appointments SET notes = 'Bring the MRI', updated_at = CURRENT_TIMESTAMP WHERE external_id IN ('a-0000', 'a-0001')`)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Created != 4 || res.FailedCount != 0 {
		t.Fatalf("first sync: %+v", res)
	}
	for ext, want := range map[string]string{"a-0000": "Bring the MRI", "a-0001": "Bring the MRI", "a-0002": ""} {
		if got := strings.Join(e.notesOf(t, "loc1", ext), "|"); got != want {
			t.Errorf("%s: notes %q, want %q", ext, got, want)
		}
	}

	e.exec(t, `UPDATE appointments SET notes = 'Bring the MRI and the referral', updated_at = CURRENT_TIMESTAMP WHERE external_id = 'a-0000'`)
	e.exec(t, `UPDATE appointments SET notes = '', updated_at = CURRENT_TIMESTAMP WHERE external_id = 'a-0001'`)
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Updated != 2 || res.FailedCount != 0 {
		t.Errorf("sync after the edits: %+v", res)
	}
	if got := e.notesOf(t, "loc1", "a-0000"); len(got) != 1 || got[0] != "Bring the MRI and the referral" {
		t.Errorf("a-0000 after its edit: notes %q, want the one note, edited", got)
	}
	if got := e.notesOf(t, "loc1", "a-0001"); len(got) != 0 {
		t.Errorf("a-0001 after its note was emptied: notes %q, want none", got)
	}
	st := e.Fake.Stats()
	if st.NoteCreates["loc1"] != 2 || st.NoteUpdates["loc1"] != 1 || st.NoteDeletes["loc1"] != 1 {
		t.Errorf("note creates %d, updates %d, deletes %d; want 2, 1, 1", st.NoteCreates["loc1"], st.NoteUpdates["loc1"], st.NoteDeletes["loc1"])
	}

	// The answer to a note's create is lost: the retry finds the note and
	// adds none.
	event := e.eventIDs(t, "loc1")["a-0002"]
	e.Fake.InjectFault(ghltest.Fault{Method: "POST", Path: "/calendars/appointments/" + event + "/notes", DropAfter: true, Times: 1})
	e.exec(t, `UPDATE appointments SET notes = 'Knee: second opinion', updated_at = CURRENT_TIMESTAMP WHERE external_id = 'a-0002'`)
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Updated != 1 || res.FailedCount != 0 {
		t.Errorf("sync with a lost answer: %+v", res)
	}
	if got := e.notesOf(t, "loc1", "a-0002"); len(got) != 1 || got[0] != "Knee: second opinion" {
		t.Errorf("a-0002 after a lost answer: notes %q, want one", got)
	}
	if st := e.Fake.Stats(); st.NoteCreates["loc1"] != 3 || st.Faults != 1 {
		t.Errorf("note creates %d (want 3), faults %d (want 1)", st.NoteCreates["loc1"], st.Faults)
	}

	calls := e.calls("loc1")
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Created+res.Updated != 0 || e.calls("loc1") != calls {
		t.Errorf("unchanged sync: %+v, %d calls", res, e.calls("loc1")-calls)
	}

	// Notes left out of the allow-list: the note sent before goes, and no
	// body carries one.
	if err := e.Store.SaveSettings(context.Background(), store.LocationSettings{LocationID: "loc1", Fields: store.FieldAppointmentTitle}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE appointments SET notes = 'Private: anxious about needles', updated_at = CURRENT_TIMESTAMP WHERE external_id = 'a-0003'`)
	e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	for _, ext := range []string{"a-0000", "a-0002", "a-0003"} {
		if got := e.notesOf(t, "loc1", ext); len(got) != 0 {
			t.Errorf("%s with notes not allowed: notes %q, want none", ext, got)
		}
	}
	if st := e.Fake.Stats(); st.NoteCreates["loc1"] != 3 {
		t.Errorf("note creates %d with notes not allowed, want still 3", st.NoteCreates["loc1"])
	}
}
