package web_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

func setup(t *testing.T) (http.Handler, *storetest.Stack) {
	t.Helper()
	s, stack := newServer(t)
	return s.Handler(), stack
}

// newServer returns the web server of a new stack, for tests that change
// its parts before taking its Handler.
func newServer(t *testing.T) (*web.Server, *storetest.Stack) {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID,
		ClientSecret: storetest.ClientSecret, RedirectURI: "http://localhost:8080/api/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	s := &web.Server{
		OAuth:          client.OAuth,
		Store:          stack.Store,
		Redis:          stack.Redis(t),
		MarketplaceURL: "https://marketplace.example",
		Scopes:         []string{"contacts.write", "calendars.write"},
		AppID:          web.AppID(storetest.ClientID),
		Locations:      client.Locations,
		Log:            slog.New(slog.DiscardHandler),
		StateTTL:       time.Minute,
		Cipher:         testenv.Cipher(t, stack.Key),
	}
	return s, stack
}

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

// startConnect follows /api/auth/connect and returns the state it sent to
// GHL's consent page.
func startConnect(t *testing.T, h http.Handler, query string) string {
	t.Helper()
	rec := get(t, h, "/api/auth/connect"+query)
	if rec.Code != http.StatusFound {
		t.Fatalf("connect: status %d", rec.Code)
	}
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "marketplace.example" || u.Path != "/v2/oauth/chooselocation" {
		t.Fatalf("connect redirects to %s, want the consent page", u)
	}
	q := u.Query()
	wantScope := "contacts.write calendars.write"
	if strings.Contains(query, "Company") {
		wantScope += " oauth.readonly oauth.write"
	}
	if q.Get("client_id") != storetest.ClientID || q.Get("response_type") != "code" || q.Get("scope") != wantScope {
		t.Fatalf("consent URL query = %v", q)
	}
	if len(q.Get("state")) < 32 {
		t.Fatalf("state %q is too short to be unguessable", q.Get("state"))
	}
	return q.Get("state")
}

func callback(t *testing.T, h http.Handler, code, state string) *httptest.ResponseRecorder {
	t.Helper()
	return get(t, h, "/api/auth/callback?"+url.Values{"code": {code}, "state": {state}}.Encode())
}

func credentials(t *testing.T, st *store.Store) []store.Credential {
	t.Helper()
	cs, err := st.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestConnectLocation(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	stack.Fake.AddLocation("locA", "comp1")
	state := startConnect(t, h, "")
	rec := callback(t, h, stack.Fake.AuthorizeCode("Location", "locA"), state)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "locA") {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	if !stack.HoldsCurrent(t, "locA") {
		t.Fatal("the location's tokens are not stored")
	}
	_, c := stack.StoredTokens(t, "locA")
	if c.UserType != store.UserTypeLocation || c.CompanyID != "comp1" || c.ExpiresAt.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("stored credential = %+v", c)
	}
}

