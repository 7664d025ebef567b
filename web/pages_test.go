package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

// fakeActions records what the buttons enqueued.
type fakeActions struct {
	mu   sync.Mutex
	done []string
}

func (f *fakeActions) Enqueue(_ context.Context, action, loc string) (web.Enqueued, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = append(f.done, action+" "+loc)
	return web.Enqueued{TaskID: "task-1", Queue: "critical"}, nil
}

func (f *fakeActions) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.done...)
}

// fakeSchedules has one schedule, "nightly"; Set refuses any interval but
// 30s as the command line would.
type fakeSchedules struct{}

func (fakeSchedules) List(context.Context) ([]web.ScheduleView, error) {
	return []web.ScheduleView{{Name: "nightly", TaskType: "ghl:patients:sync", Queue: "default", Spec: "every 1h", Every: "1h", Enabled: true}}, nil
}

func (fakeSchedules) Set(_ context.Context, name, every, _, _ string) (string, error) {
	if name != "nightly" {
		return "", &web.InputError{Err: errors.New(`no schedule named "` + name + `"`)}
	}
	if every != "30s" {
		return "", &web.InputError{Err: errors.New(`bad schedule: --every "` + every + `" is not a duration such as 30s, 10m or 1h`)}
	}
	return "nightly: every 30s; next run 2026-12-01T10:00:30Z", nil
}

func (fakeSchedules) SetEnabled(context.Context, string, bool) (string, error) {
	return "nightly: disabled", nil
}

func (fakeSchedules) RunNow(context.Context, string) (string, error) {
	return "", errors.New("redis: connection refused")
}

type pagesEnv struct {
	*storetest.Stack
	h       http.Handler
	actions *fakeActions
	clock   *clock.Fake
}

const (
	opsLogin    = "ops:s3cret"
	viewerLogin = "watch:v1ew"
)

func setupPages(t *testing.T) *pagesEnv {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	clk := clock.NewFake(time.Now())
	actions := &fakeActions{}
	guard := (&web.Admin{User: "ops", Password: "s3cret", ViewerUser: "watch", ViewerPassword: "v1ew", PublicURL: publicURL, Clock: clk}).Guard()
	h := guard((&web.Status{Source: stack.Store, Log: slog.New(slog.DiscardHandler), Clock: clk, Actions: actions,
		Schedules: fakeSchedules{}, FormKey: []byte("test-form-key-0123456789abcdef01"), PublicURL: publicURL}).Handler())
	return &pagesEnv{Stack: stack, h: h, actions: actions, clock: clk}
}

// do sends a request as login ("user:password"), with the cookies given.
func (e *pagesEnv) do(method, target, login string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, publicURL+target, body)
	req.RemoteAddr = "203.0.113.9:4000"
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	user, pass, _ := strings.Cut(login, ":")
	req.SetBasicAuth(user, pass)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token is the form token of the page at target, as login sees it.
func (e *pagesEnv) token(t *testing.T, target, login string) string {
	t.Helper()
	rec := e.do(http.MethodGet, target, login, nil)
	m := csrfField.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		t.Fatalf("%s as %s: %d, no form token in\n%s", target, login, rec.Code, rec.Body)
	}
	return m[1]
}

