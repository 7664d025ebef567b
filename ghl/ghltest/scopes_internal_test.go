package ghltest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An API route whose scope routeScopes does not give cannot be added: the
// registration panics and names the file to add it to. Routes that are
// not API routes (the token endpoint, the consent page) need none, and a
// wildcard matches whatever it is named.
func TestRouterRequiresAScopePerAPIRoute(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	m := router{http.NewServeMux()}
	func() {
		defer func() {
			r := recover()
			if msg, _ := r.(string); !strings.Contains(msg, "GET /widgets/{id}") || !strings.Contains(msg, "scopes.go") {
				t.Errorf("registering a route without a scope: recovered %v", r)
			}
		}()
		m.Handle("GET /widgets/{id}", s.api(VersionContacts, true, s.handleGetContact))
	}()
	m.HandleFunc("GET /plain", func(http.ResponseWriter, *http.Request) {})
	a := s.api(VersionContacts, true, s.handleGetContact).(*apiRoute)
	m.Handle("GET /contacts/{contactId}", a)
	if a.scope != "contacts.readonly" {
		t.Errorf("GET /contacts/{contactId} requires %q, want contacts.readonly", a.scope)
	}
}

// SetUserMissing makes an API route whose path names the user answer GHL's
// "The user does not exist." 401, before its handler runs; other calls of
// the same token go on.
func TestUserMissing(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	m := router{http.NewServeMux()}
	served := 0
	m.Handle("GET /users/{id}", s.api(VersionContacts, true, func(w http.ResponseWriter, r *http.Request, g *grant) {
		served++
		writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
	}))
	access, _, _ := s.IssueToken("loc1")
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("Version", VersionContacts)
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, req)
		return rec
	}
	s.SetUserMissing("u-gone", true)
	rec := get("/users/u-gone")
	if want := `{"statusCode":401,"message":"The user does not exist.","error":"Unauthorized"}`; rec.Code != 401 || rec.Body.String() != want {
		t.Errorf("a missing user: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/users/u-here"); rec.Code != 200 || served != 1 {
		t.Errorf("another user: %d, served %d", rec.Code, served)
	}
	if got := s.Stats().UserMissing["loc1"]; got != 1 {
		t.Errorf("UserMissing = %d", got)
	}
}
