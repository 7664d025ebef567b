package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/internal/testenv"
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

	if err := st.SaveRefreshed(ctx, "locA", 1, store.Tokens{AccessToken: "at-new", RefreshToken: "rt-new", ExpiresAt: exp}, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveRefreshed of an uninstalled location: %v, want ErrNotFound", err)
	}
	if err := st.SetStatus(ctx, "locA", store.StatusNeedsReauth, "refused"); err == nil {
		t.Error("SetStatus(needs_reauth) overwrote uninstalled")
	}
	if err := st.SetRefreshStatus(ctx, "locA", 1, store.StatusNeedsReauth, "refused"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetRefreshStatus(needs_reauth) of an uninstalled location: %v, want ErrNotFound", err)
	}
	if got := statuses(t, st)["locA"]; got != store.StatusUninstalled {
		t.Fatalf("status %s, want uninstalled", got)
	}
	connect(t, st, "locA", "comp1", store.UserTypeLocation, exp)
	if got := statuses(t, st)["locA"]; got != store.StatusActive {
		t.Fatalf("status after connecting again %s, want active", got)
	}
}

// A refresh's write is a compare-and-set on the token version it spent: a
// second answer for the same spent token (a worker that lost its lock and
// heard back late) is refused as stale and changes nothing, and so is a
// refusal of it; a new connection moves the version on too.
func TestSaveRefreshedIsCompareAndSet(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour)
	connect(t, st, "locA", "comp1", store.UserTypeLocation, time.Now().Add(time.Hour))
	c, err := st.Credential(ctx, "locA")
	must(t, err)
	if c.TokenVersion != 1 {
		t.Fatalf("version after Connect = %d, want 1", c.TokenVersion)
	}
	newer := store.Tokens{AccessToken: "at-2", RefreshToken: "rt-2", ExpiresAt: exp}
	must(t, st.SaveRefreshed(ctx, "locA", 1, newer, time.Now()))

	late := store.Tokens{AccessToken: "at-late", RefreshToken: "rt-late", ExpiresAt: exp}
	if err := st.SaveRefreshed(ctx, "locA", 1, late, time.Now()); !errors.Is(err, store.ErrStale) {
		t.Fatalf("second SaveRefreshed of version 1: %v, want ErrStale", err)
	}
	if err := st.SetRefreshStatus(ctx, "locA", 1, store.StatusNeedsReauth, "refused"); !errors.Is(err, store.ErrStale) {
		t.Fatalf("SetRefreshStatus of version 1: %v, want ErrStale", err)
	}
	c, err = st.Credential(ctx, "locA")
	must(t, err)
	toks, err := st.Tokens(c)
	must(t, err)
	if toks.RefreshToken != "rt-2" || c.Status != store.StatusActive || c.TokenVersion != 2 {
		t.Fatalf("stored %s, status %s, version %d; want rt-2, active, 2", toks.RefreshToken, c.Status, c.TokenVersion)
	}

	connect(t, st, "locA", "comp1", store.UserTypeLocation, exp)
	if err := st.SaveRefreshed(ctx, "locA", 2, late, time.Now()); !errors.Is(err, store.ErrStale) {
		t.Fatalf("SaveRefreshed of the pair a new connection replaced: %v, want ErrStale", err)
	}
	if err := st.SaveRefreshed(ctx, "nope", 1, late, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SaveRefreshed of an unknown location: %v, want ErrNotFound", err)
	}
	must(t, st.SetRefreshStatus(ctx, "locA", 3, store.StatusInactive, "GHL: location is not active"))
	if got := statuses(t, st)["locA"]; got != store.StatusInactive {
		t.Fatalf("status %s after a current refusal, want inactive", got)
	}
}

// Migrating a database whose credentials predate token versions gives
// every existing row version 0, and the compare-and-set works on it.
func TestMigrateAddsTokenVersion(t *testing.T) {
	t.Parallel()
	dbURL := storetest.DatabaseURL(t)
	db := storetest.DB(t, dbURL)
	must(t, db.AutoMigrate(&credentialBefore{}))
	now := time.Now().UTC()
	must(t, db.Create(&credentialBefore{LocationID: "locOld", UserType: "Location", AccessTokenEnc: "sealed-a",
		RefreshTokenEnc: "sealed-r", ExpiresAt: now.Add(time.Hour), RefreshedAt: &now, Status: "active", CreatedAt: now, UpdatedAt: now}).Error)

	key := testenv.NewKey(t)
	st, err := store.Open(context.Background(), dbURL, testenv.Cipher(t, key))
	must(t, err)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	must(t, st.Migrate(ctx))
	c, err := st.Credential(ctx, "locOld")
	must(t, err)
	if c.TokenVersion != 0 {
		t.Fatalf("version of a row from before the migration = %d, want 0", c.TokenVersion)
	}
	toks := store.Tokens{AccessToken: "at-2", RefreshToken: "rt-2", ExpiresAt: now.Add(24 * time.Hour)}
	must(t, st.SaveRefreshed(ctx, "locOld", 0, toks, now))
	if err := st.SaveRefreshed(ctx, "locOld", 0, toks, now); !errors.Is(err, store.ErrStale) {
		t.Fatalf("a second write of version 0: %v, want ErrStale", err)
	}
	must(t, st.Migrate(ctx)) // idempotent
}

