package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// Refresh runs come back newest first, per location, and only the latest
// KeepRefreshRuns of a location are kept.
func TestRefreshRunsKeepsTheLatest(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range store.KeepRefreshRuns + 5 {
		exp := start.Add(24 * time.Hour)
		noErr(t, st.RecordRefresh(ctx, &store.RefreshRun{LocationID: "loc1", At: start.Add(time.Duration(i) * time.Minute),
			Outcome: "refreshed", ExpiresAt: &exp}))
	}
	noErr(t, st.RecordRefresh(ctx, &store.RefreshRun{LocationID: "loc2", At: start, Outcome: store.RefreshFailed,
		Reason: "ghl_unavailable", Message: "GHL answered 503"}))

	runs, err := st.RefreshRuns(ctx, "loc1", 1000)
	noErr(t, err)
	if len(runs) != store.KeepRefreshRuns {
		t.Fatalf("%d runs of loc1 kept, want %d", len(runs), store.KeepRefreshRuns)
	}
	if want := start.Add(time.Duration(store.KeepRefreshRuns+4) * time.Minute); !runs[0].At.Equal(want) {
		t.Errorf("newest run at %s, want %s", runs[0].At, want)
	}
	if want := start.Add(5 * time.Minute); !runs[len(runs)-1].At.Equal(want) {
		t.Errorf("oldest kept run at %s, want %s (the 5 oldest deleted)", runs[len(runs)-1].At, want)
	}
	other, err := st.RefreshRuns(ctx, "loc2", 10)
	noErr(t, err)
	if len(other) != 1 || other[0].Reason != "ghl_unavailable" || other[0].Message != "GHL answered 503" {
		t.Errorf("loc2's runs = %+v; pruning loc1 must leave them", other)
	}
}

// Every failed patient and appointment of a location is listed with its
// reason and when it was last tried, latest first, and paged; records that
// synced, and other locations', are not.
func TestFailedRecords(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	at := func(m int) *time.Time { t := time.Date(2025, 3, 1, 10, m, 0, 0, time.UTC); return &t }
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "p-1", ContactID: "c1", SentHash: "h"}))
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: "p-2", FailedHash: "f",
		LastError: "GHL refused it: 422 Unprocessable Entity: email must be an email", FailedAt: at(1)}))
	noErr(t, st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc2", ExternalID: "p-9", FailedHash: "f",
		LastError: "elsewhere", FailedAt: at(9)}))
	noErr(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: "a-1", FailedHash: "f",
		LastError: "patient p-2: GHL refused it", FailedAt: at(3)}))
	for i := range 3 {
		noErr(t, st.SaveAppointmentSync(ctx, &store.AppointmentSync{LocationID: "loc1", ExternalID: fmt.Sprintf("a-old%d", i),
			FailedHash: "f", LastError: "old", FailedAt: at(0)}))
	}

	got, total, err := st.FailedRecords(ctx, "loc1", 0, 2)
	noErr(t, err)
	want := []store.FailedRecord{
		{Kind: "appointments", ExternalID: "a-1", Reason: "patient p-2: GHL refused it", FailedAt: at(3)},
		{Kind: "patients", ExternalID: "p-2", Reason: "GHL refused it: 422 Unprocessable Entity: email must be an email", FailedAt: at(1)},
	}
	if diff := cmp.Diff(want, got); diff != "" || total != 5 {
		t.Errorf("first page: total %d (want 5); (-want +got):\n%s", total, diff)
	}
	rest, _, err := st.FailedRecords(ctx, "loc1", 2, 10)
	noErr(t, err)
	if len(rest) != 3 || rest[0].ExternalID != "a-old0" || rest[2].ExternalID != "a-old2" {
		t.Errorf("second page = %+v, want a-old0..2", rest)
	}
}
