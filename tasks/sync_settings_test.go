package tasks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
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

// bodyRecorder is a transport that keeps the body of every request it
// sends: what the fake saw.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies []recordedBody
}

type recordedBody struct {
	method, path string
	body         []byte
}

func (b *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		raw, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(raw))
		b.mu.Lock()
		b.bodies = append(b.bodies, recordedBody{req.Method, req.URL.Path, raw})
		b.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// keys returns the JSON object keys of every recorded body of a request
// whose path starts with prefix, and how many such bodies there were.
func (b *bodyRecorder) keys(t *testing.T, prefix string) (map[string]int, int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, n := map[string]int{}, 0
	for _, r := range b.bodies {
		if !strings.HasPrefix(r.path, prefix) || r.path == "/oauth/token" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &m); err != nil {
			continue // a search or a tags call: not a record's body
		}
		n++
		for k := range m {
			keys[k]++
		}
	}
	return keys, n
}

func (b *bodyRecorder) reset() {
	b.mu.Lock()
	b.bodies = nil
	b.mu.Unlock()
}

// recordBodies makes the sync's GHL calls through a bodyRecorder.
func recordBodies(rec *bodyRecorder) func(*tasks.SyncHandlers, *storetest.Stack) {
	return func(h *tasks.SyncHandlers, stack *storetest.Stack) {
		c, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID,
			ClientSecret: storetest.ClientSecret, HTTPClient: &http.Client{Transport: rec}})
		if err != nil {
			panic(err)
		}
		h.Engine.Contacts, h.Engine.Calendars, h.Engine.Users, h.Engine.Locations = c.Contacts, c.Calendars, c.Users, c.Locations
	}
}

// Issue 10, must-show 5: a location whose allow-list leaves out dates of
// birth and appointment titles: no request body the fake saw holds either,
// and GHL holds neither. A title template then titles the appointments
// from what it may show (GHL's calendar name, the status), and allowing
// dates of birth again sends them: the hash covers both settings.
func TestSyncAllowListKeepsFieldsOutOfGHL(t *testing.T) {
	t.Parallel()
	rec := &bodyRecorder{}
	e := newSyncEnv(t, ghltest.Options{}, recordBodies(rec), "loc1")
	e.seed(t, "loc1", 10, 10)
	e.exec(t, "UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, address = 'Room 4, 1 Clinic Way'")
	ctx := context.Background()
	ls := store.DefaultSettings("loc1")
	allBut := "patient.first_name,patient.last_name,patient.email,patient.phone,patient.address"
	for _, kv := range [][2]string{{"fields", allBut}} {
		k, err := store.LookupSettingKey(kv[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Set(&ls, kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)

	contactKeys, nc := rec.keys(t, "/contacts")
	apptKeys, na := rec.keys(t, "/calendars/events")
	if nc < 10 || na != 10 {
		t.Fatalf("%d contact and %d appointment bodies, want 10 or more and 10", nc, na)
	}
	if contactKeys["dateOfBirth"] != 0 || apptKeys["title"] != 0 || apptKeys["address"] != 0 {
		t.Errorf("bodies with dateOfBirth %d, with title %d, with address %d; want none",
			contactKeys["dateOfBirth"], apptKeys["title"], apptKeys["address"])
	}
	if contactKeys["firstName"] == 0 || contactKeys["address1"] == 0 {
		t.Errorf("contact bodies' keys %v: the allowed fields were not sent", contactKeys)
	}
	for _, c := range e.Fake.Contacts("loc1") {
		if c.DateOfBirth != "" {
			t.Errorf("contact %s has date of birth %q", c.ID, c.DateOfBirth)
		}
	}
	for _, a := range e.Fake.Appointments("loc1") {
		if a.Title != "" {
			t.Errorf("appointment %s has title %q", a.ID, a.Title)
		}
	}

	// A title template that shows what it may: every appointment goes
	// again (its hash covers the template), titled by it.
	rec.reset()
	k, _ := store.LookupSettingKey("title_template")
	if err := k.Set(&ls, "{{calendar}} {{status}}: session"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	if run.Updated != 10 {
		t.Errorf("%d appointments updated after the title template changed, want 10", run.Updated)
	}
	for _, a := range e.Fake.Appointments("loc1") {
		if !strings.HasPrefix(a.Title, "Physio ") || !strings.HasSuffix(a.Title, ": session") || strings.Contains(a.Title, "Session") {
			t.Errorf("appointment %s titled %q, want \"Physio STATUS: session\"", a.ID, a.Title)
		}
	}
	rec.mu.Lock()
	for _, r := range rec.bodies {
		if bytes.Contains(r.body, []byte("Session ")) {
			t.Errorf("%s %s sent a clinic title: %s", r.method, r.path, r.body)
		}
	}
	rec.mu.Unlock()

	// Dates of birth and appointment addresses allowed: every patient and
	// appointment goes again, and GHL has them.
	k, _ = store.LookupSettingKey("fields")
	if err := k.Set(&ls, allBut+",patient.date_of_birth,appointment.address"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	run = e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	if run.Updated != 10 {
		t.Errorf("%d patients updated after the allow-list changed, want 10", run.Updated)
	}
	withDOB := 0
	for _, c := range e.Fake.Contacts("loc1") {
		if c.DateOfBirth != "" {
			withDOB++
		}
	}
	if withDOB != 5 {
		t.Errorf("%d contacts with a date of birth, want the 5 patients that have one", withDOB)
	}
	if run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments); run.Updated != 10 {
		t.Errorf("%d appointments updated after the allow-list changed, want 10", run.Updated)
	}
	for _, a := range e.Fake.Appointments("loc1") {
		if a.Address != "Room 4, 1 Clinic Way" {
			t.Errorf("appointment %s has address %q, want the row's", a.ID, a.Address)
		}
	}
}

// Settings written with plain SQL around the CLI's checks (an allow-list
// name the sync does not know would keep every field back unnoticed) stop
// the location's sync with a reason that names them; nothing is sent.
func TestSyncRefusesSettingsWrittenAroundTheCLI(t *testing.T) {
	t.Parallel()
	e := newSyncEnv(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 3, 3)
	e.exec(t, "INSERT INTO location_settings (location_id, fields, updated_at) VALUES ('loc1', 'patient.dob', CURRENT_TIMESTAMP)")
	for _, newTask := range []func(string) (*asynq.Task, error){tasks.NewPatientsSyncTask, tasks.NewAppointmentsSyncTask} {
		err := e.runSync(context.Background(), t, newTask)
		if err == nil || !strings.Contains(err.Error(), "location_settings of loc1") || !strings.Contains(err.Error(), "patient.dob") {
			t.Errorf("sync: %v, want the settings named", err)
		}
	}
	if st := e.Fake.Stats(); st.ContactCreates["loc1"]+st.AppointmentCreates["loc1"] != 0 {
		t.Errorf("%d contacts and %d appointments created", st.ContactCreates["loc1"], st.AppointmentCreates["loc1"])
	}
}
