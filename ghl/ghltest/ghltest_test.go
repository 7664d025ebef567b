package ghltest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

const (
	clientID     = "client-1"
	clientSecret = "secret-1"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts a fake with the test app credentials and a fake clock, and
// registers location loc1 of company co1.
func setup(t *testing.T, opts ghltest.Options) (*ghltest.Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	opts.ClientID, opts.ClientSecret = clientID, clientSecret
	s := ghltest.NewServer(opts)
	t.Cleanup(s.Close)
	s.AddLocation("loc1", "co1")
	return s, clk
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func do(t *testing.T, s *ghltest.Server, req *http.Request) reply {
	t.Helper()
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// tokenForm posts form to /oauth/token, adding the app credentials.
func tokenForm(ctx context.Context, s *ghltest.Server, form url.Values) (*http.Request, error) {
	if !form.Has("client_id") {
		form.Set("client_id", clientID)
		form.Set("client_secret", clientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

func postToken(t *testing.T, s *ghltest.Server, form url.Values) reply {
	t.Helper()
	req, err := tokenForm(t.Context(), s, form)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, s, req)
}

func refresh(t *testing.T, s *ghltest.Server, rt string) reply {
	t.Helper()
	return postToken(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "user_type": {"Location"}})
}

func exchange(t *testing.T, s *ghltest.Server, code, redirectURI string) reply {
	t.Helper()
	return postToken(t, s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}})
}

// call makes an API call; body, if not nil, is sent as JSON.
func call(t *testing.T, s *ghltest.Server, method, path, token, version string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if version != "" {
		req.Header.Set("Version", version)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, s, req)
}

type tokenJSON struct {
	AccessToken        string   `json:"access_token"`
	TokenType          string   `json:"token_type"`
	ExpiresIn          int64    `json:"expires_in"`
	RefreshToken       string   `json:"refresh_token"`
	Scope              string   `json:"scope"`
	UserType           string   `json:"userType"`
	LocationID         string   `json:"locationId"`
	CompanyID          string   `json:"companyId"`
	ApprovedLocations  []string `json:"approvedLocations"`
	UserID             string   `json:"userId"`
	IsBulkInstallation bool     `json:"isBulkInstallation"`
	RefreshTokenID     string   `json:"refreshTokenId"`
	TraceID            string   `json:"traceId"`
}

func okToken(t *testing.T, r reply) tokenJSON {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	var tok tokenJSON
	r.decode(t, &tok)
	return tok
}

// checkError asserts a GHL error answer, body byte for byte.
func checkError(t *testing.T, r reply, status int, body string) {
	t.Helper()
	if r.status != status || string(r.body) != body {
		t.Errorf("got %d %s, want %d %s", r.status, r.body, status, body)
	}
}

const (
	invalidGrant = `{"statusCode":400,"message":"Invalid grant: refresh token is invalid"}`
	invalidJWT   = `{"statusCode":401,"message":"Invalid JWT"}`
)

func TestCodeExchange(t *testing.T) {
	t.Parallel()
	s, clk := setup(t, ghltest.Options{})

	code := s.AuthorizeCode("Location", "loc1")
	r := exchange(t, s, code, "")
	got := okToken(t, r)
	if !strings.HasPrefix(got.AccessToken, "at-") || !strings.HasPrefix(got.RefreshToken, "rt-") ||
		got.UserID == "" || got.RefreshTokenID == "" || got.TraceID == "" {
		t.Errorf("token fields: %+v", got)
	}
	want := tokenJSON{
		TokenType: "Bearer", ExpiresIn: 86399, Scope: ghltest.DefaultScope,
		UserType: "Location", LocationID: "loc1", CompanyID: "co1",
	}
	ignore := cmpopts.IgnoreFields(tokenJSON{}, "AccessToken", "RefreshToken", "UserID", "RefreshTokenID", "TraceID")
	if diff := cmp.Diff(want, got, ignore); diff != "" {
		t.Errorf("location token (-want +got):\n%s", diff)
	}
	if !s.Valid("loc1", got.AccessToken) || s.CurrentRefreshToken("loc1") != got.RefreshToken {
		t.Error("exchanged token not live")
	}

	t.Run("single use", func(t *testing.T) {
		checkError(t, exchange(t, s, code, ""), 400, `{"statusCode":400,"message":"Invalid grant: authorization code is invalid"}`)
	})
	t.Run("expires after 10 minutes", func(t *testing.T) {
		code := s.AuthorizeCode("Location", "loc1")
		clk.Advance(10 * time.Minute)
		checkError(t, exchange(t, s, code, ""), 400, `{"statusCode":400,"message":"Invalid grant: authorization code is invalid"}`)
	})
	t.Run("company", func(t *testing.T) {
		s.AddLocation("loc2", "co1")
		r := exchange(t, s, s.AuthorizeCode("Company", "co1", "loc2"), "")
		got := okToken(t, r)
		want := tokenJSON{
			TokenType: "Bearer", ExpiresIn: 86399, Scope: ghltest.DefaultScope, UserType: "Company",
			CompanyID: "co1", ApprovedLocations: []string{"loc2"}, IsBulkInstallation: true,
		}
		if diff := cmp.Diff(want, got, ignore); diff != "" {
			t.Errorf("company token (-want +got):\n%s", diff)
		}
		if bytes.Contains(r.body, []byte(`"locationId"`)) {
			t.Errorf("company token has a locationId: %s", r.body)
		}
	})
	t.Run("bad client", func(t *testing.T) {
		r := postToken(t, s, url.Values{"client_id": {clientID}, "client_secret": {"wrong"},
			"grant_type": {"authorization_code"}, "code": {s.AuthorizeCode("Location", "loc1")}})
		checkError(t, r, 401, `{"statusCode":401,"message":"Invalid client credentials"}`)
	})
	t.Run("missing parameter", func(t *testing.T) {
		checkError(t, postToken(t, s, url.Values{"code": {"x"}}), 400, `{"statusCode":400,"message":"Missing parameter: grant_type"}`)
		checkError(t, postToken(t, s, url.Values{"grant_type": {"refresh_token"}}), 400, `{"statusCode":400,"message":"Missing parameter: refresh_token"}`)
	})
}

func TestConsentPage(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	s.AddLocation("loc2", "co1")
	noFollow := *s.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	consent := func(t *testing.T, extra string) (code string) {
		t.Helper()
		u := s.URL + "/v2/oauth/chooselocation?response_type=code&client_id=" + clientID +
			"&redirect_uri=" + url.QueryEscape("https://app.example/cb?x=1") + "&scope=contacts.write&state=st-9" + extra
		resp, err := noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d", resp.StatusCode)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		q := loc.Query()
		if loc.Host != "app.example" || loc.Path != "/cb" || q.Get("x") != "1" || q.Get("state") != "st-9" || q.Get("code") == "" {
			t.Fatalf("redirect to %s", loc)
		}
		return q.Get("code")
	}

	got := okToken(t, exchange(t, s, consent(t, "&location_id=loc1"), "https://app.example/cb?x=1"))
	if got.LocationID != "loc1" || got.Scope != "contacts.write" {
		t.Errorf("location_id=loc1 consent: %+v", got)
	}
	got = okToken(t, exchange(t, s, consent(t, "&location_id=loc2"), "https://app.example/cb?x=1"))
	if got.LocationID != "loc2" {
		t.Errorf("location_id=loc2 consent: %+v", got)
	}
	got = okToken(t, exchange(t, s, consent(t, "&company_id=co1"), "https://app.example/cb?x=1"))
	if got.UserType != "Company" || got.CompanyID != "co1" || !slices.Equal(got.ApprovedLocations, []string{"loc1", "loc2"}) {
		t.Errorf("company_id=co1 consent: %+v", got)
	}
	checkError(t, exchange(t, s, consent(t, "&location_id=loc1"), "https://evil.example/cb"), 400,
		`{"statusCode":400,"message":"Invalid parameter: redirect_uri"}`)
}

var (
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	choiceInput = regexp.MustCompile(`<button type="submit" name="(location_id|company_id)" value="([^"]*)">`)
)

// The consent page without a choice is a chooser, like GHL's: a form
// (no JavaScript) with a button per location and agency; submitting a
// button, as a browser does, approves that account and goes back to the
// app with the state.
func TestConsentChooser(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	s.AddLocation("loc2", "co1")
	s.AddLocation("solo", "")
	noFollow := *s.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	page := s.URL + "/v2/oauth/chooselocation?response_type=code&client_id=" + clientID +
		"&redirect_uri=" + url.QueryEscape("https://app.example/cb") + "&scope=contacts.write&state=a%22b%3C"
	resp, err := noFollow.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("chooser: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var choices []string
	for _, m := range choiceInput.FindAllStringSubmatch(string(body), -1) {
		choices = append(choices, m[1]+"="+m[2])
	}
	want := []string{"location_id=loc1", "location_id=loc2", "location_id=solo", "company_id=co1"}
	if diff := cmp.Diff(want, choices); diff != "" {
		t.Fatalf("choices (-want +got):\n%s\n%s", diff, body)
	}
	if !strings.Contains(string(body), `<form method="get" action="/v2/oauth/chooselocation">`) {
		t.Fatalf("no GET form to this page:\n%s", body)
	}

	// What a browser sends for the button of loc2: the hidden fields and
	// the button's name and value.
	form := url.Values{"location_id": {"loc2"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Add(m[1], html.UnescapeString(m[2]))
	}
	resp, err = noFollow.Get(s.URL + "/v2/oauth/chooselocation?" + form.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || back.Host != "app.example" || back.Query().Get("state") != `a"b<` {
		t.Fatalf("after choosing: %d, redirect %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	got := okToken(t, exchange(t, s, back.Query().Get("code"), "https://app.example/cb"))
	if got.LocationID != "loc2" || got.Scope != "contacts.write" {
		t.Errorf("token of the chosen location: %+v", got)
	}
}

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, rt, _ := s.IssueToken("loc1")

	got := okToken(t, refresh(t, s, rt))
	if got.RefreshToken == rt || got.AccessToken == access {
		t.Fatalf("not rotated: %+v", got)
	}
	if got.UserType != "Location" || got.LocationID != "loc1" || got.ExpiresIn != 86399 {
		t.Errorf("refreshed token: %+v", got)
	}
	if s.CurrentRefreshToken("loc1") != got.RefreshToken {
		t.Error("CurrentRefreshToken is not the new one")
	}
	// Like a JWT, the superseded access token lives until its own expiry.
	if !s.Valid("loc1", access) || !s.Valid("loc1", got.AccessToken) {
		t.Error("old or new access token not valid")
	}
	next := okToken(t, refresh(t, s, got.RefreshToken))
	if next.RefreshToken == got.RefreshToken {
		t.Error("second refresh not rotated")
	}
	if got, want := [3]int{s.TokenCalls("loc1"), s.Rotations("loc1"), s.SpentReuses("loc1")}, [3]int{2, 2, 0}; got != want {
		t.Errorf("token calls, rotations, spent reuses = %v, want %v", got, want)
	}
	if n := s.Requests("/oauth/token", "loc1"); n != 2 {
		t.Errorf("Requests = %d, want 2", n)
	}
}

func TestRefreshGrace(t *testing.T) {
	t.Parallel()
	s, clk := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	first := okToken(t, refresh(t, s, rt))

	clk.Advance(29 * time.Second)
	again := okToken(t, refresh(t, s, rt))
	if again.AccessToken != first.AccessToken || again.RefreshToken != first.RefreshToken {
		t.Errorf("grace gave another pair: %+v, want %+v", again, first)
	}
	if again.ExpiresIn != 86399-29 {
		t.Errorf("grace expires_in = %d, want the remaining %d", again.ExpiresIn, 86399-29)
	}

	t.Run("other client", func(t *testing.T) {
		// With ClientID unset any client is accepted, but the grace is the
		// spending client's only.
		open := ghltest.NewServer(ghltest.Options{Now: clk.Now})
		defer open.Close()
		_, rt, _ := open.IssueToken("loc1")
		form := func(id string) url.Values {
			return url.Values{"client_id": {id}, "client_secret": {"s"}, "grant_type": {"refresh_token"}, "refresh_token": {rt}}
		}
		okToken(t, postToken(t, open, form("a")))
		checkError(t, postToken(t, open, form("b")), 400, invalidGrant)
	})

	clk.Advance(2 * time.Second) // 31 s after the rotation
	checkError(t, refresh(t, s, rt), 400, invalidGrant)

	got := [5]int{s.TokenCalls("loc1"), s.Rotations("loc1"), s.SpentReuses("loc1"), s.GraceReuses("loc1"), s.InvalidGrants("loc1")}
	if want := [5]int{3, 1, 2, 1, 1}; got != want {
		t.Errorf("token calls, rotations, spent reuses, grace reuses, invalid grants = %v, want %v", got, want)
	}
	// The new refresh token still works.
	okToken(t, refresh(t, s, first.RefreshToken))
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, rt, _ := s.IssueToken("loc1")
	s.Revoke("loc1")

	checkError(t, refresh(t, s, rt), 400, invalidGrant)
	checkError(t, call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil), 401, invalidJWT)
	if s.Valid("loc1", access) || s.CurrentRefreshToken("loc1") != "" || s.InvalidGrants("loc1") != 1 {
		t.Error("revoked tokens still live or not counted")
	}
	if st := s.Stats(); st.RevokedTokenCalls != 1 {
		t.Errorf("RevokedTokenCalls = %d, want 1", st.RevokedTokenCalls)
	}
	// A new install works again.
	okToken(t, exchange(t, s, s.AuthorizeCode("Location", "loc1"), ""))
}

func TestInactiveLocation(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")

	s.SetInactive("loc1", true)
	checkError(t, refresh(t, s, rt), 400, `{"statusCode":400,"message":"Location is not active"}`)
	checkError(t, refresh(t, s, rt), 400, `{"statusCode":400,"message":"Location is not active"}`)
	if s.CurrentRefreshToken("loc1") != rt || s.Rotations("loc1") != 0 || s.InvalidGrants("loc1") != 0 {
		t.Error("inactive location spent the refresh token")
	}
	if n := s.Stats().InactiveGrants["loc1"]; n != 2 {
		t.Errorf("InactiveGrants = %d, want 2", n)
	}

	s.SetInactive("loc1", false)
	okToken(t, refresh(t, s, rt))
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	s, clk := setup(t, ghltest.Options{TokenLifetime: time.Hour})
	access, rt, expiry := s.IssueToken("loc1")
	if want := clk.Now().Add(time.Hour); !expiry.Equal(want) {
		t.Errorf("expiry = %v, want %v", expiry, want)
	}
	list := func(tok string) reply {
		return call(t, s, "GET", "/calendars/?locationId=loc1", tok, ghltest.VersionCalendars, nil)
	}
	if r := list(access); r.status != 200 {
		t.Fatalf("fresh token: %d %s", r.status, r.body)
	}

	clk.Advance(time.Hour)
	checkError(t, list(access), 401, invalidJWT)
	checkError(t, list("at-unknown"), 401, invalidJWT)
	checkError(t, list(""), 401, invalidJWT)
	if s.ExpiredTokenCalls() != 1 || s.UnknownTokenCalls() != 2 {
		t.Errorf("expired, unknown = %d, %d, want 1, 2", s.ExpiredTokenCalls(), s.UnknownTokenCalls())
	}

	// ExpireAccessTokens: the 401 in the middle of a sync.
	fresh := okToken(t, refresh(t, s, rt))
	if r := list(fresh.AccessToken); r.status != 200 {
		t.Fatalf("refreshed token: %d", r.status)
	}
	s.ExpireAccessTokens("loc1")
	checkError(t, list(fresh.AccessToken), 401, invalidJWT)
	if s.ExpiredTokenCalls() != 2 {
		t.Errorf("ExpiredTokenCalls = %d, want 2", s.ExpiredTokenCalls())
	}
}

func TestLocationToken(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	s.AddLocation("loc2", "co1")
	agency := okToken(t, exchange(t, s, s.AuthorizeCode("Company", "co1", "loc1"), ""))

	locToken := func(version, loc string) reply {
		req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/oauth/locationToken",
			strings.NewReader(url.Values{"companyId": {"co1"}, "locationId": {loc}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+agency.AccessToken)
		if version != "" {
			req.Header.Set("Version", version)
		}
		return do(t, s, req)
	}
	checkError(t, locToken("", "loc1"), 400, `{"statusCode":400,"message":"Missing parameter: Version"}`)
	checkError(t, locToken(ghltest.VersionContacts, "loc2"), 403, `{"statusCode":403,"message":"The token does not have access to this location"}`)

	loc := okToken(t, locToken(ghltest.VersionContacts, "loc1"))
	if loc.UserType != "Location" || loc.LocationID != "loc1" || loc.CompanyID != "co1" || loc.RefreshToken == "" {
		t.Errorf("location token: %+v", loc)
	}
	up := map[string]any{"locationId": "loc1", "email": "a@example.com"}
	if r := call(t, s, "POST", "/contacts/upsert", loc.AccessToken, ghltest.VersionContacts, up); r.status != 200 {
		t.Errorf("upsert with location token: %d %s", r.status, r.body)
	}
	checkError(t, call(t, s, "POST", "/contacts/upsert", agency.AccessToken, ghltest.VersionContacts, up), 403,
		`{"statusCode":403,"message":"The token does not have access to this location"}`)

	// A refresh of a Company token returns a Company token.
	again := okToken(t, refresh(t, s, agency.RefreshToken))
	if again.UserType != "Company" || again.CompanyID != "co1" || again.LocationID != "" {
		t.Errorf("refreshed agency token: %+v", again)
	}
	if got := s.Stats().LocationTokens["loc1"]; got != 1 {
		t.Errorf("LocationTokens = %d, want 1", got)
	}
}

type upsertJSON struct {
	New     bool            `json:"new"`
	Contact ghltest.Contact `json:"contact"`
}

func TestContacts(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	upsert := func(body map[string]any) upsertJSON {
		t.Helper()
		r := call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts, body)
		if r.status != 200 {
			t.Fatalf("upsert %v: %d %s", body, r.status, r.body)
		}
		var u upsertJSON
		r.decode(t, &u)
		return u
	}

	ann := upsert(map[string]any{"locationId": "loc1", "firstName": "Ann", "lastName": "Lee",
		"email": "ann@example.com", "phone": "+1 555-0100", "tags": []string{"physio"}})
	if !ann.New || ann.Contact.ID == "" || ann.Contact.Name != "Ann Lee" {
		t.Fatalf("create: %+v", ann)
	}
	byEmail := upsert(map[string]any{"locationId": "loc1", "email": "ANN@example.com", "city": "Oslo"})
	if byEmail.New || byEmail.Contact.ID != ann.Contact.ID || byEmail.Contact.City != "Oslo" || byEmail.Contact.FirstName != "Ann" {
		t.Errorf("match by email: %+v", byEmail)
	}
	byPhone := upsert(map[string]any{"locationId": "loc1", "phone": "+15550100", "lastName": "Lee-Smith"})
	if byPhone.New || byPhone.Contact.ID != ann.Contact.ID || byPhone.Contact.Name != "Ann Lee-Smith" {
		t.Errorf("match by phone: %+v", byPhone)
	}
	bob := upsert(map[string]any{"locationId": "loc1", "email": "bob@example.com"})
	if !bob.New {
		t.Errorf("bob not new: %+v", bob)
	}
	// Email matches Bob, phone matches Ann: Bob is updated, the phone dropped.
	both := upsert(map[string]any{"locationId": "loc1", "email": "bob@example.com", "phone": "+1 555 0100", "city": "Bergen"})
	if both.New || both.Contact.ID != bob.Contact.ID || both.Contact.Phone != "" || both.Contact.City != "Bergen" {
		t.Errorf("email and phone of two contacts: %+v", both)
	}

	t.Run("invalid email creates nothing", func(t *testing.T) {
		r := call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts,
			map[string]any{"locationId": "loc1", "email": "not-an-email", "firstName": "X"})
		checkError(t, r, 422, `{"statusCode":422,"message":["email must be an email"]}`)
		if n := len(s.Contacts("loc1")); n != 2 {
			t.Errorf("%d contacts, want 2", n)
		}
	})
	t.Run("validation", func(t *testing.T) {
		checkError(t, call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts, map[string]any{"email": "a@b.co"}),
			422, `{"statusCode":422,"message":["locationId should not be empty"]}`)
		checkError(t, call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts, map[string]any{"locationId": "loc1", "nickname": "x"}),
			422, `{"statusCode":422,"message":["property nickname should not exist"]}`)
		checkError(t, call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionContacts, map[string]any{"locationId": "loc2"}),
			403, `{"statusCode":403,"message":"The token does not have access to this location"}`)
		checkError(t, call(t, s, "POST", "/contacts/upsert", access, ghltest.VersionCalendars, map[string]any{"locationId": "loc1"}),
			400, `{"statusCode":400,"message":"Invalid parameter: Version"}`)
	})

	r := call(t, s, "PUT", "/contacts/"+ann.Contact.ID, access, ghltest.VersionContacts, map[string]any{"firstName": "Anna"})
	var put struct {
		Succeded bool            `json:"succeded"`
		Contact  ghltest.Contact `json:"contact"`
	}
	r.decode(t, &put)
	if r.status != 200 || !put.Succeded || put.Contact.Name != "Anna Lee-Smith" {
		t.Errorf("PUT: %d %s", r.status, r.body)
	}
	checkError(t, call(t, s, "PUT", "/contacts/"+ann.Contact.ID, access, ghltest.VersionContacts, map[string]any{"locationId": "loc1"}),
		422, `{"statusCode":422,"message":["property locationId should not exist"]}`)

	var get struct {
		Contact ghltest.Contact `json:"contact"`
	}
	call(t, s, "GET", "/contacts/"+ann.Contact.ID, access, ghltest.VersionContacts, nil).decode(t, &get)
	if diff := cmp.Diff(put.Contact, get.Contact); diff != "" {
		t.Errorf("GET after PUT (-want +got):\n%s", diff)
	}
	checkError(t, call(t, s, "GET", "/contacts/nope", access, ghltest.VersionContacts, nil), 500, `{"statusCode":500,"message":"Internal server error"}`)
	checkError(t, call(t, s, "GET", "/contacts/"+unknownID, access, ghltest.VersionContacts, nil), 400,
		`{"statusCode":400,"message":"Contact with id `+unknownID+` not found"}`)

	var dup struct {
		Contact *ghltest.Contact `json:"contact"`
	}
	call(t, s, "GET", "/contacts/search/duplicate?locationId=loc1&email=ANN%40EXAMPLE.COM", access, ghltest.VersionContacts, nil).decode(t, &dup)
	if dup.Contact == nil || dup.Contact.ID != ann.Contact.ID {
		t.Errorf("duplicate by email: %+v", dup.Contact)
	}
	r = call(t, s, "GET", "/contacts/search/duplicate?locationId=loc1&email=nobody%40example.com", access, ghltest.VersionContacts, nil)
	if !bytes.Contains(r.body, []byte(`"contact":null`)) {
		t.Errorf("no duplicate: %s", r.body)
	}

	want := []ghltest.Contact{get.Contact, both.Contact}
	if diff := cmp.Diff(want, s.Contacts("loc1")); diff != "" {
		t.Errorf("Contacts (-want +got):\n%s", diff)
	}
	st := s.Stats()
	if st.ContactCreates["loc1"] != 2 || st.ContactUpdates["loc1"] != 4 {
		t.Errorf("creates, updates = %d, %d, want 2, 4", st.ContactCreates["loc1"], st.ContactUpdates["loc1"])
	}
}

func TestAppointmentLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	s.AddCalendar("loc1", "cal1", "Physio")
	s.AddCalendar("loc9", "cal9", "Elsewhere")
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	v := ghltest.VersionCalendars

	r := call(t, s, "GET", "/calendars/?locationId=loc1", access, v, nil)
	if want := `{"calendars":[{"id":"cal1","locationId":"loc1","name":"Physio"}]}`; string(r.body) != want {
		t.Errorf("calendars = %s, want %s", r.body, want)
	}

	body := map[string]any{"calendarId": "cal1", "locationId": "loc1", "contactId": c.ID,
		"startTime": "2025-03-03T10:00:00+01:00", "title": "Knee", "appointmentStatus": "confirmed", "toNotify": false}
	r = call(t, s, "POST", "/calendars/events/appointments", access, v, body)
	var created ghltest.Appointment
	r.decode(t, &created)
	if r.status != 200 || created.ID == "" || created.EndTime != "2025-03-03T10:30:00+01:00" || created.ContactID != c.ID {
		t.Fatalf("create: %d %s", r.status, r.body)
	}

	t.Run("validation", func(t *testing.T) {
		bad := func(change map[string]any) map[string]any {
			b := map[string]any{}
			for k, v := range body {
				b[k] = v
			}
			for k, v := range change {
				if v == nil {
					delete(b, k)
				} else {
					b[k] = v
				}
			}
			return b
		}
		post := func(b map[string]any) reply {
			return call(t, s, "POST", "/calendars/events/appointments", access, v, b)
		}
		checkError(t, post(bad(map[string]any{"contactId": "nope"})), 400, `{"statusCode":400,"message":"Contact not found"}`)
		checkError(t, post(bad(map[string]any{"calendarId": "cal9"})), 400, `{"statusCode":400,"message":"Calendar not found"}`)
		checkError(t, post(bad(map[string]any{"appointmentStatus": "booked"})), 422,
			`{"statusCode":422,"message":["appointmentStatus must be one of the following values: new, confirmed, cancelled, showed, noshow, invalid"]}`)
		checkError(t, post(bad(map[string]any{"contactId": nil, "startTime": "tomorrow"})), 422,
			`{"statusCode":422,"message":["contactId should not be empty","startTime must be a valid ISO 8601 date string"]}`)
		checkError(t, call(t, s, "POST", "/calendars/events/appointments", access, ghltest.VersionContacts, body), 400,
			`{"statusCode":400,"message":"Invalid parameter: Version"}`)
		if n := len(s.Appointments("loc1")); n != 1 {
			t.Errorf("%d appointments, want 1", n)
		}
	})

	var got struct {
		Event ghltest.Appointment `json:"event"`
	}
	call(t, s, "GET", "/calendars/events/appointments/"+created.ID, access, v, nil).decode(t, &got)
	if diff := cmp.Diff(created, got.Event); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}

	r = call(t, s, "PUT", "/calendars/events/appointments/"+created.ID, access, v,
		map[string]any{"appointmentStatus": "showed", "startTime": "2025-03-03T11:00:00+01:00"})
	var updated ghltest.Appointment
	r.decode(t, &updated)
	if r.status != 200 || updated.AppointmentStatus != "showed" || updated.EndTime != "2025-03-03T11:30:00+01:00" {
		t.Errorf("PUT: %d %s", r.status, r.body)
	}
	checkError(t, call(t, s, "PUT", "/calendars/events/appointments/"+created.ID, access, v, map[string]any{"contactId": c.ID}),
		422, `{"statusCode":422,"message":["property contactId should not exist"]}`)
	if diff := cmp.Diff([]ghltest.Appointment{updated}, s.Appointments("loc1")); diff != "" {
		t.Errorf("Appointments (-want +got):\n%s", diff)
	}

	r = call(t, s, "DELETE", "/calendars/events/"+created.ID, access, v, nil)
	if r.status != 201 || string(r.body) != `{"succeeded":true}` {
		t.Errorf("DELETE: %d %s, want GHL's 201", r.status, r.body)
	}
	// GHL documents no 404 for events: an unknown id is a 400 that says
	// not found, a malformed one a 500.
	gone := `{"statusCode":400,"message":"Event with id ` + created.ID + ` not found"}`
	checkError(t, call(t, s, "GET", "/calendars/events/appointments/"+created.ID, access, v, nil), 400, gone)
	checkError(t, call(t, s, "PUT", "/calendars/events/appointments/"+created.ID, access, v, map[string]any{"title": "x"}), 400, gone)
	checkError(t, call(t, s, "DELETE", "/calendars/events/"+created.ID, access, v, nil), 400, gone)
	checkError(t, call(t, s, "GET", "/calendars/events/appointments/not-an.id", access, v, nil), 500,
		`{"statusCode":500,"message":"Internal server error"}`)
	if n := len(s.Appointments("loc1")); n != 0 {
		t.Errorf("%d appointments after delete", n)
	}
	st := s.Stats()
	if got := [3]int{st.AppointmentCreates["loc1"], st.AppointmentUpdates["loc1"], st.AppointmentDeletes["loc1"]}; got != [3]int{1, 1, 1} {
		t.Errorf("creates, updates, deletes = %v", got)
	}
	if st.NotFound["loc1"] != 3 || st.MalformedIDs["loc1"] != 1 {
		t.Errorf("not found, malformed = %d, %d, want 3, 1", st.NotFound["loc1"], st.MalformedIDs["loc1"])
	}
	// The create said toNotify false, the update did not.
	if n := st.Notifications["loc1"]; n != 1 {
		t.Errorf("%d notifications, want 1 (the update)", n)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	s, clk := setup(t, ghltest.Options{EnforceRateLimit: true, RateLimit: 3, RateInterval: 10 * time.Second, DailyLimit: 5})
	access, _, _ := s.IssueToken("loc1")
	list := func() reply {
		return call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil)
	}
	headers := func(r reply) [5]string {
		h := r.header
		return [5]string{h.Get("X-RateLimit-Max"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Interval-Milliseconds"),
			h.Get("X-RateLimit-Limit-Daily"), h.Get("X-RateLimit-Daily-Remaining")}
	}
	for i, want := range [][5]string{{"3", "2", "10000", "5", "4"}, {"3", "1", "10000", "5", "3"}, {"3", "0", "10000", "5", "2"}} {
		r := list()
		if r.status != 200 {
			t.Fatalf("call %d: %d", i, r.status)
		}
		if diff := cmp.Diff(want, headers(r)); diff != "" {
			t.Errorf("call %d headers (-want +got):\n%s", i, diff)
		}
	}
	r := list()
	checkError(t, r, 429, `{"statusCode":429,"message":"Too many requests"}`)
	if r.header.Get("Retry-After") != "" {
		t.Error("429 has a Retry-After")
	}
	if diff := cmp.Diff([5]string{"3", "0", "10000", "5", "2"}, headers(r)); diff != "" {
		t.Errorf("429 headers (-want +got):\n%s", diff)
	}

	clk.Advance(10 * time.Second)
	for range 2 {
		if r := list(); r.status != 200 {
			t.Fatalf("after the interval: %d", r.status)
		}
	}
	// Daily limit (5) reached although the window has room.
	checkError(t, list(), 429, `{"statusCode":429,"message":"Too many requests"}`)
	if s.RateLimited("loc1") != 2 || s.MaxInWindow("loc1") != 3 {
		t.Errorf("RateLimited, MaxInWindow = %d, %d, want 2, 3", s.RateLimited("loc1"), s.MaxInWindow("loc1"))
	}
	// Five accepted, the two 429s not.
	if got := s.Stats().Accepted["loc1"]; got != 5 {
		t.Errorf("Accepted = %d, want 5", got)
	}

	t.Run("not enforced", func(t *testing.T) {
		s, _ := setup(t, ghltest.Options{RateLimit: 2})
		access, _, _ := s.IssueToken("loc1")
		for range 4 {
			call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil)
		}
		if s.MaxInWindow("loc1") != 4 || s.RateLimited("loc1") != 0 {
			t.Errorf("MaxInWindow, RateLimited = %d, %d, want 4, 0", s.MaxInWindow("loc1"), s.RateLimited("loc1"))
		}
	})
}