func cookie(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// The summary adds up to the locations listed, in words, agencies apart;
// all three needing reconnection is said so, not "3 connected".
func TestOverviewSummary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(*testing.T, *storetest.Stack)
		want  string
	}{
		{"none", func(*testing.T, *storetest.Stack) {}, "No location is connected yet."},
		{"all need reconnecting", func(t *testing.T, s *storetest.Stack) {
			for _, loc := range []string{"l1", "l2", "l3"} {
				s.Connect(t, loc, time.Now().Add(time.Hour))
				if err := s.Store.SetStatus(ctx, loc, store.StatusNeedsReauth, "revoked"); err != nil {
					t.Fatal(err)
				}
			}
		}, "3 locations: 3 need reconnecting"},
		{"mixed, with an agency", func(t *testing.T, s *storetest.Stack) {
			for _, loc := range []string{"l1", "l2", "l3", "l4"} {
				s.Connect(t, loc, time.Now().Add(time.Hour))
			}
			must(t, s.Store.Connect(ctx, store.Connection{LocationID: "comp9", UserType: store.UserTypeCompany,
				Tokens: store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour)}}))
			must(t, s.Store.SetStatus(ctx, "l2", store.StatusNeedsReauth, "revoked"))
			must(t, s.Store.SetStatus(ctx, "l3", store.StatusInactive, "inactive"))
			must(t, s.Store.SetStatus(ctx, "l4", store.StatusUninstalled, "uninstalled"))
		}, "4 locations and 1 agency: 2 active, 1 needs reconnecting, 1 uninstalled, 1 inactive in GHL"},
	} {
		// A subtest each, so that each stack (and the Redis database it
		// leases) is released before the next is built.
		t.Run(tc.name, func(t *testing.T) {
			stack := storetest.NewStack(t, ghltest.Options{})
			tc.setup(t, stack)
			rec := get(t, (&web.Status{Source: stack.Store}).Handler(), "/api/locations")
			var body struct {
				Summary   string
				Locations []web.LocationStatus
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Summary != tc.want {
				t.Errorf("summary %q, want %q", body.Summary, tc.want)
			}
			for _, l := range body.Locations {
				if l.TokenLive != (l.Status == store.StatusActive || l.Status == store.StatusInactive) {
					t.Errorf("%s (%s) token_live %v", l.LocationID, l.Status, l.TokenLive)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A button's POST needs the admin's form token: none, a forged one, an
// expired one, or one of another login is refused with nothing enqueued;
// the right one enqueues once and the page it redirects to says so, once.
func TestLocationButtonsNeedTheAdminsToken(t *testing.T) {
	t.Parallel()
	e := setupPages(t)
	e.Connect(t, "loc1", time.Now().Add(time.Hour))
	tok := e.token(t, "/locations/loc1", opsLogin)
	// The same admin with another password (after a change) is another
	// login: its tokens are not the first one's.
	other := (&web.Admin{User: "ops", Password: "n3w", PublicURL: publicURL}).Guard()(
		(&web.Status{Source: e.Store, Actions: e.actions, FormKey: []byte("test-form-key-0123456789abcdef01")}).Handler())
	req := httptest.NewRequest(http.MethodGet, publicURL+"/locations/loc1", nil)
	req.SetBasicAuth("ops", "n3w")
	rec := httptest.NewRecorder()
	other.ServeHTTP(rec, req)
	otherTok := csrfField.FindStringSubmatch(rec.Body.String())[1]

	for _, tc := range []struct {
		name, token string
		advance     time.Duration
	}{
		{"no token", "", 0},
		{"forged", strings.SplitN(tok, ".", 2)[0] + ".AAAA", 0},
		{"another login's", otherTok, 0},
		{"expired", tok, 13 * time.Hour},
	} {
		e.clock.Advance(tc.advance)
		rec := e.do(http.MethodPost, "/locations/loc1/refresh", opsLogin, url.Values{"csrf": {tc.token}})
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "reload the page") {
			t.Errorf("%s token: %d, want 403 saying to reload", tc.name, rec.Code)
		}
	}
	if got := e.actions.calls(); len(got) != 0 {
		t.Fatalf("refused POSTs enqueued %v", got)
	}

	tok = e.token(t, "/locations/loc1", opsLogin)
	rec = e.do(http.MethodPost, "/locations/loc1/sync-patients", opsLogin, url.Values{"csrf": {tok}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/locations/loc1" {
		t.Fatalf("POST with the token: %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
	if got := e.actions.calls(); len(got) != 1 || got[0] != "sync-patients loc1" {
		t.Fatalf("enqueued %v, want sync-patients loc1 once", got)
	}
	notice := cookie(rec, "ghlsync_notice")
	if notice == nil || !notice.HttpOnly || !notice.Secure {
		t.Fatalf("notice cookie %+v; want an HttpOnly, Secure one (WEB_PUBLIC_URL is https)", notice)
	}
	page := e.do(http.MethodGet, "/locations/loc1", opsLogin, nil, notice)
	if !strings.Contains(page.Body.String(), "sync-patients of location loc1 enqueued as task task-1 (queue critical)") {
		t.Errorf("the page after the POST does not show the notice:\n%s", page.Body)
	}
	if c := cookie(page, "ghlsync_notice"); c == nil || c.MaxAge >= 0 {
		t.Errorf("the notice is not cleared once shown: %+v", c)
	}
	forged := &http.Cookie{Name: "ghlsync_notice", Value: "SGFja2Vk.AAAA"}
	if page := e.do(http.MethodGet, "/locations/loc1", opsLogin, nil, forged); strings.Contains(page.Body.String(), "Hacked") {
		t.Error("a notice cookie this process did not sign is shown")
	}
	if rec := e.do(http.MethodPost, "/locations/nowhere/refresh", opsLogin, url.Values{"csrf": {tok}}); rec.Code != http.StatusNotFound {
		t.Errorf("a button for an unknown location: %d, want 404", rec.Code)
	}
}

// The viewer sees every page without a form and is refused every POST,
// with its own valid-looking token or the admin's.
func TestViewerChangesNothing(t *testing.T) {
	t.Parallel()
	e := setupPages(t)
	e.Connect(t, "loc1", time.Now().Add(time.Hour))
	adminTok := e.token(t, "/locations/loc1", opsLogin)
	for _, target := range []string{"/", "/locations/loc1", "/schedules", "/api/locations"} {
		rec := e.do(http.MethodGet, target, viewerLogin, nil)
		if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "<form") {
			t.Errorf("%s as the viewer: %d, forms shown: %v", target, rec.Code, strings.Contains(rec.Body.String(), "<form"))
		}
	}
	for _, target := range []string{"/locations/loc1/refresh", "/schedules/nightly/disable"} {
		rec := e.do(http.MethodPost, target, viewerLogin, url.Values{"csrf": {adminTok}})
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "changes nothing") {
			t.Errorf("POST %s as the viewer: %d %q", target, rec.Code, rec.Body)
		}
	}
	if got := e.actions.calls(); len(got) != 0 {
		t.Errorf("the viewer enqueued %v", got)
	}
}

// The schedules page shows the command line's one-line error with what
// was typed, 400; success redirects with its line; a failure of the system
// is 503, not the operator's mistake.
func TestSchedulesPageErrors(t *testing.T) {
	t.Parallel()
	e := setupPages(t)
	tok := e.token(t, "/schedules", opsLogin)
	rec := e.do(http.MethodPost, "/schedules/nightly/set", opsLogin, url.Values{"csrf": {tok}, "every": {" soon "}})
	body := rec.Body.String()
	if rec.Code != http.StatusBadRequest || !strings.Contains(body, `nightly: bad schedule: --every &#34;soon&#34; is not a duration such as 30s, 10m or 1h`) ||
		!strings.Contains(body, `value="soon"`) {
		t.Errorf("a bad interval: %d\n%s", rec.Code, body)
	}
	rec = e.do(http.MethodPost, "/schedules/nightly/set", opsLogin, url.Values{"csrf": {tok}, "every": {"30s"}})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("a good interval: %d %s", rec.Code, rec.Body)
	}
	if page := e.do(http.MethodGet, "/schedules", opsLogin, nil, cookie(rec, "ghlsync_notice")); !strings.Contains(page.Body.String(), "nightly: every 30s; next run") {
		t.Errorf("no notice after the change:\n%s", page.Body)
	}
	if rec := e.do(http.MethodPost, "/schedules/nightly/run", opsLogin, url.Values{"csrf": {tok}}); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("run now with Redis down: %d, want 503", rec.Code)
	}
	if rec := e.do(http.MethodPost, "/schedules/nightly/explode", opsLogin, url.Values{"csrf": {tok}}); rec.Code != http.StatusNotFound {
		t.Errorf("an unknown schedule action: %d, want 404", rec.Code)
	}
}
