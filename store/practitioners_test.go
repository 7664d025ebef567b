package store_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// The practitioners table and appointments.practitioner_external_id take
// the clinic's plain SQL, as the README gives it, and an appointment's
// page row carries its practitioner and its calendar's default user.
func TestPractitionersTakePlainSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	db := store.DBOf(st).WithContext(ctx)
	noErr(t, db.Exec(`INSERT INTO practitioners (location_id, external_id, name, email, ghl_user_id)
		VALUES ('loc1', 'pr-1', 'Dr Ada', 'ada@example.com', 'u-ada')`).Error)
	noErr(t, db.Exec(`INSERT INTO practitioners (location_id, external_id, name, email)
		VALUES ('loc1', 'pr-2', 'Dr Bob', 'bob@example.com')`).Error)
	noErr(t, db.Exec(`INSERT INTO practitioners (location_id, external_id) VALUES ('loc2', 'pr-1')`).Error)
	if err := db.Exec(`INSERT INTO practitioners (location_id, external_id) VALUES ('loc1', 'pr-1')`).Error; err == nil {
		t.Error("a second practitioner pr-1 in loc1 was accepted: (location_id, external_id) must be unique")
	}
	// Named, and left out as before the column existed.
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at, practitioner_external_id)
		VALUES ('loc1', 'a-1', 'p-1', 'cal1', '2025-03-04 09:00:00', '2025-03-04 09:45:00', 'pr-1')`).Error)
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at, practitioner_external_id)
		VALUES ('loc1', 'a-2', 'p-1', 'cal2', '2025-03-04 10:00:00', '2025-03-04 10:45:00', 'pr-2')`).Error)
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at) VALUES ('loc1', 'a-3', 'p-1', 'cal2', '2025-03-04 11:00:00', '2025-03-04 11:45:00')`).Error)
	noErr(t, db.Exec(`INSERT INTO appointments (location_id, external_id, patient_external_id, calendar_id,
		starts_at, ends_at, practitioner_external_id)
		VALUES ('loc1', 'a-4', 'p-1', 'cal1', '2025-03-04 12:00:00', '2025-03-04 12:45:00', 'pr-nobody')`).Error)
	// The README's SQL for a calendar's default user.
	noErr(t, db.Exec(`INSERT INTO calendar_settings (location_id, calendar_id, default_user_id)
		VALUES ('loc1', 'cal2', 'u-front-desk')`).Error)

	appts, err := st.AppointmentPage(ctx, "loc1", "", 10)
	noErr(t, err)
	type owner struct {
		Practitioner string
		Row          *store.PractitionerRow
		Default      string
	}
	var got []owner
	for _, a := range appts {
		got = append(got, owner{a.PractitionerExternalID, a.Practitioner, a.DefaultUserID})
	}
	want := []owner{
		{"pr-1", &store.PractitionerRow{Name: "Dr Ada", Email: "ada@example.com", GHLUserID: "u-ada"}, ""},
		{"pr-2", &store.PractitionerRow{Name: "Dr Bob", Email: "bob@example.com"}, "u-front-desk"},
		{"", nil, "u-front-desk"},
		{"pr-nobody", nil, ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("owners of the appointments (-want +got):\n%s", diff)
	}
}

// A calendar's default user is set, replaced and cleared; ids are checked.
func TestCalendarDefaultUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	noErr(t, st.SetCalendarDefaultUser(ctx, "loc1", "cal1", "u-1"))
	noErr(t, st.SetCalendarDefaultUser(ctx, "loc1", "cal2", "u-2"))
	noErr(t, st.SetCalendarDefaultUser(ctx, "loc1", "cal1", "u-3"))
	noErr(t, st.SetCalendarDefaultUser(ctx, "loc2", "cal1", "u-9"))
	got, err := st.CalendarSettings(ctx, "loc1")
	noErr(t, err)
	var pairs [][2]string
	for _, cs := range got {
		pairs = append(pairs, [2]string{cs.CalendarID, cs.DefaultUserID})
		if cs.UpdatedAt.IsZero() {
			t.Errorf("%s has no updated_at", cs.CalendarID)
		}
	}
	if diff := cmp.Diff([][2]string{{"cal1", "u-3"}, {"cal2", "u-2"}}, pairs); diff != "" {
		t.Errorf("settings of loc1 (-want +got):\n%s", diff)
	}
	noErr(t, st.SetCalendarDefaultUser(ctx, "loc1", "cal1", ""))
	if got, _ := st.CalendarSettings(ctx, "loc1"); len(got) != 2 || got[0].DefaultUserID != "" {
		t.Errorf("after clearing cal1: %+v", got)
	}
	if err := st.SetCalendarDefaultUser(ctx, "loc1", "", "u-1"); err == nil || !strings.Contains(err.Error(), "calendar") {
		t.Errorf("an empty calendar id: %v, want an error naming it", err)
	}
	if err := st.SetCalendarDefaultUser(ctx, "loc1", "cal1", strings.Repeat("u", store.MaxIDLen+1)); !errors.Is(err, store.ErrTooLong) {
		t.Errorf("a too long user id: %v, want ErrTooLong", err)
	}
}

// appointmentBefore is the appointments table as the release before
// practitioners created it.
type appointmentBefore struct {
	ID                int64     `gorm:"primaryKey;autoIncrement"`
	LocationID        string    `gorm:"size:255;not null;uniqueIndex:appointments_location_external,priority:1"`
	ExternalID        string    `gorm:"size:128;not null;uniqueIndex:appointments_location_external,priority:2"`
	PatientExternalID string    `gorm:"size:128;not null"`
	CalendarID        string    `gorm:"size:255;not null"`
	StartsAt          time.Time `gorm:"not null"`
	EndsAt            time.Time `gorm:"not null"`
	Title             string    `gorm:"size:255;not null;default:''"`
	Status            string    `gorm:"size:16;not null;default:booked"`
	UpdatedAt         time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

func (appointmentBefore) TableName() string { return "appointments" }

// A database with appointments from before the column migrates, its rows
// getting no practitioner.
func TestMigrateAddsPractitionerColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.DatabaseURL(t)
	db := storetest.DB(t, dbURL)
	noErr(t, db.AutoMigrate(&appointmentBefore{}))
	start := time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)
	noErr(t, db.Create(&appointmentBefore{LocationID: "loc1", ExternalID: "a-1", PatientExternalID: "p-1",
		CalendarID: "cal1", StartsAt: start, EndsAt: start.Add(time.Hour), Status: "booked", UpdatedAt: start}).Error)
	st, err := store.Open(ctx, dbURL, testenv.Cipher(t, testenv.NewKey(t)))
	noErr(t, err)
	t.Cleanup(func() { st.Close() })
	noErr(t, st.Migrate(ctx))
	appts, err := st.AppointmentPage(ctx, "loc1", "", 10)
	noErr(t, err)
	if len(appts) != 1 || appts[0].ExternalID != "a-1" || appts[0].PractitionerExternalID != "" || appts[0].Practitioner != nil {
		t.Fatalf("the row from before the migration: %+v", appts)
	}
}

// The README's SQL for practitioners, appointments with one and calendar
// settings (its complete blocks, those without "...") runs as given, twice
// (the second time as updates), on the database under test.
func TestReadmeSQLRuns(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	noErr(t, err)
	st, _ := storetest.Open(t, "")
	db := store.DBOf(st)
	ran := 0
	for _, block := range strings.Split(string(readme), "```sql\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "...") {
			continue
		}
		for _, stmt := range strings.Split(block, ";\n") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			for range 2 {
				noErr(t, db.Exec(stmt).Error)
			}
			ran++
		}
	}
	if ran < 3 {
		t.Fatalf("%d statements of the README ran, want its practitioners, appointments and calendar_settings SQL", ran)
	}
	appts, err := st.AppointmentPage(context.Background(), "ve9EPM428h8vShlRW1KT", "", 10)
	noErr(t, err)
	// Other sections' SQL books appointments of the location too: find
	// the one with the practitioner.
	i := slices.IndexFunc(appts, func(a store.AppointmentRow) bool { return a.PractitionerExternalID != "" })
	if i < 0 || appts[i].Practitioner == nil || appts[i].Practitioner.Email != "grace@example.com" ||
		appts[i].DefaultUserID != "GHL_USER_ID" {
		t.Errorf("the README's rows: %+v", appts)
	}
}