func TestFaultStatus(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	s.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc2", Status: 500})
	s.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc1", Status: 502, Times: 1})

	checkError(t, refresh(t, s, rt), 502, `{"statusCode":502,"message":"Bad Gateway"}`)
	if s.Rotations("loc1") != 0 || s.CurrentRefreshToken("loc1") != rt {
		t.Error("a Status fault acted on the request")
	}
	okToken(t, refresh(t, s, rt)) // Times: 1 is used up; loc2's fault does not match
	if n := s.Stats().Faults; n != 1 {
		t.Errorf("Faults = %d, want 1", n)
	}
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	remove := s.InjectFault(ghltest.Fault{Path: "/oauth/", Drop: true})

	req, err := tokenForm(t.Context(), s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	if s.Rotations("loc1") != 0 || s.CurrentRefreshToken("loc1") != rt {
		t.Error("a Drop fault acted on the request")
	}
	remove()
	okToken(t, refresh(t, s, rt))
}

func TestFaultDropAfter(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	s.InjectFault(ghltest.Fault{Path: "/oauth/token", DropAfter: true, Times: 1})

	req, err := tokenForm(t.Context(), s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	// The rotation happened and its answer was lost: the grace recovers it.
	if s.Rotations("loc1") != 1 {
		t.Fatal("DropAfter did not act")
	}
	got := okToken(t, refresh(t, s, rt))
	if got.RefreshToken != s.CurrentRefreshToken("loc1") || s.GraceReuses("loc1") != 1 {
		t.Errorf("grace after a lost answer: %+v", got)
	}
}

func TestFaultLatencyAfterHook(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")

	t.Run("hook before the answer", func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		record := func(e string) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}
		s.SetOnTokenIssued(func(loc string) { record("hook " + loc) })
		defer s.SetOnTokenIssued(nil)
		s.InjectFault(ghltest.Fault{Path: "/oauth/token", LatencyAfter: 20 * time.Millisecond, Times: 1})

		start := time.Now()
		got := okToken(t, refresh(t, s, rt))
		record("answer")
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Errorf("answered after %v, before LatencyAfter", d)
		}
		if diff := cmp.Diff([]string{"hook loc1", "answer"}, events); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
		rt = got.RefreshToken
	})

	t.Run("client gives up during LatencyAfter", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rotated := make(chan string, 1)
		s.SetOnTokenIssued(func(loc string) {
			rotated <- s.CurrentRefreshToken(loc)
			cancel() // the worker dies right after GHL rotated the token
		})
		defer s.SetOnTokenIssued(nil)
		s.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc1", LatencyAfter: time.Hour, Times: 1})

		req, err := tokenForm(ctx, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := s.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("answered despite the cancel")
		}
		newRT := <-rotated
		if newRT == rt || newRT == "" {
			t.Fatalf("hook saw refresh token %q", newRT)
		}
		got := okToken(t, refresh(t, s, rt))
		if got.RefreshToken != newRT {
			t.Errorf("grace pair refresh token %q, want %q", got.RefreshToken, newRT)
		}
	})
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	s.InjectFault(ghltest.Fault{Path: "/calendars/", Latency: 20 * time.Millisecond, Times: 1})
	start := time.Now()
	if r := call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
}

