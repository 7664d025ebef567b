package tasks_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
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

// A pass in several runs lists the location's custom fields once, not in
// every run: a follow-up takes the fields its pass used as the first run
// found them, which spares the location's quota a call per run. A key
// the pass has not used yet is still listed for, so a field staff
// created in GHL is found and not created a second time.
func TestSyncPassListsCustomFieldsOnce(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{EnforceRateLimit: true, RateLimit: 20, RateInterval: 2 * time.Second},
		func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.HandBackAfter = 500 * time.Millisecond }, "loc1")
	staff := newStaff(t, e, "loc1")
	note, _, err := staff.contacts.CreateCustomField(context.Background(), staff.token, "loc1", "staff note", "TEXT")
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]store.Patient, 50)
	for i := range ps {
		ps[i] = patient("loc1", i)
		if i >= 45 {
			// Only the last run sends the staff's field.
			ps[i].CustomFields = `{"staff_note": "seen by staff"}`
		}
	}
	if err := e.Store.InsertPatients(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	res, _ := e.start(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Outcome != syncer.OutcomeCompleted || res.Created != 50 || res.FailedCount != 0 || res.Batch < 3 {
		t.Fatalf("pass result %+v, want 50 created in 3 runs or more", res)
	}
	lists := e.Fake.Requests("/locations/loc1/customFields", "loc1") - e.Fake.Stats().CustomFieldCreates["loc1"]
	if lists != 2 {
		t.Errorf("the pass's %d runs listed the location's custom fields %d times, want 2: "+
			"once in the first, once for the staff's field", res.Batch, lists)
	}
	if n := e.Fake.Stats().CustomFieldCreates["loc1"]; n != 2 {
		t.Errorf("GHL created %d custom fields, want 2: the staff's and the patient id's", n)
	}
	noted := 0
	for _, c := range e.Fake.Contacts("loc1") {
		if slices.ContainsFunc(c.CustomFields, func(f ghltest.CustomField) bool { return f.ID == note.ID }) {
			noted++
		}
	}
	if noted != 5 {
		t.Errorf("%d contacts hold the staff's field, want 5", noted)
	}
}
