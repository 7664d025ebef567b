package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/store"
)

const redirectURI = "http://localhost:8080/api/auth/callback"

// getURL serves a full URL GHL sent the browser to (its path and query).
func getURL(t *testing.T, h http.Handler, raw string) *httptest.ResponseRecorder {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return get(t, h, u.RequestURI())
}

// An install GHL initiated ("Add App" in its marketplace) reaches the
// callback with a code and no state: the location is connected, and the
// page names it by its GHL name. A forged or reused state is still refused.
func TestGHLInitiatedInstall(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	stack.Fake.AddLocation("locA", "comp1")
	stack.Fake.SetLocationInfo("locA", "Physio Downtown", "Europe/Berlin")

	rec := getURL(t, h, stack.Fake.InstallURL(redirectURI, "Location", "locA"))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Physio Downtown (locA)") {
		t.Fatalf("install without state: %d %s", rec.Code, rec.Body)
	}
	if !stack.HoldsCurrent(t, "locA") {
		t.Fatal("the installed location's tokens are not stored")
	}
	_, c := stack.StoredTokens(t, "locA")
	if c.UserType != store.UserTypeLocation || c.Name != "Physio Downtown" || c.Timezone != "Europe/Berlin" {
		t.Errorf("credential: user type %s, name %q, time zone %q", c.UserType, c.Name, c.Timezone)
	}

	stack.Fake.AddLocation("locB", "comp1")
	forged := stack.Fake.InstallURL(redirectURI, "Location", "locB") + "&state=" + strings.Repeat("cd", 24)
	if rec := getURL(t, h, forged); rec.Code != http.StatusBadRequest {
		t.Fatalf("forged state: %d %s", rec.Code, rec.Body)
	}
	if n := len(credentials(t, stack.Store)); n != 1 {
		t.Fatalf("%d credentials after a forged state, want 1", n)
	}
}

// GHL_APP_USER_TYPE Company: an agency's install from the marketplace is
// exchanged as the agency's, and connects its locations.
func TestGHLInitiatedAgencyInstall(t *testing.T) {
	t.Parallel()
	s, stack := newServer(t)
	s.AppUserType = store.UserTypeCompany
	h := s.Handler()
	stack.Fake.AddLocation("l1", "agency1")
	rec := getURL(t, h, stack.Fake.InstallURL(redirectURI, "Company", "agency1", "l1"))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "(l1)") {
		t.Fatalf("agency install without state: %d %s", rec.Code, rec.Body)
	}
	if _, c := stack.StoredTokens(t, "agency1"); c.UserType != store.UserTypeCompany {
		t.Errorf("agency stored as %s", c.UserType)
	}
	if !stack.HoldsCurrent(t, "l1") {
		t.Error("the agency's location is not connected")
	}
}

// An agency install connects every location GHL lists as installed for
// the app, a page at a time, not only the token's approvedLocations (a
// bulk install's answer need not name them all); a location the app is
// not installed on is left alone.
func TestAgencyInstallConnectsEveryInstalledLocation(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	var locs []string
	for i := range 45 {
		locs = append(locs, fmt.Sprintf("l%02d", i))
	}
	stack.Fake.AddLocation("not-installed", "agency1")
	stack.Fake.InstallApp("agency1", locs...)
	state := startConnect(t, h, "?user_type=Company")
	rec := callback(t, h, stack.Fake.AuthorizeCode("Company", "agency1", "l00"), state)
	if rec.Code != http.StatusOK {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	for _, loc := range locs {
		if !stack.HoldsCurrent(t, loc) {
			t.Errorf("%s: not connected", loc)
		}
		if !strings.Contains(rec.Body.String(), "("+loc+")") {
			t.Errorf("the page does not name %s", loc)
		}
	}
	if n := len(credentials(t, stack.Store)); n != 46 {
		t.Errorf("%d credentials, want 46 (the agency and its 45 installed locations)", n)
	}
	if pages := stack.Fake.Stats().InstalledLocationPages["agency1"]; pages != 3 {
		t.Errorf("%d pages of installed locations read, want 3 (20 a page)", pages)
	}
}

// An agency's consent asks for the oauth scopes its install needs; a
// location's does not.
func TestAgencyConsentAsksForOAuthScopes(t *testing.T) {
	t.Parallel()
	h, _ := setup(t)
	scope := func(query string) string {
		rec := get(t, h, "/api/auth/connect"+query)
		u, err := url.Parse(rec.Header().Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("scope")
	}
	if got := scope("?user_type=Company"); got != "contacts.write calendars.write oauth.readonly oauth.write" {
		t.Errorf("agency consent scope %q", got)
	}
	if got := scope(""); got != "contacts.write calendars.write" {
		t.Errorf("location consent scope %q", got)
	}
}
