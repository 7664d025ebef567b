package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// syncEnv is a worker of the sync tasks alone, in process, on a stack of
// the test's own: the handlers with the real store, limiter, locks and
// refresher, served by an asynq server configured as the worker's.
type syncEnv struct {
	*storetest.Stack
	h       *tasks.SyncHandlers
	limiter *ratelimit.Limiter
	client  *asynq.Client
	insp    *asynq.Inspector
	logs    *testenv.Buffer
}

// setupSync starts the worker after tune has adjusted the handlers, with
// the locations connected and given a calendar "cal-" + location.
func setupSync(t testing.TB, opts ghltest.Options, tune func(*tasks.SyncHandlers, *storetest.Stack), locs ...string) *syncEnv {
	t.Helper()
	return setupSyncOn(t, testenv.RedisURL, opts, tune, locs...)
}

// setupSyncOn is setupSync on the Redis that redisURL gives the test.
func setupSyncOn(t testing.TB, redisURL func(testing.TB) string, opts ghltest.Options, tune func(*tasks.SyncHandlers, *storetest.Stack), locs ...string) *syncEnv {
	t.Helper()
	e := newSyncEnvOn(t, redisURL, opts, tune, locs...)
	redisOpt, err := redisconn.Parse(e.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:       10,
		Queues:            map[string]int{tasks.QueueDefault: 1},
		RetryDelayFunc:    tasks.RetryDelay,
		IsFailure:         tasks.IsFailure,
		TaskCheckInterval: 20 * time.Millisecond,
		LogLevel:          asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypePatientsSync, e.h.HandlePatientsSync)
	mux.HandleFunc(tasks.TypeAppointmentsSync, e.h.HandleAppointmentsSync)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return e
}

// newSyncEnv is setupSync without the asynq server: the handlers are
// called directly.
func newSyncEnv(t testing.TB, opts ghltest.Options, tune func(*tasks.SyncHandlers, *storetest.Stack), locs ...string) *syncEnv {
	t.Helper()
	return newSyncEnvOn(t, testenv.RedisURL, opts, tune, locs...)
}

