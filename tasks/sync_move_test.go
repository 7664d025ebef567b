package tasks_test

import (
	"context"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// runSync runs a sync task of loc1 in process, as a worker would, and
// returns the handler's error.
func (e *syncEnv) runSync(ctx context.Context, t *testing.T, newTask func(string) (*asynq.Task, error)) error {
	t.Helper()
	task, err := newTask("loc1")
	if err != nil {
		t.Fatal(err)
	}
	switch task.Type() {
	case tasks.TypePatientsSync:
		return e.h.HandlePatientsSync(ctx, task)
	default:
		return e.h.HandleAppointmentsSync(ctx, task)
	}
}

// mustSync runs a sync task of loc1 that must succeed, and returns its
// run log.
func (e *syncEnv) mustSync(t *testing.T, newTask func(string) (*asynq.Task, error), kind string) store.SyncRun {
	t.Helper()
	if err := e.runSync(context.Background(), t, newTask); err != nil {
		t.Fatalf("%s sync: %v", kind, err)
	}
	runs, err := e.Store.SyncRuns(context.Background(), "loc1", kind, 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("run log: %v, %v", runs, err)
	}
	return runs[0]
}

// contactsByPatient maps the test's patients 0..n-1 of loc1 to the ids of
// their contacts in the fake.
func (e *syncEnv) contactsByPatient(t *testing.T, n int) map[string]string {
	t.Helper()
	byKey := map[string]string{}
	for _, c := range e.Fake.Contacts("loc1") {
		byKey[contactKey(c.Email, c.Phone)] = c.ID
	}
	out := map[string]string{}
	for i := range n {
		p := patient("loc1", i)
		if id := byKey[contactKey(p.Email, p.Phone)]; id != "" {
			out[p.ExternalID] = id
		}
	}
	return out
}

// bookedFor checks that the fake holds exactly the appointments of loc1
// titled as in want, each booked for the contact of the patient named.
func (e *syncEnv) bookedFor(t *testing.T, patients int, want map[string]string) {
	t.Helper()
	contacts := e.contactsByPatient(t, patients)
	got := map[string][]string{}
	for _, a := range e.Fake.Appointments("loc1") {
		got[a.Title] = append(got[a.Title], a.ContactID)
	}
	if len(got) != len(want) {
		t.Errorf("GHL holds appointments %v, want %v", got, want)
	}
	for title, p := range want {
		if ids := got[title]; len(ids) != 1 || ids[0] != contacts[p] {
			t.Errorf("%q is booked for %v in GHL, want once for %s's contact %s", title, ids, p, contacts[p])
		}
	}
}

func (e *syncEnv) movePatient(t *testing.T, appt, patient string) {
	t.Helper()
	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, patient_external_id = ?
		WHERE location_id = 'loc1' AND external_id = ?`, patient, appt).Error; err != nil {
		t.Fatal(err)
	}
}

// An appointment moved to another patient is booked for that patient's
// contact in GHL (deleted and booked again: GHL does not move one), also
// when that patient has no contact yet; then it is unchanged again.
func TestSyncMovesAnAppointmentToItsNewPatient(t *testing.T) {
	t.Parallel()
	e := newSyncEnv(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 3, 3)
	e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	e.bookedFor(t, 3, map[string]string{"Session 0": "p-0000", "Session 1": "p-0001", "Session 2": "p-0002"})

	if err := storetest.DB(t, e.DatabaseURL).Create(&[]store.Patient{patient("loc1", 3)}).Error; err != nil {
		t.Fatal(err)
	}
	e.movePatient(t, "a-0000", "p-0001") // a patient with a contact
	e.movePatient(t, "a-0002", "p-0003") // one without a contact yet
	run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	if run.Updated != 2 || run.Unchanged != 1 || run.Created != 0 || run.Failed != 0 {
		t.Errorf("sync after two moves: %+v, want 2 updated, 1 unchanged", run)
	}
	e.bookedFor(t, 4, map[string]string{"Session 0": "p-0001", "Session 1": "p-0001", "Session 2": "p-0003"})
	st := e.Fake.Stats()
	if st.AppointmentDeletes["loc1"] != 2 || st.AppointmentCreates["loc1"] != 5 {
		t.Errorf("%d deletes and %d creates, want 2 and 5", st.AppointmentDeletes["loc1"], st.AppointmentCreates["loc1"])
	}

	before := e.calls("loc1")
	run = e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	if n := e.calls("loc1") - before; n != 0 || run.Unchanged != 3 {
		t.Errorf("the sync after the moves made %d GHL calls, run %+v; want none, 3 unchanged", n, run)
	}

	// The patient's contact is another now (say the patient sync had to
	// make a new one): its appointments follow.
	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE sync_patients SET contact_id = ?
		WHERE location_id = 'loc1' AND external_id = 'p-0001'`, e.contactsByPatient(t, 4)["p-0000"]).Error; err != nil {
		t.Fatal(err)
	}
	run = e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	if run.Updated != 2 || run.Unchanged != 1 {
		t.Errorf("sync after the patient's contact changed: %+v, want 2 updated", run)
	}
	e.bookedFor(t, 4, map[string]string{"Session 0": "p-0000", "Session 1": "p-0000", "Session 2": "p-0003"})
}