func TestConnectCompany(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	stack.Fake.AddCompany("agency1")
	stack.Fake.AddLocation("l1", "agency1")
	stack.Fake.AddLocation("l2", "agency1")
	state := startConnect(t, h, "?user_type=Company")
	rec := callback(t, h, stack.Fake.AuthorizeCode("Company", "agency1", "l1", "l2"), state)
	if rec.Code != http.StatusOK {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	for _, loc := range []string{"l1", "l2"} {
		if !strings.Contains(rec.Body.String(), loc) {
			t.Errorf("page does not name %s", loc)
		}
		if !stack.HoldsCurrent(t, loc) {
			t.Errorf("%s: tokens not stored", loc)
		}
		if _, c := stack.StoredTokens(t, loc); c.UserType != store.UserTypeLocation {
			t.Errorf("%s: user type %s", loc, c.UserType)
		}
	}
	if _, c := stack.StoredTokens(t, "agency1"); c.UserType != store.UserTypeCompany {
		t.Errorf("agency token stored with user type %s", c.UserType)
	}
	if n := len(credentials(t, stack.Store)); n != 3 {
		t.Errorf("%d credentials stored, want 3 (agency and two locations)", n)
	}
}

func TestCallbackRefusesBadState(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	stack.Fake.AddLocation("locA", "comp1")

	for name, state := range map[string]string{"missing": "", "unknown": strings.Repeat("ab", 24)} {
		rec := callback(t, h, stack.Fake.AuthorizeCode("Location", "locA"), state)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "/api/auth/connect") {
			t.Errorf("%s state: %d %s", name, rec.Code, rec.Body)
		}
	}
	if n := len(credentials(t, stack.Store)); n != 0 {
		t.Fatalf("%d credentials stored after bad states", n)
	}

	state := startConnect(t, h, "")
	if rec := callback(t, h, stack.Fake.AuthorizeCode("Location", "locA"), state); rec.Code != http.StatusOK {
		t.Fatalf("first use: %d", rec.Code)
	}
	before, _ := stack.StoredTokens(t, "locA")
	stack.Fake.AddLocation("locB", "comp1")
	rec := callback(t, h, stack.Fake.AuthorizeCode("Location", "locB"), state)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("reused state: %d", rec.Code)
	}
	if n := len(credentials(t, stack.Store)); n != 1 {
		t.Fatalf("%d credentials after a reused state, want 1", n)
	}
	if after, _ := stack.StoredTokens(t, "locA"); after.RefreshToken != before.RefreshToken {
		t.Fatal("a reused state changed stored tokens")
	}
}

func TestCallbackRefusesExpiredState(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	stack.Fake.AddLocation("locA", "comp1")
	state := startConnect(t, h, "")
	rc := stack.Redis(t)
	// Expire it the way time would.
	rc.PExpire(context.Background(), "ghlsync:oauth:state:"+state, time.Millisecond)
	testenv.Eventually(t, 5*time.Second, "the state to expire", func() bool {
		return rc.Exists(context.Background(), "ghlsync:oauth:state:"+state).Val() == 0
	})
	if rec := callback(t, h, stack.Fake.AuthorizeCode("Location", "locA"), state); rec.Code != http.StatusBadRequest {
		t.Fatalf("expired state: %d", rec.Code)
	}
	if n := len(credentials(t, stack.Store)); n != 0 {
		t.Fatalf("%d credentials stored", n)
	}
}

// An anonymous client cannot fill Redis with OAuth states or spend GHL
// calls on callbacks: 20 connects and 20 callbacks a minute per client
// address, then 429 with Retry-After. Other clients go on.
func TestConnectAndCallbackAreRateLimited(t *testing.T) {
	t.Parallel()
	h, stack := setup(t)
	from := func(method, target, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	attacker := "203.0.113.9:4000"
	for i := range 200 {
		rec := from(http.MethodGet, "/api/auth/connect", attacker)
		want := http.StatusFound
		if i >= 20 {
			want = http.StatusTooManyRequests
		}
		if rec.Code != want {
			t.Fatalf("connect %d: status %d, want %d", i+1, rec.Code, want)
		}
		if want == http.StatusTooManyRequests {
			if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
				t.Fatalf("connect %d: Retry-After %q", i+1, ra)
			}
		}
	}
	keys, err := stack.Redis(t).Keys(context.Background(), "ghlsync:oauth:state:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 20 {
		t.Errorf("200 connects from one client stored %d states, want 20", len(keys))
	}
	for i := range 21 {
		rec := from(http.MethodGet, "/api/auth/callback?state=nope&code=x", attacker)
		if want := map[bool]int{true: http.StatusBadRequest, false: http.StatusTooManyRequests}[i < 20]; rec.Code != want {
			t.Fatalf("callback %d: status %d, want %d", i+1, rec.Code, want)
		}
	}
	if rec := from(http.MethodGet, "/api/auth/connect", "198.51.100.7:5000"); rec.Code != http.StatusFound {
		t.Errorf("another client's connect: %d", rec.Code)
	}
}
