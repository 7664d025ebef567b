package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// An incremental read returns the rows changed since a time and the
// records whose last sync failed, each once, in key order, a page at a
// time: not a failed record deleted (deleted_at) or gone from the table,
// nor one of another location, nor one whose failure was cleared. The
// migrations create the partial indexes that read uses.
func TestIncrementalReadIncludesFailedRecords(t *testing.T) {
	t.Parallel()
	st, dbURL := storetest.Open(t, "")
	db := storetest.DB(t, dbURL)
	ctx := context.Background()
	for _, ix := range []string{"sync_patients_failed", "sync_appointments_failed"} {
		var n int64
		q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
		if st.Postgres() {
			q = `SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?`
		}
		if err := db.Raw(q, ix).Scan(&n).Error; err != nil || n != 1 {
			t.Errorf("index %s: %d, %v; want the migration's", ix, n, err)
		}
	}

	now, err := st.DatabaseNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-time.Hour).UTC()
	since := now.Add(-10 * time.Minute)
	failedAt := now.Add(-2 * time.Hour)
	var ps []store.Patient
	var as []store.Appointment
	for i := range 12 {
		id := fmt.Sprintf("r-%02d", i)
		ps = append(ps, store.Patient{LocationID: "loc1", ExternalID: id, UpdatedAt: old})
		as = append(as, store.Appointment{LocationID: "loc1", ExternalID: id, PatientExternalID: "r-00", CalendarID: "cal",
			StartsAt: old, EndsAt: old.Add(time.Hour), UpdatedAt: old})
	}
	ps = append(ps, store.Patient{LocationID: "loc2", ExternalID: "r-05", UpdatedAt: old})
	must(t, st.InsertPatients(ctx, ps))
	must(t, st.InsertAppointments(ctx, as))
	for _, table := range []string{"patients", "appointments"} {
		// Changed: 01, 04, 07 (07 also failed); deleted and changed: 10.
		must(t, db.Exec(`UPDATE `+table+` SET updated_at = CURRENT_TIMESTAMP WHERE location_id = 'loc1' AND external_id IN ('r-01', 'r-04', 'r-07', 'r-10')`).Error)
		must(t, db.Exec(`UPDATE `+table+` SET deleted_at = CURRENT_TIMESTAMP WHERE location_id = 'loc1' AND external_id IN ('r-10', 'r-11')`).Error)
	}
	// Failed: 02, 05, 07, 08; 11 (deleted), 12 (not in the table);
	// cleared: 03; loc2's 05 failed, loc1's 06 did not.
	for _, id := range []string{"r-02", "r-05", "r-07", "r-08", "r-11", "r-12"} {
		must(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: id, FailedHash: "h", LastError: "bad", FailedAt: &failedAt}))
		must(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: id, LastError: "no owner", FailedAt: &failedAt}))
	}
	must(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "r-03", SentHash: "h", ContactID: "c3"}))
	must(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc2", ExternalID: "r-05", FailedHash: "h", FailedAt: &failedAt}))
	must(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: "r-06", EventID: "e6", SentHash: "h"}))

	want := []string{"r-01", "r-02", "r-04", "r-05", "r-07", "r-08"}
	for _, limit := range []int{100, 2, 1} {
		var patients, appointments []string
		for after := ""; ; {
			page, err := st.PatientPageSince(ctx, "loc1", after, &since, limit)
			must(t, err)
			for _, p := range page {
				patients = append(patients, p.ExternalID)
				if failed := slices.Contains([]string{"r-02", "r-05", "r-07", "r-08"}, p.ExternalID); failed != (p.Sync.FailedAt != nil) {
					t.Errorf("patient %s: sync state %+v", p.ExternalID, p.Sync)
				}
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].ExternalID
		}
		for after := ""; ; {
			page, err := st.AppointmentPageSince(ctx, "loc1", after, &since, limit)
			must(t, err)
			for _, a := range page {
				appointments = append(appointments, a.ExternalID)
				if a.ExternalID == "r-05" && a.Sync.LastError != "no owner" {
					t.Errorf("appointment r-05: sync state %+v", a.Sync)
				}
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].ExternalID
		}
		if !slices.Equal(patients, want) || !slices.Equal(appointments, want) {
			t.Errorf("pages of %d: patients %v, appointments %v; want %v", limit, patients, appointments, want)
		}
	}
	if all, err := st.PatientPageSince(ctx, "loc1", "", nil, 100); err != nil || len(all) != 10 {
		t.Errorf("every row: %d, %v; want the 10 not deleted", len(all), err)
	}
}
