package ghltest

import (
	"net/http"
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
