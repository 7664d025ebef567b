package ghltest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

const scopeDenied = `{"statusCode":401,"message":"The token is not authorized for this scope.","error":"Unauthorized"}`

// A token answers 401 "not authorized for this scope" on a route that
// needs a scope it was not granted, and works on the others; the refresh
// keeps the scope.
func TestScopesEnforced(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, rt, _ := s.IssueScopedToken("loc1", "contacts.readonly calendars.readonly")
	if r := call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil); r.status != 200 {
		t.Fatalf("a granted scope: %d %s", r.status, r.body)
	}
	upsert := map[string]any{"locationId": "loc1", "email": "a@example.com"}
	checkError(t, call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts, upsert), 401, scopeDenied)
	next := okToken(t, refresh(t, s, rt))
	if next.Scope != "contacts.readonly calendars.readonly" {
		t.Errorf("refreshed scope %q", next.Scope)
	}
	checkError(t, call(t, s, "POST", "/contacts/upsert", next.AccessToken, ghltest.VersionContacts, upsert), 401, scopeDenied)
	if got := s.ScopeDenied("loc1"); got != 2 {
		t.Errorf("ScopeDenied = %d, want 2", got)
	}
	if got := s.Stats().Rotations["loc1"]; got != 1 {
		t.Errorf("Rotations = %d", got)
	}
}

// SetTokenAnswer shapes a subject's token answers: without expires_in, and
// with side fields of odd types and unknown ones.
func TestTokenAnswerShapes(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	s.SetTokenAnswer("loc1", ghltest.TokenAnswer{NoExpiresIn: true, OddSideFields: true})
	r := refresh(t, s, rt)
	var f map[string]any
	r.decode(t, &f)
	if _, ok := f["expires_in"]; ok {
		t.Error("expires_in is there")
	}
	if f["isBulkInstallation"] != "Bearer" || f["access_token"] == "" || f["refresh_token"] == "" {
		t.Errorf("answer %s", r.body)
	}
	if _, ok := f["userId"].(float64); !ok {
		t.Errorf("userId is not a number: %s", r.body)
	}
	if _, ok := f["hlNewField"]; !ok {
		t.Errorf("no unknown field: %s", r.body)
	}
	s.AddLocation("loc2", "co1")
	_, rt2, _ := s.IssueToken("loc2")
	if tok := okToken(t, refresh(t, s, rt2)); tok.ExpiresIn == 0 {
		t.Error("another location's answer lost expires_in")
	}
}

// A company token's answer carries the bulk install fields, and its token
// lists the company's installed locations a page at a time, and mints a
// token for an installed location it did not approve.
func TestInstalledLocations(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{}) // client id "client-1": app id "client"
	var locs []string
	for i := range 25 {
		locs = append(locs, fmt.Sprintf("co1-l%02d", i))
	}
	s.AddLocation("co1-other", "co1") // with setup's loc1, two locations without the app
	s.InstallApp("co1", locs...)
	code := s.AuthorizeCode("Company", "co1", "co1-l00")
	r := exchange(t, s, code, "")
	var f map[string]any
	r.decode(t, &f)
	if f["approveAllLocations"] != false || f["installToFutureLocations"] != false || f["isBulkInstallation"] != true {
		t.Errorf("bulk fields in %s", r.body)
	}
	agency := f["access_token"].(string)
	page := func(q string) (ids []string, count int, status int) {
		r := call(t, s, "GET", "/oauth/installedLocations?"+q, agency, ghltest.VersionContacts, nil)
		if r.status != 200 {
			return nil, 0, r.status
		}
		var out struct {
			Locations []struct {
				ID          string `json:"_id"`
				Name        string `json:"name"`
				IsInstalled bool   `json:"isInstalled"`
			} `json:"locations"`
			Count int `json:"count"`
		}
		r.decode(t, &out)
		for _, l := range out.Locations {
			if !strings.HasPrefix(l.Name, "Location ") {
				t.Errorf("location %s named %q", l.ID, l.Name)
			}
			ids = append(ids, l.ID)
		}
		return ids, out.Count, 200
	}
	var got []string
	for skip := 0; ; skip += 10 {
		ids, count, status := page(fmt.Sprintf("companyId=co1&appId=client&isInstalled=true&skip=%d&limit=10", skip))
		if status != 200 || count != 25 {
			t.Fatalf("skip %d: status %d count %d", skip, status, count)
		}
		got = append(got, ids...)
		if len(ids) < 10 {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(locs, ",") {
		t.Errorf("installed locations %v", got)
	}
	if ids, count, _ := page("companyId=co1&appId=client"); count != 27 || len(ids) != 20 {
		t.Errorf("without isInstalled: %d of %d", len(ids), count)
	}
	if _, _, status := page("companyId=co1&appId=someone"); status != 400 {
		t.Errorf("another app id: %d", status)
	}
	if _, _, status := page("appId=client"); status != 422 {
		t.Errorf("no company: %d", status)
	}
	mint := func(loc string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/oauth/locationToken",
			strings.NewReader(url.Values{"companyId": {"co1"}, "locationId": {loc}}.Encode()))
		req.Header.Set("Authorization", "Bearer "+agency)
		req.Header.Set("Version", ghltest.VersionContacts)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(t, s, req).status
	}
	if st := mint("co1-l24"); st != 200 {
		t.Errorf("minting for an installed, unapproved location: %d", st)
	}
	if st := mint("co1-other"); st != 403 {
		t.Errorf("minting for a location without the app: %d", st)
	}
	if n := s.Stats().InstalledLocationPages["co1"]; n < 3 {
		t.Errorf("InstalledLocationPages = %d", n)
	}
}

// InstallURL delivers a code to the redirect URI without a state, and the
// code exchanges for the location's token.
func TestInstallURL(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	u, err := url.Parse(s.InstallURL("https://app.example/cb?x=1", "Location", "loc1"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Host != "app.example" || q.Get("x") != "1" || q.Has("state") || q.Get("code") == "" {
		t.Fatalf("install URL %s", u)
	}
	if tok := okToken(t, exchange(t, s, q.Get("code"), "https://app.example/cb?x=1")); tok.LocationID != "loc1" {
		t.Errorf("token for %q", tok.LocationID)
	}
}

// The daily quota comes back at Options.DailyReset, not at UTC midnight.
func TestDailyWindowIsNotUTCMidnight(t *testing.T) {
	t.Parallel()
	s, clk := setup(t, ghltest.Options{EnforceRateLimit: true, DailyLimit: 2, DailyReset: 5 * time.Hour})
	clk.Advance(14 * time.Hour) // 23:00 UTC
	access, _, _ := s.IssueToken("loc1")
	list := func() reply {
		return call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil)
	}
	list()
	if r := list(); r.header.Get("X-RateLimit-Daily-Remaining") != "0" {
		t.Fatalf("daily remaining %q", r.header.Get("X-RateLimit-Daily-Remaining"))
	}
	if end := s.DailyWindowEnd(clk.Now()); !end.Equal(time.Date(2025, 3, 2, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("DailyWindowEnd = %s", end)
	}
	clk.Advance(2 * time.Hour) // 01:00 UTC: past midnight, the window goes on
	if r := list(); r.status != 429 {
		t.Fatalf("after UTC midnight: %d", r.status)
	}
	clk.Advance(4 * time.Hour) // 05:00 UTC
	access, _, _ = s.IssueToken("loc1")
	if r := list(); r.status != 200 || r.header.Get("X-RateLimit-Daily-Remaining") != "1" {
		t.Fatalf("after the reset: %d, remaining %q", r.status, r.header.Get("X-RateLimit-Daily-Remaining"))
	}
}
