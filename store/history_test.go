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

// The refreshes SaveRefreshedLogged stores prune their location's history
// only now and then, so the history may pass KeepRefreshRuns, but by
// fewer than 10 runs, and comes back to KeepRefreshRuns at the next prune,
// keeping the newest; RecordRefresh prunes at once.
func TestSaveRefreshedLoggedBoundsTheHistory(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	noErr(t, st.Connect(ctx, store.Connection{LocationID: "loc1", Tokens: store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Now()}}))
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	most, over := 0, false
	for i := range store.KeepRefreshRuns + 35 {
		at := start.Add(time.Duration(i) * time.Minute)
		exp := at.Add(24 * time.Hour)
		noErr(t, st.SaveRefreshedLogged(ctx, "loc1", int64(i+1), store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: exp}, at,
			&store.RefreshRun{LocationID: "loc1", At: at, Outcome: "refreshed", ExpiresAt: &exp}))
		runs, err := st.RefreshRuns(ctx, "loc1", 1000)
		noErr(t, err)
		most = max(most, len(runs))
		over = over || len(runs) > store.KeepRefreshRuns
		if len(runs) >= store.KeepRefreshRuns+10 {
			t.Fatalf("after %d refreshes %d runs kept, want fewer than %d", i+1, len(runs), store.KeepRefreshRuns+10)
		}
		if !runs[0].At.Equal(at) {
			t.Fatalf("after %d refreshes the newest run is at %s, want %s", i+1, runs[0].At, at)
		}
	}
	if !over {
		t.Errorf("the history never passed %d runs: pruned at every refresh", store.KeepRefreshRuns)
	}
	// The loop's last token is of version 136: the prune came at 130.
	runs, err := st.RefreshRuns(ctx, "loc1", 1000)
	noErr(t, err)
	if len(runs) != store.KeepRefreshRuns+6 {
		t.Errorf("%d runs after 6 refreshes past a prune, want %d (most seen %d)", len(runs), store.KeepRefreshRuns+6, most)
	}
	if want := start.Add(time.Duration(35-6) * time.Minute); !runs[len(runs)-1].At.Equal(want) {
		t.Errorf("oldest kept run at %s, want %s", runs[len(runs)-1].At, want)
	}
	noErr(t, st.RecordRefresh(ctx, &store.RefreshRun{LocationID: "loc1", Outcome: store.RefreshFailed}))
	runs, err = st.RefreshRuns(ctx, "loc1", 1000)
	noErr(t, err)
	if len(runs) != store.KeepRefreshRuns {
		t.Errorf("%d runs after RecordRefresh, want %d", len(runs), store.KeepRefreshRuns)
	}
}