// A refresh keeps a token's scopes, so it leaves a location missing one
// marked, with the scope named; a new connection makes it active. Such a
// location is not refreshed on schedule.
func TestMissingScopeOutlivesARefresh(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	connect(t, st, "locA", "comp1", store.UserTypeLocation, time.Now().Add(time.Minute))
	c, err := st.Credential(ctx, "locA")
	must(t, err)
	must(t, st.SetRefreshStatus(ctx, "locA", c.TokenVersion, store.StatusMissingScope, "lacks scope users.readonly"))
	due, err := st.DueForRefresh(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if len(due) != 0 {
		t.Errorf("DueForRefresh = %v: a missing_scope location is refreshed on schedule", due)
	}
	must(t, st.SaveRefreshed(ctx, "locA", c.TokenVersion, store.Tokens{AccessToken: "a2", RefreshToken: "r2",
		ExpiresAt: time.Now().Add(24 * time.Hour)}, time.Now()))
	c, err = st.Credential(ctx, "locA")
	must(t, err)
	if c.Status != store.StatusMissingScope || c.LastError != "lacks scope users.readonly" {
		t.Errorf("after a refresh: %s %q, want missing_scope kept", c.Status, c.LastError)
	}
	connect(t, st, "locA", "comp1", store.UserTypeLocation, time.Now().Add(24*time.Hour))
	if got := statuses(t, st)["locA"]; got != store.StatusActive {
		t.Errorf("after connecting again: %s", got)
	}
}

// SaveRefreshedLogged stores the token and its history entry together,
// and neither when the compare-and-set fails: a stale answer leaves no
// entry of a refresh that was not stored.
func TestSaveRefreshedLoggedStoresBothOrNeither(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	connect(t, st, "locA", "comp1", store.UserTypeLocation, time.Now().Add(time.Hour))
	run := func() *store.RefreshRun {
		return &store.RefreshRun{LocationID: "locA", Outcome: "refreshed", ExpiresAt: &exp}
	}
	must(t, st.SaveRefreshedLogged(ctx, "locA", 1, store.Tokens{AccessToken: "at-2", RefreshToken: "rt-2", ExpiresAt: exp}, time.Now(), run()))
	err := st.SaveRefreshedLogged(ctx, "locA", 1, store.Tokens{AccessToken: "at-late", RefreshToken: "rt-late", ExpiresAt: exp}, time.Now(), run())
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("second SaveRefreshedLogged of version 1: %v, want ErrStale", err)
	}
	if err := st.SaveRefreshedLogged(ctx, "nope", 1, store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: exp}, time.Now(),
		&store.RefreshRun{LocationID: "nope", Outcome: "refreshed"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SaveRefreshedLogged of an unknown location: %v, want ErrNotFound", err)
	}
	c, err := st.Credential(ctx, "locA")
	must(t, err)
	toks, err := st.Tokens(c)
	must(t, err)
	if toks.RefreshToken != "rt-2" || c.TokenVersion != 2 {
		t.Fatalf("stored %s, version %d; want rt-2, 2", toks.RefreshToken, c.TokenVersion)
	}
	for loc, want := range map[string]int{"locA": 1, "nope": 0} {
		runs, err := st.RefreshRuns(ctx, loc, 10)
		must(t, err)
		if len(runs) != want {
			t.Errorf("%s: %d history entries, want %d (one per token stored): %+v", loc, len(runs), want, runs)
		}
	}
}

