package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

func connect(t *testing.T, st *store.Store, loc, company, userType string, exp time.Time) {
	t.Helper()
	must(t, st.Connect(context.Background(), store.Connection{
		LocationID: loc, CompanyID: company, UserType: userType,
		Tokens: store.Tokens{AccessToken: "at-" + loc, RefreshToken: "rt-" + loc, ExpiresAt: exp},
	}))
}

func statuses(t *testing.T, st *store.Store) map[string]store.Status {
	t.Helper()
	cs, err := st.Credentials(context.Background())
	must(t, err)
	m := make(map[string]store.Status, len(cs))
	for _, c := range cs {
		m[c.LocationID] = c.Status
	}
	return m
}

// An uninstalled location's refresh token no longer works: it must be
// neither due for refresh nor kept alive.
func TestUninstalledIsNotRefreshed(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	soon := time.Now().Add(time.Minute)
	connect(t, st, "locA", "comp1", store.UserTypeLocation, soon)
	connect(t, st, "locB", "comp1", store.UserTypeLocation, soon)
	must(t, st.SetStatus(ctx, "locB", store.StatusUninstalled, "uninstalled"))

	due, err := st.DueForRefresh(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if diff := cmp.Diff([]string{"locA"}, due); diff != "" {
		t.Errorf("DueForRefresh (-want +got):\n%s", diff)
	}
	all, err := st.Refreshable(ctx)
	must(t, err)
	if diff := cmp.Diff([]string{"locA"}, all); diff != "" {
		t.Errorf("Refreshable (-want +got):\n%s", diff)
	}
}

func TestSetCompanyStatus(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour)
	connect(t, st, "agency1", "agency1", store.UserTypeCompany, exp)
	connect(t, st, "l1", "agency1", store.UserTypeLocation, exp)
	connect(t, st, "l2", "agency1", store.UserTypeLocation, exp)
	connect(t, st, "other", "agency2", store.UserTypeLocation, exp)
	connect(t, st, "solo", "", store.UserTypeLocation, exp)

	n, err := st.SetCompanyStatus(ctx, "agency1", store.StatusUninstalled, "gone")
	must(t, err)
	if n != 3 {
		t.Errorf("changed %d rows, want 3", n)
	}
	want := map[string]store.Status{
		"agency1": store.StatusUninstalled, "l1": store.StatusUninstalled, "l2": store.StatusUninstalled,
		"other": store.StatusActive, "solo": store.StatusActive,
	}
	if diff := cmp.Diff(want, statuses(t, st)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	c, err := st.Credential(ctx, "l1")
	must(t, err)
	if c.LastError != "gone" {
		t.Errorf("last error %q", c.LastError)
	}

	if _, err := st.SetCompanyStatus(ctx, "", store.StatusUninstalled, "x"); err == nil {
		t.Error("an empty company id was accepted")
	}
	if diff := cmp.Diff(want, statuses(t, st)); diff != "" {
		t.Errorf("an empty company id changed statuses (-want +got):\n%s", diff)
	}
}

// An inactive location is due at every refresh-due run, whatever its
// expiry: that is how ghlsync learns GHL reactivated it.
func TestInactiveIsAlwaysDue(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	later := time.Now().Add(20 * time.Hour)
	connect(t, st, "locA", "comp1", store.UserTypeLocation, later)
	connect(t, st, "locB", "comp1", store.UserTypeLocation, later)
	must(t, st.SetStatus(ctx, "locB", store.StatusInactive, "GHL: location is not active"))
	due, err := st.DueForRefresh(ctx, time.Now().Add(4*time.Hour))
	must(t, err)
	if diff := cmp.Diff([]string{"locB"}, due); diff != "" {
		t.Errorf("DueForRefresh (-want +got):\n%s", diff)
	}
}

// An uninstall wins over what a refresh in flight reports afterwards; only
// connecting again ends it.
func TestUninstallWinsOverLateRefresh(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	connect(t, st, "locA", "comp1", store.UserTypeLocation, exp)
	must(t, st.SetStatus(ctx, "locA", store.StatusUninstalled, "uninstalled"))

	if err := st.SaveRefreshed(ctx, "locA", store.Tokens{AccessToken: "at-new", RefreshToken: "rt-new", ExpiresAt: exp}, time.Now()); err == nil {
		t.Error("SaveRefreshed revived an uninstalled location")
	}
	if err := st.SetStatus(ctx, "locA", store.StatusNeedsReauth, "refused"); err == nil {
		t.Error("SetStatus(needs_reauth) overwrote uninstalled")
	}
	if got := statuses(t, st)["locA"]; got != store.StatusUninstalled {
		t.Fatalf("status %s, want uninstalled", got)
	}
	connect(t, st, "locA", "comp1", store.UserTypeLocation, exp)
	if got := statuses(t, st)["locA"]; got != store.StatusActive {
		t.Fatalf("status after connecting again %s, want active", got)
	}
}