func TestSaveLoad(t *testing.T) {
	t.Parallel()
	s1, clk := setup(t, ghltest.Options{})
	access, rt, _ := s1.IssueToken("loc1")
	first := okToken(t, refresh(t, s1, rt))
	s1.AddCalendar("loc1", "cal1", "Physio")
	c := s1.AddContact(ghltest.Contact{LocationID: "loc1", FirstName: "Pat", Email: "pat@example.com", Tags: []string{"x"}})
	r := call(t, s1, "POST", "/calendars/events/appointments", first.AccessToken, ghltest.VersionCalendars,
		map[string]any{"calendarId": "cal1", "locationId": "loc1", "contactId": c.ID, "startTime": "2025-03-03T10:00:00Z"})
	if r.status != 200 {
		t.Fatalf("create appointment: %d %s", r.status, r.body)
	}

	var buf bytes.Buffer
	if err := s1.Save(&buf); err != nil {
		t.Fatal(err)
	}
	s2 := ghltest.NewServer(ghltest.Options{ClientID: clientID, ClientSecret: clientSecret, Now: clk.Now})
	defer s2.Close()
	if err := s2.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s1.Contacts("loc1"), s2.Contacts("loc1")); diff != "" {
		t.Errorf("Contacts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(s1.Appointments("loc1"), s2.Appointments("loc1")); diff != "" {
		t.Errorf("Appointments (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(s1.Locations(), s2.Locations()); diff != "" {
		t.Errorf("Locations (-want +got):\n%s", diff)
	}
	if !s2.Valid("loc1", access) || !s2.Valid("loc1", first.AccessToken) || s2.CurrentRefreshToken("loc1") != first.RefreshToken {
		t.Error("tokens lost")
	}
	// The rotation history survives: the spent token is still in its grace.
	if got := okToken(t, refresh(t, s2, rt)); got.RefreshToken != first.RefreshToken {
		t.Errorf("grace after load: %+v", got)
	}
	okToken(t, refresh(t, s2, first.RefreshToken))
	// The upsert index is rebuilt.
	var u upsertJSON
	call(t, s2, "POST", "/contacts/upsert", first.AccessToken, ghltest.VersionContacts,
		map[string]any{"locationId": "loc1", "email": "PAT@example.com"}).decode(t, &u)
	if u.New || u.Contact.ID != c.ID {
		t.Errorf("upsert after load: %+v", u)
	}

	if err := s2.Load(strings.NewReader(`{"version":99}`)); err == nil {
		t.Error("Load accepted version 99")
	}
}

func TestStatePath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ghl.json")
	s1 := ghltest.NewServer(ghltest.Options{StatePath: path})
	access, _, _ := s1.IssueToken("loc1")
	s1.Close()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	s2 := ghltest.NewServer(ghltest.Options{StatePath: path})
	defer s2.Close()
	if !s2.Valid("loc1", access) {
		t.Error("state not loaded from StatePath")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	_, rt, _ := s.IssueToken("loc1")
	const n = 50
	pairs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, err := tokenForm(t.Context(), s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var tok tokenJSON
			if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 {
				t.Errorf("status %d, err %v", resp.StatusCode, err)
			}
			pairs[i] = tok.AccessToken + " " + tok.RefreshToken
		})
	}
	wg.Wait()
	for i, p := range pairs {
		if p != pairs[0] {
			t.Fatalf("caller %d got %q, caller 0 %q", i, p, pairs[0])
		}
	}
	got := [4]int{s.TokenCalls("loc1"), s.Rotations("loc1"), s.SpentReuses("loc1"), s.GraceReuses("loc1")}
	if want := [4]int{n, 1, n - 1, n - 1}; got != want {
		t.Errorf("token calls, rotations, spent reuses, grace reuses = %v, want %v", got, want)
	}
}