// SaveRefreshedLogged (one statement on PostgreSQL) leaves the row as
// SaveRefreshed does: an inactive location is active again with its error
// cleared, a missing_scope one keeps its status and error, an uninstalled
// one is not written (ErrNotFound, no entry); the entry holds what run
// said.
func TestSaveRefreshedLoggedWritesAsSaveRefreshed(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	setups := map[string]func(loc string){
		"inactive": func(loc string) { must(t, st.SetStatus(ctx, loc, store.StatusInactive, "GHL: location is not active")) },
		"missing_scope": func(loc string) {
			must(t, st.SetStatus(ctx, loc, store.StatusMissingScope, "lacks scope users.readonly"))
		},
		"uninstalled": func(loc string) { must(t, st.SetStatus(ctx, loc, store.StatusUninstalled, "uninstalled")) },
	}
	for name, set := range setups {
		for _, logged := range []bool{false, true} {
			loc := fmt.Sprintf("%s-%t", name, logged)
			connect(t, st, loc, "comp1", store.UserTypeLocation, time.Now().Add(time.Hour))
			set(loc)
			toks := store.Tokens{AccessToken: "at-new", RefreshToken: "rt-new", ExpiresAt: exp}
			if logged {
				err := st.SaveRefreshedLogged(ctx, loc, 1, toks, at, &store.RefreshRun{LocationID: loc, At: at, Outcome: "refreshed", ExpiresAt: &exp})
				if name == "uninstalled" && !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s: SaveRefreshedLogged = %v, want ErrNotFound", loc, err)
				} else if name != "uninstalled" {
					must(t, err)
				}
			} else if err := st.SaveRefreshed(ctx, loc, 1, toks, at); name != "uninstalled" {
				must(t, err)
			}
		}
	}
	for name := range setups {
		plain, err := st.Credential(ctx, name+"-false")
		must(t, err)
		logged, err := st.Credential(ctx, name+"-true")
		must(t, err)
		got := fmt.Sprint(logged.Status, logged.LastError, logged.TokenVersion, logged.ExpiresAt.UTC(), logged.RefreshedAt.UTC())
		want := fmt.Sprint(plain.Status, plain.LastError, plain.TokenVersion, plain.ExpiresAt.UTC(), plain.RefreshedAt.UTC())
		if name == "uninstalled" && (logged.TokenVersion != 1 || logged.Status != store.StatusUninstalled) {
			t.Errorf("%s: SaveRefreshedLogged wrote version %d, status %s", name, logged.TokenVersion, logged.Status)
		} else if name != "uninstalled" && got != want {
			t.Errorf("%s: SaveRefreshedLogged left %q, SaveRefreshed %q", name, got, want)
		}
		runs, err := st.RefreshRuns(ctx, name+"-true", 10)
		must(t, err)
		switch {
		case name == "uninstalled" && len(runs) != 0:
			t.Errorf("%s: %d entries of a token not stored", name, len(runs))
		case name != "uninstalled" && (len(runs) != 1 || runs[0].ID == 0 || !runs[0].At.Equal(at) || runs[0].Outcome != "refreshed" ||
			runs[0].ExpiresAt == nil || !runs[0].ExpiresAt.Equal(exp)):
			t.Errorf("%s: entries %+v, want one refreshed at %s expiring %s", name, runs, at, exp)
		}
		if name != "uninstalled" {
			toks, err := st.Tokens(logged)
			must(t, err)
			if toks.RefreshToken != "rt-new" {
				t.Errorf("%s: stored refresh token is not the new one", name)
			}
		}
	}
}

// Credential, read with plain SQL, reads the row as GORM does: every
// column, and a NULL (a column an older release's row never had) as the
// zero value.
func TestCredentialReadsEveryColumn(t *testing.T) {
	t.Parallel()
	st, dbURL := storetest.Open(t, "")
	ctx := context.Background()
	db := storetest.DB(t, dbURL)
	connect(t, st, "full", "comp1", store.UserTypeLocation, time.Now().Add(time.Hour))
	must(t, st.SetLocationInfo(ctx, "full", "Main St Clinic", "America/Chicago"))
	must(t, st.SetStatus(ctx, "full", store.StatusInactive, "GHL: location is not active"))
	must(t, db.Exec("INSERT INTO credentials (location_id, access_token_enc, refresh_token_enc, expires_at, user_type, status, token_version) "+
		"VALUES (?, 'x', 'y', ?, 'Location', 'active', 3)", "nulls", time.Now().Add(time.Hour).UTC()).Error)
	if n := reflect.TypeFor[store.Credential]().NumField(); n != 17 {
		t.Fatalf("Credential has %d fields, the test and store.Credential's query know 17: read the new one", n)
	}
	for _, loc := range []string{"full", "nulls"} {
		var want store.Credential
		must(t, db.Where("location_id = ?", loc).Take(&want).Error)
		got, err := st.Credential(ctx, loc)
		must(t, err)
		if diff := cmp.Diff(want, *got); diff != "" {
			t.Errorf("%s (-GORM +Credential):\n%s", loc, diff)
		}
	}
	if _, err := st.Credential(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Credential of an unknown location: %v, want ErrNotFound", err)
	}
}
