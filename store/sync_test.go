package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The clinic system writes the source tables with plain SQL naming only
// DESIGN.md's columns; everything else has a default.
func TestSourceTablesTakePlainSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	db := store.DBOf(st).WithContext(ctx)
	noErr(t, db.Exec(`INSERT INTO patients (location_id, external_id, first_name, last_name, email, phone,
		date_of_birth, address1, city, postal_code, country, updated_at)
		VALUES ('loc1', 'p-2', 'Ada', 'Lovelace', 'ada@example.com', '+44 20 1234', '1815-12-10', '1 Main St',
			'London', 'N1', 'GB', '2025-03-01 10:00:00')`).Error)
	noErr(t, db.Exec(`INSERT INTO patients (location_id, external_id) VALUES ('loc1', 'p-1')`).Error)
	noErr(t, db.Exec(`INSERT INTO patients (location_id, external_id) VALUES ('loc2', 'p-1')`).Error)
	if err := db.Exec(`INSERT INTO patients (location_id, external_id) VALUES ('loc1', 'p-1')`).Error; err == nil {
		t.Error("a second patient p-1 in loc1 was accepted: (location_id, external_id) must be unique")
	}
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at, title, status, updated_at)
		VALUES ('loc1', 'a-1', 'p-2', 'cal1', '2025-03-03 10:00:00+01:00', '2025-03-03 10:30:00+01:00', 'Knee',
			'confirmed', '2025-03-01 10:00:00')`).Error)
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at) VALUES ('loc1', 'a-2', 'p-1', 'cal1', '2025-03-04 09:00:00', '2025-03-04 09:45:00')`).Error)

	patients, err := st.PatientPage(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(patients) != 2 {
		t.Fatalf("%d patients of loc1, want 2", len(patients))
	}
	// The newer columns' defaults, raw: dnd as each database returns a
	// boolean.
	dnd := "0"
	if st.Postgres() {
		dnd = "false"
	}
	want := store.PatientRow{ExternalID: "p-2", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com",
		Phone: "+44 20 1234", Address1: "1 Main St", City: "London", PostalCode: "N1", Country: "GB",
		Tags: "[]", DND: dnd, Consent: "{}", CustomFields: "{}"}
	got := patients[1]
	dob, err := store.ParseTime(got.DateOfBirth)
	if err != nil || !dob.Equal(time.Date(1815, 12, 10, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date_of_birth %q reads as %s, %v", got.DateOfBirth, dob, err)
	}
	got.DateOfBirth = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patient p-2 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(store.PatientRow{ExternalID: "p-1", Tags: "[]", DND: dnd, Consent: "{}", CustomFields: "{}"}, patients[0]); diff != "" {
		t.Errorf("patient p-1, inserted with its key only (-want +got):\n%s", diff)
	}

	appts, err := st.AppointmentPage(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(appts) != 2 || appts[1].Status != "booked" || appts[1].Title != "" {
		t.Fatalf("appointments = %+v, want a-2 booked by default", appts)
	}
	start, err := store.ParseTime(appts[0].StartsAt)
	if err != nil || !start.Equal(time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("starts_at %q reads as %s, %v, want 09:00 UTC", appts[0].StartsAt, start, err)
	}
	start, err = store.ParseTime(appts[1].StartsAt)
	if err != nil || !start.Equal(time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("starts_at %q without an offset reads as %s, %v, want UTC", appts[1].StartsAt, start, err)
	}
}

// A value nobody can read fails its own record only.
func TestUnreadableDateComesBackRaw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	if st.Postgres() {
		t.Skip("PostgreSQL refuses an unreadable date at INSERT")
	}
	noErr(t, store.DBOf(st).Exec(`INSERT INTO patients (location_id, external_id, date_of_birth) VALUES ('loc1', 'p-1', '17/05/1980')`).Error)
	patients, err := st.PatientPage(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(patients) != 1 || patients[0].DateOfBirth != "17/05/1980" {
		t.Fatalf("patients = %+v", patients)
	}
	if _, err := store.ParseTime(patients[0].DateOfBirth); !errors.Is(err, store.ErrBadTime) {
		t.Errorf("ParseTime = %v, want ErrBadTime", err)
	}
}

func TestPatientPageWalksInKeyOrderWithState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	var rows []store.Patient
	for i := range 2500 {
		rows = append(rows, store.Patient{LocationID: "loc1", ExternalID: fmt.Sprintf("p-%05d", 2499-i)})
	}
	rows = append(rows, store.Patient{LocationID: "loc2", ExternalID: "p-00001"})
	noErr(t, store.DBOf(st).CreateInBatches(rows, 500).Error)
	sent := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "p-01000",
		ContactID: "c-1", SentHash: "h1", SentAt: &sent}))

	var seen []string
	after := ""
	for {
		page, err := st.PatientPage(ctx, "loc1", after, 1000)
		noErr(t, err)
		for _, p := range page {
			seen = append(seen, p.ExternalID)
			switch {
			case p.ExternalID == "p-01000" && (p.Sync.ContactID != "c-1" || p.Sync.SentHash != "h1" || !p.Sync.SentAt.Equal(sent)):
				t.Errorf("state of p-01000 = %+v", p.Sync)
			case p.ExternalID != "p-01000" && p.Sync.LocationID != "":
				t.Errorf("%s has state %+v, want none", p.ExternalID, p.Sync)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ExternalID
	}
	if len(seen) != 2500 || seen[0] != "p-00000" || seen[2499] != "p-02499" {
		t.Fatalf("walked %d patients from %s to %s", len(seen), seen[0], seen[len(seen)-1])
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("%s after %s", seen[i], seen[i-1])
		}
	}
}

func TestSyncStateIsWrittenWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	noErr(t, store.DBOf(st).Create(&store.Patient{LocationID: "loc1", ExternalID: "p-1"}).Error)
	now := time.Now().UTC().Truncate(time.Second)
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "p-1",
		CreatingAt: &now, FailedHash: "f", LastError: "422", FailedAt: &now}))
	// Clearing fields must clear them: zero values are written too.
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "p-1", ContactID: "c-1", SentHash: "h"}))
	p, err := st.PatientByExternalID(ctx, "loc1", "p-1")
	noErr(t, err)
	want := store.PatientSync{LocationID: "loc1", ExternalID: "p-1", ContactID: "c-1", SentHash: "h"}
	if diff := cmp.Diff(want, p.Sync); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if _, err := st.PatientByExternalID(ctx, "loc1", "p-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PatientByExternalID of a missing patient = %v, want ErrNotFound", err)
	}
}

func TestAppointmentStateHoldsAnEventOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	start := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	noErr(t, store.DBOf(st).Create(&store.Appointment{LocationID: "loc1", ExternalID: "a-1", PatientExternalID: "p-1",
		CalendarID: "cal1", StartsAt: start, EndsAt: start.Add(time.Hour)}).Error)
	noErr(t, store.DBOf(st).Create(&store.PatientSync{LocationID: "loc1", ExternalID: "p-1", ContactID: "c-1"}).Error)

	intent := store.AppointmentSync{LocationID: "loc1", ExternalID: "a-1", CreatingAt: &start,
		IntentContactID: "c-1", IntentCalendarID: "cal1", IntentStartsAt: &start, IntentHash: "h"}
	noErr(t, st.SaveAppointmentSync(ctx, &intent))
	// Any number of appointments may hold no event yet.
	noErr(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: "a-2"}))
	page, err := st.AppointmentPage(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(page) != 1 || page[0].ContactID != "c-1" || !page[0].Sync.IntentStartsAt.Equal(start) || page[0].Sync.IntentHash != "h" {
		t.Fatalf("page = %+v", page)
	}

	noErr(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: "a-1", EventID: "ev-1"}))
	err = st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: "a-2", EventID: "ev-1"})
	if !errors.Is(err, store.ErrDuplicateEvent) {
		t.Errorf("a second holder of ev-1: %v, want ErrDuplicateEvent", err)
	}
	holders, err := st.EventHolders(ctx, "loc1", []string{"ev-1", "ev-2"})
	noErr(t, err)
	if diff := cmp.Diff(map[string]string{"ev-1": "a-1"}, holders); diff != "" {
		t.Errorf("EventHolders (-want +got):\n%s", diff)
	}
}

func TestSyncRunLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	r := &store.SyncRun{Kind: "patients", LocationID: "loc1", TaskID: "t-1"}
	noErr(t, st.StartSyncRun(ctx, r))
	runs, err := st.SyncRuns(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(runs) != 1 || runs[0].Outcome != "running" || runs[0].FinishedAt != nil {
		t.Fatalf("runs after start = %+v", runs)
	}
	r.Outcome, r.Scanned, r.Created, r.Cursor, r.ContinuedBy = "continued", 500, 20, "p-499", "t-2"
	noErr(t, st.FinishSyncRun(ctx, r))
	runs, err = st.SyncRuns(ctx, "loc1", "patients", 10)
	noErr(t, err)
	got := runs[0]
	if got.Outcome != "continued" || got.Scanned != 500 || got.Created != 20 || got.Cursor != "p-499" ||
		got.ContinuedBy != "t-2" || got.FinishedAt == nil {
		t.Errorf("run = %+v", got)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	for _, s := range []string{"2025-03-03T10:00:00+01:00", "2025-03-03 09:00:00", "2025-03-03T09:00:00Z",
		"2025-03-03 10:00:00.000+01:00", " 2025-03-03 09:00 ", "1740992400"} {
		got, err := store.ParseTime(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %s, %v, want %s", s, got, err, want)
		}
	}
	for _, s := range []string{"", "03/03/2025", "tomorrow"} {
		if _, err := store.ParseTime(s); !errors.Is(err, store.ErrBadTime) || !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
			t.Errorf("ParseTime(%q) = %v, want ErrBadTime naming the value", s, err)
		}
	}
}

// A sync's per-record writes are one statement each, sent without the
// BEGIN and COMMIT GORM wraps a write in by default: they are atomic on
// their own, and at GHL's limit a location writes two of them per contact.
func TestSyncStateWritesAreSingleStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var n atomic.Int64
	now := time.Now().UTC()
	st, _ := storetest.Open(t, "", store.CountStatements(&n))
	count := func(name string, want int64, write func() error) {
		t.Helper()
		n.Store(0)
		noErr(t, write())
		if got := n.Load(); got != want {
			t.Errorf("%s sent %d statements, want %d", name, got, want)
		}
	}
	ps := &store.PatientSync{LocationID: "loc1", ExternalID: "p-1", CreatingAt: &now}
	count("SavePatientSync", 1, func() error { return st.SavePatientSync(ctx, ps) })
	as := &store.AppointmentSync{LocationID: "loc1", ExternalID: "a-1", EventID: "ev1"}
	count("SaveAppointmentSync", 1, func() error { return st.SaveAppointmentSync(ctx, as) })
	count("RecordSent", 1, func() error {
		return st.RecordSent(ctx, "loc1", store.RecordContact, "p-1", "", store.FieldHashes{"email": "h"})
	})
	run := &store.SyncRun{Kind: "patients", LocationID: "loc1", TaskID: "t1"}
	count("StartSyncRun", 1, func() error { return st.StartSyncRun(ctx, run) })
	run.Outcome = "completed"
	count("FinishSyncRun", 1, func() error { return st.FinishSyncRun(ctx, run) })
}

// RecordSent merges what it is given into what was recorded of the
// record, keeps the GHL id when given none, and merges a row whose fields
// do not parse (written by hand) as empty.
func TestRecordSentMerges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dbURL := storetest.Open(t, "")
	record := func(ext, ghlID string, h store.FieldHashes) {
		t.Helper()
		noErr(t, st.RecordSent(ctx, "loc1", store.RecordContact, ext, ghlID, h))
	}
	record("p-1", "", store.FieldHashes{"email": "e1", "phone": "f1"})
	record("p-1", "c-1", store.FieldHashes{"email": "e2"})
	record("p-1", "", store.FieldHashes{"city": "c1"})
	got, err := st.Sent(ctx, "loc1", store.RecordContact, "p-1")
	noErr(t, err)
	if diff := cmp.Diff(store.FieldHashes{"email": "e2", "phone": "f1", "city": "c1"}, got); diff != "" {
		t.Errorf("Sent (-want +got):\n%s", diff)
	}
	db := storetest.DB(t, dbURL).WithContext(ctx)
	var ghlID string
	noErr(t, db.Raw(`SELECT ghl_id FROM sync_sent_fields WHERE location_id = 'loc1' AND external_id = 'p-1'`).Scan(&ghlID).Error)
	if ghlID != "c-1" {
		t.Errorf("ghl_id %q, want c-1: a write without one keeps it", ghlID)
	}

	record("p-2", "c-2", store.FieldHashes{"email": "e1"})
	noErr(t, db.Exec(`UPDATE sync_sent_fields SET fields = 'not json' WHERE location_id = 'loc1' AND external_id = 'p-2'`).Error)
	record("p-2", "", store.FieldHashes{"phone": "f2"})
	got, err = st.Sent(ctx, "loc1", store.RecordContact, "p-2")
	noErr(t, err)
	if diff := cmp.Diff(store.FieldHashes{"phone": "f2"}, got); diff != "" {
		t.Errorf("Sent after a hand-written row (-want +got):\n%s", diff)
	}
}