// dyingCalendars ends the run (as a worker's death would) once, at the
// point named: "before delete", "after delete" (GHL deleted, the answer is
// lost) or "before create".
type dyingCalendars struct {
	syncer.Calendars
	mu    sync.Mutex
	at    string
	die   context.CancelFunc
	fired bool
}

func (c *dyingCalendars) dies(point string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.die == nil || c.at != point || c.fired {
		return false
	}
	c.fired = true
	c.die()
	return true
}

func (c *dyingCalendars) DeleteEvent(ctx context.Context, token, id string) (*ghl.Response, error) {
	if c.dies("before delete") {
		return nil, context.Cause(ctx)
	}
	resp, err := c.Calendars.DeleteEvent(ctx, token, id)
	if c.dies("after delete") {
		return nil, context.Cause(ctx)
	}
	return resp, err
}

func (c *dyingCalendars) CreateAppointment(ctx context.Context, token string, a *ghl.Appointment) (*ghl.Appointment, *ghl.Response, error) {
	if c.dies("before create") {
		return nil, nil, context.Cause(ctx)
	}
	return c.Calendars.CreateAppointment(ctx, token, a)
}

// arm makes the next run die, by cancel.
func (c *dyingCalendars) arm(cancel context.CancelFunc) {
	c.mu.Lock()
	c.die = cancel
	c.mu.Unlock()
}

func (c *dyingCalendars) hasFired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

// A worker that dies in the middle of a move leaves neither two
// appointments in GHL nor none for good: the next run completes the move,
// or undoes it when the clinic moved the appointment back meanwhile.
func TestSyncMoveSurvivesADeadWorker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at   string
		back bool // the appointment is moved back before the next run
		left int  // appointments in GHL after the death
	}{
		{"before delete", false, 1},
		{"after delete", false, 0},
		{"before create", false, 0},
		{"before delete", true, 1},
		{"after delete", true, 0},
		{"before create", true, 0},
	} {
		name := tc.at
		if tc.back {
			name += ", moved back"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cal := &dyingCalendars{at: tc.at}
			e := newSyncEnv(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) {
				cal.Calendars = h.Calendars
				h.Calendars = cal
			}, "loc1")
			e.seed(t, "loc1", 2, 1)
			e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
			e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)

			e.movePatient(t, "a-0000", "p-0001")
			ctx, cancel := context.WithCancel(context.Background())
			cal.arm(cancel)
			err := e.runSync(ctx, t, tasks.NewAppointmentsSyncTask)
			cancel()
			if !cal.hasFired() {
				t.Fatalf("the worker did not die %s (sync: %v)", tc.at, err)
			}
			if n := len(e.Fake.Appointments("loc1")); n != tc.left {
				t.Fatalf("%d appointments in GHL after the worker died %s, want %d", n, tc.at, tc.left)
			}

			want := "p-0001"
			if tc.back {
				want = "p-0000"
				e.movePatient(t, "a-0000", want)
			}
			e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
			e.bookedFor(t, 2, map[string]string{"Session 0": want})
			var st store.AppointmentSync
			if err := storetest.DB(t, e.DatabaseURL).Where("location_id = 'loc1' AND external_id = 'a-0000'").First(&st).Error; err != nil {
				t.Fatal(err)
			}
			if got := e.Fake.Appointments("loc1"); st.CreatingAt != nil || len(got) != 1 || st.EventID != got[0].ID {
				t.Errorf("state %+v, want the id of GHL's appointment and no intent", st)
			}
			before := e.calls("loc1")
			if run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments); run.Unchanged != 1 || e.calls("loc1") != before {
				t.Errorf("the sync after the move made %d GHL calls, run %+v; want none, 1 unchanged", e.calls("loc1")-before, run)
			}
		})
	}
}