// newSyncEnvOn is newSyncEnv on the Redis that redisURL gives the test.
func newSyncEnvOn(t testing.TB, redisURL func(testing.TB) string, opts ghltest.Options, tune func(*tasks.SyncHandlers, *storetest.Stack), locs ...string) *syncEnv {
	t.Helper()
	if opts.RateInterval == 0 {
		// Ten times GHL's pace (the limiter follows the fake's headers):
		// these tests are about what is sent. The limiter has tests of its
		// own, and the process tests run at GHL's pace.
		opts.RateInterval = time.Second
	}
	stack := storetest.NewStackOn(t, opts, redisURL)
	rc := stack.Redis(t)
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	redisOpt, err := redisconn.Parse(stack.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &syncEnv{Stack: stack, limiter: &ratelimit.Limiter{Redis: rc, Interval: opts.RateInterval}, client: asynq.NewClient(redisOpt),
		insp: asynq.NewInspector(redisOpt), logs: logs}
	t.Cleanup(func() { e.client.Close(); e.insp.Close() })
	e.h = &tasks.SyncHandlers{
		Engine: syncer.Engine{
			Credentials: stack.Store,
			State:       stack.Store,
			Refresher: &refresh.Refresher{Store: stack.Store, GHL: client.OAuth, Redis: rc,
				Cipher: testenv.Cipher(t, stack.Key), Log: log, Window: 4 * time.Hour},
			Contacts:  client.Contacts,
			Calendars: client.Calendars,
			Users:     client.Users,
			Locations: client.Locations,
			Limiter:   e.limiter,
			Locks:     &syncer.Locks{Redis: rc},
			Log:       log,
			// The fake shows a new contact in searches at once unless its
			// SearchLag says otherwise; the tests of the lag set both.
			SearchSettle: time.Second,
		},
		Locations: stack.Store,
		Enqueuer:  e.client,
	}
	if tune != nil {
		tune(e.h, stack)
	}
	for _, loc := range locs {
		e.Connect(t, loc, time.Now().Add(24*time.Hour))
		e.Fake.AddCalendar(loc, "cal-"+loc, "Physio")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
	return e
}

// patient is the test's patient number i of a location: every third has
// a phone and no email, every other one a date of birth.
func patient(loc string, i int) store.Patient {
	p := store.Patient{LocationID: loc, ExternalID: fmt.Sprintf("p-%04d", i), FirstName: fmt.Sprintf("First%d", i),
		LastName: "Last-" + loc, Address1: fmt.Sprintf("%d Main St", i), City: "Springfield", PostalCode: "12345", Country: "US"}
	if i%3 == 0 {
		p.Phone = fmt.Sprintf("+1 555 %07d", i)
	} else {
		p.Email = fmt.Sprintf("p%d.%s@example.com", i, loc)
	}
	if i%2 == 0 {
		dob := time.Date(1950+i%50, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC)
		p.DateOfBirth = &dob
	}
	return p
}

var statuses = []string{"booked", "confirmed", "cancelled", "attended", "no_show"}

// appointment is the test's appointment number i of a location, for
// patient i%patients.
func appointment(loc string, i, patients int) store.Appointment {
	start := time.Date(2025, 4, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 90 * time.Minute)
	return store.Appointment{LocationID: loc, ExternalID: fmt.Sprintf("a-%04d", i),
		PatientExternalID: fmt.Sprintf("p-%04d", i%patients), CalendarID: "cal-" + loc,
		StartsAt: start, EndsAt: start.Add(45 * time.Minute), Title: fmt.Sprintf("Session %d", i), Status: statuses[i%len(statuses)]}
}

func (e *syncEnv) seed(t testing.TB, loc string, patients, appointments int) {
	t.Helper()
	ps := make([]store.Patient, patients)
	for i := range ps {
		ps[i] = patient(loc, i)
	}
	as := make([]store.Appointment, appointments)
	for i := range as {
		as[i] = appointment(loc, i, patients)
	}
	if err := e.Store.InsertPatients(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	if len(as) > 0 {
		if err := e.Store.InsertAppointments(context.Background(), as); err != nil {
			t.Fatal(err)
		}
	}
}

// finished waits for a task to complete or be archived.
func finished(t testing.TB, insp *asynq.Inspector, id string, timeout time.Duration) *asynq.TaskInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	info, err := tasks.WaitTask(ctx, insp, tasks.QueueDefault, id, nil)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return info
}

// pass waits for the task id and its follow-ups, and returns the last
// result (the whole pass's) and the last task's state.
func pass(t testing.TB, insp *asynq.Inspector, id string) (syncer.Result, *asynq.TaskInfo) {
	t.Helper()
	for {
		info := finished(t, insp, id, 2*time.Minute)
		var res syncer.Result
		if err := json.Unmarshal(info.Result, &res); err != nil {
			t.Fatalf("result of %s (%s, %s): %v", id, info.State, info.LastErr, err)
		}
		if res.ContinuedBy == "" {
			return res, info
		}
		id = res.ContinuedBy
	}
}

// syncLocation syncs one location and returns the pass's result; it fails
// the test unless the task completed.
func (e *syncEnv) syncLocation(t testing.TB, newTask func(string) (*asynq.Task, error), loc string) syncer.Result {
	t.Helper()
	res, info := e.start(t, newTask, loc)
	if info.State != asynq.TaskStateCompleted || info.Retried != 0 {
		t.Fatalf("sync of %s: %s after %d failures: %s; result %+v", loc, info.State, info.Retried, info.LastErr, res)
	}
	return res
}

func (e *syncEnv) start(t testing.TB, newTask func(string) (*asynq.Task, error), loc string) (syncer.Result, *asynq.TaskInfo) {
	t.Helper()
	task, err := newTask(loc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	return pass(t, e.insp, info.ID)
}

// syncAll runs the fan-out task and every location's pass.
func (e *syncEnv) syncAll(t testing.TB, newTask func(string) (*asynq.Task, error)) (tasks.FanOutResult, map[string]syncer.Result) {
	t.Helper()
	task, err := newTask("")
	if err != nil {
		t.Fatal(err)
	}
	// Waited for, as `enqueue --wait` waits: the result lists the
	// children, which the scheduled fan-out's holds only the count of.
	if task, err = tasks.NewSyncTask(task.Type(), tasks.SyncPayload{KeepSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	info = finished(t, e.insp, info.ID, time.Minute)
	var fan tasks.FanOutResult
	if err := json.Unmarshal(info.Result, &fan); err != nil {
		t.Fatalf("fan-out result (%s): %v", info.LastErr, err)
	}
	results := map[string]syncer.Result{}
	for _, c := range fan.Enqueued {
		res, ci := pass(t, e.insp, c.TaskID)
		if ci.State != asynq.TaskStateCompleted {
			t.Fatalf("sync of %s: %s: %s", c.LocationID, ci.State, ci.LastErr)
		}
		results[c.LocationID] = res
	}
	return fan, results
}

// calls counts the fake's API requests about loc (token calls aside).
func (e *syncEnv) calls(loc string) int {
	return e.Fake.Requests("/contacts", loc) + e.Fake.Requests("/calendars", loc)
}

func contactKey(email, phone string) string {
	if email != "" {
		return email
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
}

// patientField returns the id of loc's patient id custom field, failing
// the test when the location has none.
func (e *syncEnv) patientField(t testing.TB, loc string) string {
	t.Helper()
	for _, f := range e.Fake.CustomFields(loc) {
		if f.FieldKey == syncer.PatientIDFieldKey {
			return f.ID
		}
	}
	t.Fatalf("%s has no custom field %s", loc, syncer.PatientIDFieldKey)
	return ""
}

// checkContacts checks that the fake holds exactly one contact per patient
// of loc, with the patient's fields (the phone in E.164) and the patient's
// id in the location's patient id custom field, and returns them by
// patient.
func (e *syncEnv) checkContacts(t testing.TB, loc string, patients int) map[string]ghltest.Contact {
	t.Helper()
	field := e.patientField(t, loc)
	contacts := e.Fake.Contacts(loc)
	byKey := map[string]ghltest.Contact{}
	for _, c := range contacts {
		k := contactKey(c.Email, c.Phone)
		if _, dup := byKey[k]; dup {
			t.Errorf("%s: two contacts for %s", loc, k)
		}
		byKey[k] = c
	}
	if len(contacts) != patients {
		t.Errorf("%s: %d contacts, want %d", loc, len(contacts), patients)
	}
	out := map[string]ghltest.Contact{}
	for i := range patients {
		p := patient(loc, i)
		c, ok := byKey[contactKey(p.Email, p.Phone)]
		if !ok {
			t.Errorf("%s: no contact for %s", loc, p.ExternalID)
			continue
		}
		phone := ""
		if p.Phone != "" {
			phone = "+" + contactKey("", p.Phone)
		}
		want := ghltest.Contact{ID: c.ID, LocationID: loc, FirstName: p.FirstName, LastName: p.LastName,
			Name: p.FirstName + " " + p.LastName, Email: p.Email, Phone: phone, Address1: p.Address1,
			City: p.City, PostalCode: p.PostalCode, Country: p.Country, Tags: []string{}, DNDSettings: map[string]ghltest.DNDSetting{},
			CustomFields: []ghltest.CustomField{{ID: field, Value: p.ExternalID}},
			DateAdded:    c.DateAdded, DateUpdated: c.DateUpdated}
		if p.DateOfBirth != nil {
			want.DateOfBirth = p.DateOfBirth.Format("2006-01-02")
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("%s: contact of %s (-want +got):\n%s", loc, p.ExternalID, diff)
		}
		out[p.ExternalID] = c
	}
	return out
}

// checkAppointments checks that the fake holds exactly one appointment per
// appointment of loc, booked for its patient's contact, with its fields.
func (e *syncEnv) checkAppointments(t testing.TB, loc string, n, patients int, contacts map[string]ghltest.Contact) {
	t.Helper()
	got := e.Fake.Appointments(loc)
	if len(got) != n {
		t.Errorf("%s: %d appointments, want %d", loc, len(got), n)
	}
	byTitle := map[string]ghltest.Appointment{}
	for _, a := range got {
		if _, dup := byTitle[a.Title]; dup {
			t.Errorf("%s: two appointments %q", loc, a.Title)
		}
		byTitle[a.Title] = a
	}
	ghlStatus := map[string]string{"booked": "new", "confirmed": "confirmed", "cancelled": "cancelled",
		"attended": "showed", "no_show": "noshow"}
	for i := range n {
		src := appointment(loc, i, patients)
		a, ok := byTitle[src.Title]
		if !ok {
			t.Errorf("%s: no appointment %s", loc, src.ExternalID)
			continue
		}
		want := ghltest.Appointment{ID: a.ID, CalendarID: "cal-" + loc, LocationID: loc,
			ContactID: contacts[src.PatientExternalID].ID, Title: src.Title,
			StartTime: src.StartsAt.Format(time.RFC3339), EndTime: src.EndsAt.Format(time.RFC3339),
			AppointmentStatus: ghlStatus[src.Status], DateAdded: a.DateAdded, DateUpdated: a.DateUpdated}
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("%s: appointment %s (-want +got):\n%s", loc, src.ExternalID, diff)
		}
	}
}

// Issue test 1: 1,000 patients and 300 appointments over two locations
// land in GHL exactly once with the right fields; a second sync makes no
// GHL call; changing 10 patients makes exactly 10 contact calls.
func TestSyncPushesEachChangeOnce(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1", "loc2")
	e.seed(t, "loc1", 600, 180)
	e.seed(t, "loc2", 400, 120)

	_, patients := e.syncAll(t, tasks.NewPatientsSyncTask)
	_, appts := e.syncAll(t, tasks.NewAppointmentsSyncTask)
	for loc, n := range map[string][2]int{"loc1": {600, 180}, "loc2": {400, 120}} {
		p, a := patients[loc], appts[loc]
		if p.Outcome != syncer.OutcomeCompleted || p.Scanned != n[0] || p.Created != n[0] || p.FailedCount != 0 {
			t.Errorf("%s patients: %+v", loc, p)
		}
		if a.Outcome != syncer.OutcomeCompleted || a.Scanned != n[1] || a.Created != n[1] || a.FailedCount != 0 || a.ContactsCreated != 0 {
			t.Errorf("%s appointments: %+v", loc, a)
		}
		contacts := e.checkContacts(t, loc, n[0])
		e.checkAppointments(t, loc, n[1], n[0], contacts)
	}
	if p := patients["loc1"]; p.Batch != 2 {
		t.Errorf("600 patients took %d runs, want 2 (500 per run)", p.Batch)
	}

	before := e.calls("loc1") + e.calls("loc2")
	_, patients = e.syncAll(t, tasks.NewPatientsSyncTask)
	_, appts = e.syncAll(t, tasks.NewAppointmentsSyncTask)
	if n := e.calls("loc1") + e.calls("loc2") - before; n != 0 {
		t.Errorf("a sync of unchanged records made %d GHL calls, want 0", n)
	}
	if p := patients["loc1"]; p.Unchanged != 600 || p.Created+p.Updated != 0 {
		t.Errorf("second pass over loc1's patients: %+v", p)
	}
	if a := appts["loc2"]; a.Unchanged != 120 {
		t.Errorf("second pass over loc2's appointments: %+v", a)
	}

	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, city = 'Shelbyville'
		WHERE location_id = 'loc1' AND external_id IN ('p-0000','p-0001','p-0002','p-0100','p-0200','p-0300','p-0400','p-0500','p-0598','p-0599')`).Error; err != nil {
		t.Fatal(err)
	}
	before = e.calls("loc1")
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if n := e.calls("loc1") - before; n != 10 || res.Updated != 10 || res.Unchanged != 590 {
		t.Errorf("10 changed patients made %d contact calls, result %+v; want 10 calls, 10 updated", n, res)
	}
	shelbyville := 0
	for _, c := range e.Fake.Contacts("loc1") {
		if c.City == "Shelbyville" {
			shelbyville++
		}
	}
	if shelbyville != 10 || len(e.Fake.Contacts("loc1")) != 600 {
		t.Errorf("%d contacts moved to Shelbyville, want 10", shelbyville)
	}
}

// Issue test 3: a patient GHL refuses is recorded with GHL's reason; the
// others sync and the task succeeds, reporting it. It is not sent again
// until it changes.
func TestSyncReportsRefusedRecordAndGoesOn(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 100, 0)
	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, email = 'not-an-email', phone = '' WHERE external_id = 'p-0042'`).Error; err != nil {
		t.Fatal(err)
	}

	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	want := []syncer.FailedRecord{{ExternalID: "p-0042", Reason: "GHL refused it: 422 Unprocessable Entity: email must be an email"}}
	if diff := cmp.Diff(want, res.Failed); diff != "" || res.Created != 99 || res.FailedCount != 1 {
		t.Errorf("result %+v; failed (-want +got):\n%s", res, diff)
	}
	if n := len(e.Fake.Contacts("loc1")); n != 99 {
		t.Errorf("%d contacts, want 99", n)
	}
	p, err := e.Store.PatientByExternalID(context.Background(), "loc1", "p-0042")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sync.LastError != want[0].Reason || p.Sync.FailedAt == nil || p.Sync.ContactID != "" {
		t.Errorf("state of p-0042 = %+v, want GHL's reason recorded", p.Sync)
	}

	before := e.calls("loc1")
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if n := e.calls("loc1") - before; n != 0 || res.FailedCount != 1 || res.Unchanged != 99 ||
		!strings.Contains(res.Failed[0].Reason, "email must be an email") {
		t.Errorf("second sync: %d calls, result %+v; want no call and p-0042 still reported", n, res)
	}

	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, email = 'p42@example.com' WHERE external_id = 'p-0042'`).Error; err != nil {
		t.Fatal(err)
	}
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Created != 1 || res.FailedCount != 0 || len(e.Fake.Contacts("loc1")) != 100 {
		t.Errorf("after the fix: %+v", res)
	}
}

// Records the clinic system wrote wrongly fail one by one with a reason
// that names the field; nothing else is held up.
func TestSyncReportsUnreadableRecords(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 10, 10)
	db := storetest.DB(t, e.DatabaseURL)
	for _, q := range []string{
		`UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, status = 'maybe' WHERE external_id = 'a-0001'`,
		`UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, ends_at = starts_at WHERE external_id = 'a-0002'`,
		`UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, patient_external_id = 'p-nobody' WHERE external_id = 'a-0003'`,
		`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, email = 'bad-email' WHERE external_id = 'p-0004'`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	wantPatientFailures := 1
	if !e.Store.Postgres() {
		// Only SQLite lets an unreadable date in.
		if err := db.Exec(`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, date_of_birth = '17/05/1980' WHERE external_id = 'p-0005'`).Error; err != nil {
			t.Fatal(err)
		}
		wantPatientFailures = 2
	}

	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	reasons := map[string]string{}
	for _, f := range res.Failed {
		reasons[f.ExternalID] = f.Reason
	}
	want := map[string]string{
		"a-0001": `status "maybe" is not one of booked, confirmed, cancelled, attended, no_show`,
		"a-0002": "ends_at 2025-04-01T11:00:00Z is not after starts_at 2025-04-01T11:00:00Z",
		"a-0003": "patient p-nobody is not in the patients table",
		"a-0004": "patient p-0004: GHL refused it: 422 Unprocessable Entity: email must be an email",
	}
	if wantPatientFailures == 2 {
		want["a-0005"] = `patient p-0005: date_of_birth "17/05/1980" is not a date (want YYYY-MM-DD)`
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("failed appointments (-want +got):\n%s", diff)
	}
	if res.Created != 10-len(want) || len(e.Fake.Appointments("loc1")) != res.Created {
		t.Errorf("result %+v, %d appointments in GHL", res, len(e.Fake.Appointments("loc1")))
	}

	// The patient sync reports the same patients without asking GHL
	// again, and creates the contacts of the three patients whose only
	// appointment failed.
	before := e.calls("loc1")
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.FailedCount != wantPatientFailures || res.Created != 3 || res.Unchanged != 7-wantPatientFailures {
		t.Errorf("patients: %+v", res)
	}
	if n := e.calls("loc1") - before; n != 3 {
		t.Errorf("the patient sync made %d calls, want 3", n)
	}
}

// hookLimiter calls onWait with the number of each grant before granting.
type hookLimiter struct {
	syncer.RateLimiter
	n      atomic.Int64
	onWait func(n int64)
}

func (l *hookLimiter) Wait(ctx context.Context, loc string) (ratelimit.Grant, error) {
	l.onWait(l.n.Add(1))
	return l.RateLimiter.Wait(ctx, loc)
}

// Issue test 5, first half: the token expires in the middle of a sync; the
// calls that get a 401 cause one refresh between them, and the sync
// completes.
func TestSyncRefreshesOnceOn401(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, s *storetest.Stack) {
		h.Limiter = &hookLimiter{RateLimiter: h.Limiter, onWait: func(n int64) {
			if n == 40 {
				s.Fake.ExpireAccessTokens("loc1")
			}
		}}
	}, "loc1")
	e.seed(t, "loc1", 120, 0)

	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Created != 120 || res.FailedCount != 0 {
		t.Errorf("result %+v", res)
	}
	if n := e.Fake.TokenCalls("loc1"); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if e.Fake.ExpiredTokenCalls() == 0 {
		t.Error("no call met the expired token: the test did not test")
	}
	if !e.HoldsCurrent(t, "loc1") {
		t.Error("the refreshed token was not stored")
	}
	e.checkContacts(t, "loc1", 120)
}

// Issue test 5, second half: GHL revokes the location's tokens in the
// middle of a sync: the sync stops cleanly as needs_reauth and is not
// retried; another location goes on.
func TestSyncStopsWhenTheLocationNeedsReauth(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, s *storetest.Stack) {
		h.Limiter = &hookLimiter{RateLimiter: h.Limiter, onWait: func(n int64) {
			if n == 30 {
				s.Fake.Revoke("loc1")
			}
		}}
		h.Concurrency = 1
	}, "loc1")
	e.seed(t, "loc1", 100, 0)

	res, info := e.start(t, tasks.NewPatientsSyncTask, "loc1")
	if info.State != asynq.TaskStateArchived || info.Retried != 0 {
		t.Errorf("task %s after %d retries (%s), want archived at once", info.State, info.Retried, info.LastErr)
	}
	if res.Outcome != syncer.OutcomeNeedsReauth || !strings.Contains(res.Message, "/api/auth/connect") ||
		res.Created != 27 || res.FailedCount != 0 {
		// Of the 29 calls before the revocation, the first two list and
		// create the location's patient id custom field.
		t.Errorf("result %+v, want needs_reauth after 27 patients", res)
	}
	_, c := e.StoredTokens(t, "loc1")
	if c.Status != store.StatusNeedsReauth {
		t.Errorf("status %s, want needs_reauth", c.Status)
	}
	runs, err := e.Store.SyncRuns(context.Background(), "loc1", syncer.KindPatients, 1)
	if err != nil || len(runs) != 1 || runs[0].Outcome != syncer.OutcomeNeedsReauth || runs[0].FinishedAt == nil {
		t.Errorf("run log = %+v, %v", runs, err)
	}

	// A sync of a location that needs reconnecting does nothing, at once.
	before := e.calls("loc1")
	res, info = e.start(t, tasks.NewAppointmentsSyncTask, "loc1")
	if info.State != asynq.TaskStateArchived || res.Outcome != syncer.OutcomeNeedsReauth || e.calls("loc1") != before {
		t.Errorf("sync of a needs_reauth location: %s, %+v", info.State, res)
	}
}

// A create whose answer is lost (GHL acted, the connection dropped) is
// looked up before it is sent again: nothing is created twice.
func TestSyncLostAnswersCreateNothingTwice(t *testing.T) {
	t.Parallel()
	testSyncLostAnswersCreateNothingTwice(t, testenv.RedisURL)
}

func testSyncLostAnswersCreateNothingTwice(t *testing.T, redisURL func(testing.TB) string) {
	e := setupSyncOn(t, redisURL, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 40, 40)
	e.Fake.InjectFault(ghltest.Fault{Path: "/contacts/upsert", DropAfter: true, Times: 3})
	e.Fake.InjectFault(ghltest.Fault{Path: "/calendars/events/appointments", DropAfter: true, Times: 3})

	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Created != 40 || res.FailedCount != 0 {
		t.Errorf("result %+v", res)
	}
	st := e.Fake.Stats()
	if st.Faults != 6 {
		t.Fatalf("%d faults applied, want 6", st.Faults)
	}
	if st.AppointmentCreates["loc1"] != 40 || st.ContactCreates["loc1"] != 40 {
		t.Errorf("%d appointments and %d contacts created, want 40 each", st.AppointmentCreates["loc1"], st.ContactCreates["loc1"])
	}
	if !strings.Contains(e.logs.String(), "found the appointment an earlier, unanswered create made") {
		t.Error("no appointment was looked up after its lost create")
	}
	e.checkAppointments(t, "loc1", 40, 40, e.checkContacts(t, "loc1", 40))
}

// blindLimiter grants above GHL's limit and ignores GHL's headers, as if
// another app's traffic came in unseen.
type blindLimiter struct{ syncer.RateLimiter }

func (blindLimiter) Observe(context.Context, string, ratelimit.Grant, ratelimit.Rate) error {
	return nil
}

// A 429 that comes anyway pauses the location and puts the task back for
// GHL's interval, without counting a failure; the sync completes.
func TestSync429PutsTheTaskBackWithoutFailure(t *testing.T) {
	t.Parallel()
	testSync429PutsTheTaskBackWithoutFailure(t, testenv.RedisURL)
}

func testSync429PutsTheTaskBackWithoutFailure(t *testing.T, redisURL func(testing.TB) string) {
	e := setupSyncOn(t, redisURL, ghltest.Options{EnforceRateLimit: true, RateLimit: 30, RateInterval: time.Second},
		func(h *tasks.SyncHandlers, s *storetest.Stack) {
			h.Limiter = blindLimiter{&ratelimit.Limiter{Redis: h.Limiter.(*ratelimit.Limiter).Redis, Limit: 1000}}
		}, "loc1")
	e.seed(t, "loc1", 80, 0)
	// The result is the last attempt's: the earlier ones' records are
	// unchanged by then.
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Scanned != 80 || res.Created+res.Unchanged != 80 || res.FailedCount != 0 {
		t.Errorf("result %+v", res)
	}
	if e.Fake.RateLimited("loc1") == 0 {
		t.Error("GHL never answered 429: the test did not test")
	}
	e.checkContacts(t, "loc1", 80)
}

// A pass too big for one run continues in follow-ups, each starting where
// the last stopped; the last result covers the pass and the run log has a
// row per run.
func TestSyncContinuesInBatches(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.BatchSize, h.PageSize = 40, 25 }, "loc1")
	e.seed(t, "loc1", 100, 0)
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Batch != 3 || res.Scanned != 100 || res.Created != 100 || res.Cursor != "p-0099" {
		t.Errorf("result %+v, want 3 runs over 100 patients", res)
	}
	runs, err := e.Store.SyncRuns(context.Background(), "loc1", syncer.KindPatients, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	for _, r := range runs {
		got = append(got, [2]string{r.After, r.Outcome})
		if r.Scanned != r.Created || r.FinishedAt == nil {
			t.Errorf("run %+v", r)
		}
	}
	want := [][2]string{{"p-0079", "completed"}, {"p-0039", "continued"}, {"", "continued"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs, newest first (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(runs[0].TaskID, tasks.TypePatientsSync+":loc1:") || runs[1].ContinuedBy != runs[0].TaskID {
		t.Errorf("follow-up ids: %q continued by %q", runs[1].TaskID, runs[1].ContinuedBy)
	}
}

// One sync of a location runs at a time: a patient sync and an appointment
// sync started together create no contact twice, even for patients with
// neither email nor phone, whom GHL's upsert cannot match.
func TestSyncsOfALocationTakeTurns(t *testing.T) {
	t.Parallel()
	testSyncsOfALocationTakeTurns(t, testenv.RedisURL)
}

func testSyncsOfALocationTakeTurns(t *testing.T, redisURL func(testing.TB) string) {
	e := setupSyncOn(t, redisURL, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 60, 120)
	if err := storetest.DB(t, e.DatabaseURL).Exec(`UPDATE patients SET updated_at = CURRENT_TIMESTAMP, email = '', phone = ''`).Error; err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		for _, newTask := range []func(string) (*asynq.Task, error){tasks.NewPatientsSyncTask, tasks.NewAppointmentsSyncTask} {
			task, _ := newTask("loc1")
			info, err := e.client.Enqueue(task)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, info.ID)
		}
	}
	for _, id := range ids {
		if _, info := pass(t, e.insp, id); info.State != asynq.TaskStateCompleted {
			t.Errorf("task %s: %s", id, info.LastErr)
		}
	}
	if n := len(e.Fake.Contacts("loc1")); n != 60 {
		t.Errorf("%d contacts for 60 patients", n)
	}
	if n := len(e.Fake.Appointments("loc1")); n != 120 {
		t.Errorf("%d appointments, want 120", n)
	}
}

// The fan-out enqueues a sync per active location and says why it left the
// others out.
func TestSyncFanOutSkipsLocationsThatCannotSync(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc-ok", "loc-reauth", "loc-inactive")
	ctx := context.Background()
	if err := e.Store.SetStatus(ctx, "loc-reauth", store.StatusNeedsReauth, "invalid grant"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SetStatus(ctx, "loc-inactive", store.StatusInactive, "not active"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.Connect(ctx, store.Connection{LocationID: "co1", UserType: store.UserTypeCompany,
		Tokens: store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	e.seed(t, "loc-ok", 5, 0)

	fan, results := e.syncAll(t, tasks.NewPatientsSyncTask)
	if len(fan.Enqueued) != 1 || fan.Enqueued[0].LocationID != "loc-ok" || results["loc-ok"].Created != 5 {
		t.Errorf("enqueued %+v, results %+v", fan.Enqueued, results)
	}
	var skipped []string
	for _, s := range fan.Skipped {
		skipped = append(skipped, s.LocationID+": "+strings.SplitN(s.Reason, ":", 2)[0])
	}
	want := []string{"co1: agency (Company) token", "loc-inactive: inactive", "loc-reauth: needs_reauth"}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}

	// A task for the agency itself is refused for good.
	_, info := e.start(t, tasks.NewPatientsSyncTask, "co1")
	if info.State != asynq.TaskStateArchived || !strings.Contains(info.LastErr, "agency") {
		t.Errorf("sync of an agency: %s %s", info.State, info.LastErr)
	}
}

func TestSyncBadPayloadIsNotRetried(t *testing.T) {
	t.Parallel()
	h := &tasks.SyncHandlers{}
	err := h.HandlePatientsSync(context.Background(), asynq.NewTask(tasks.TypePatientsSync, []byte("{")))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("bad payload: %v, want SkipRetry", err)
	}
}