func TestResetCounters(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, rt, _ := s.IssueToken("loc1")
	okToken(t, refresh(t, s, rt))
	call(t, s, "GET", "/calendars/?locationId=loc1", access, ghltest.VersionCalendars, nil)
	s.ResetCounters()
	st := s.Stats()
	if len(st.Rotations) != 0 || len(st.MaxInWindow) != 0 || s.Requests("", "") != 0 {
		t.Errorf("counters after reset: %+v", st)
	}
}

func BenchmarkUpsertContact(b *testing.B) {
	s := ghltest.NewServer(ghltest.Options{})
	defer s.Close()
	access, _, _ := s.IssueToken("loc1")
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			body := `{"locationId":"loc1","email":"p` + string(rune('a'+i%26)) + `@example.com","firstName":"P"}`
			req, _ := http.NewRequest("POST", s.URL+"/contacts/upsert", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+access)
			req.Header.Set("Version", ghltest.VersionContacts)
			resp, err := s.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkRefresh(b *testing.B) {
	s := ghltest.NewServer(ghltest.Options{})
	defer s.Close()
	_, rt, _ := s.IssueToken("loc1")
	for b.Loop() {
		form := url.Values{"client_id": {"c"}, "client_secret": {"s"}, "grant_type": {"refresh_token"}, "refresh_token": {rt}}
		resp, err := s.Client().PostForm(s.URL+"/oauth/token", form)
		if err != nil {
			b.Fatal(err)
		}
		var tok tokenJSON
		err = json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if err != nil || tok.RefreshToken == "" {
			b.Fatalf("refresh: %v", err)
		}
		rt = tok.RefreshToken
	}
}

func TestHandlerInProcess(t *testing.T) {
	t.Parallel()
	s := ghltest.New(ghltest.Options{})
	defer s.Close()
	if s.URL != "" || s.Client() != nil {
		t.Error("New started a listener")
	}
	access, _, _ := s.IssueToken("loc1")
	s.AddCalendar("loc1", "cal1", "Physio")
	req := httptest.NewRequest("GET", "/calendars/?locationId=loc1", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Version", ghltest.VersionCalendars)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if want := `{"calendars":[{"id":"cal1","locationId":"loc1","name":"Physio"}]}`; rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("got %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	if rec.Header().Get("X-RateLimit-Remaining") != "99" {
		t.Errorf("X-RateLimit-Remaining = %q, want 99", rec.Header().Get("X-RateLimit-Remaining"))
	}
}

func TestContactAppointments(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	other, _, _ := s.IssueToken("loc2")
	s.AddCalendar("loc1", "cal1", "Physio")
	pat := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	bob := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "bob@example.com"})
	book := func(contactID, start string) ghltest.Appointment {
		t.Helper()
		r := call(t, s, "POST", "/calendars/events/appointments", access, ghltest.VersionCalendars,
			map[string]any{"calendarId": "cal1", "locationId": "loc1", "contactId": contactID, "startTime": start})
		var a ghltest.Appointment
		r.decode(t, &a)
		return a
	}
	first := book(pat.ID, "2025-03-03T10:00:00Z")
	book(bob.ID, "2025-03-03T11:00:00Z")
	second := book(pat.ID, "2025-03-04T10:00:00Z")

	// GHL lists them with times without an offset, in the location's zone
	// (America/Chicago by default: CST in March, before the switch).
	r := call(t, s, "GET", "/contacts/"+pat.ID+"/appointments", access, ghltest.VersionContacts, nil)
	type event struct{ ID, CalendarID, ContactID, StartTime, EndTime string }
	var got struct{ Events []event }
	r.decode(t, &got)
	want := []event{{first.ID, "cal1", pat.ID, "2025-03-03 04:00:00", "2025-03-03 04:30:00"},
		{second.ID, "cal1", pat.ID, "2025-03-04 04:00:00", "2025-03-04 04:30:00"}}
	if diff := cmp.Diff(want, got.Events); r.status != 200 || diff != "" {
		t.Errorf("status %d, events (-want +got):\n%s", r.status, diff)
	}
	s.SetLocationInfo("loc1", "", "Europe/Berlin")
	call(t, s, "GET", "/contacts/"+pat.ID+"/appointments", access, ghltest.VersionContacts, nil).decode(t, &got)
	if len(got.Events) != 2 || got.Events[0].StartTime != "2025-03-03 11:00:00" {
		t.Errorf("events in Berlin time: %+v", got.Events)
	}

	r = call(t, s, "GET", "/contacts/"+bob.ID+"/appointments", other, ghltest.VersionContacts, nil)
	checkError(t, r, 403, `{"statusCode":403,"message":"The token does not have access to this location"}`)
	r = call(t, s, "GET", "/contacts/"+unknownID+"/appointments", access, ghltest.VersionContacts, nil)
	checkError(t, r, 400, `{"statusCode":400,"message":"Contact with id `+unknownID+` not found"}`)
}
