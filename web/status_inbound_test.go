package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/store"
)

// The location page says how many changes from GHL wait in the inbox, how
// many conflicts were left alone, and what the last reconciliation found.
func TestLocationPageShowsTheInboxAndTheLastReconciliation(t *testing.T) {
	t.Parallel()
	e := setupPages(t)
	ctx := context.Background()
	e.Connect(t, "loc1", time.Now().Add(24*time.Hour))
	page := func() string {
		rec := e.do(http.MethodGet, "/locations/loc1", "watch:v1ew", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /locations/loc1: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	if body := page(); !strings.Contains(body, "holds 0 changes") || !strings.Contains(body, "Last reconciliation: none yet") {
		t.Fatalf("before anything:\n%s", body)
	}
	for _, c := range []store.Change{
		{EventID: "e1", LocationID: "loc1", Kind: store.ChangeContactUpdated, GHLID: "c1"},
		{EventID: "e2", LocationID: "loc1", Kind: store.ChangeContactConflict, GHLID: "c2"},
	} {
		if _, err := e.Store.AddChange(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	done := time.Now().UTC()
	if err := e.Store.SaveReconcileRun(ctx, &store.ReconcileRun{LocationID: "loc1", StartedAt: done.Add(-time.Second), FinishedAt: &done,
		Outcome: "completed", Contacts: 45, Missing: 20, Duplicates: 5, Changes: 2, AppointmentChanges: 4, Calls: 3}); err != nil {
		t.Fatal(err)
	}
	body := page()
	for _, want := range []string{"holds 2 changes of this location, 2 not processed", "1 conflicts</span> were left alone",
		"45 contacts in GHL, 20 missing (sent again), 5 duplicates, 2 contact changes and 4 appointment changes no webhook delivered, 3 GHL calls",
		"Conflict policy", "clinic <small>(the default)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body)
		}
	}
}
