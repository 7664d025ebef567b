package ghltest

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// routeScopes is the scope each API route of the fake requires, as GHL's
// scope table (docs/oauth/Scopes.md) and the OpenAPI files' security
// sections give it. Keys are route patterns with wildcard names left out
// ("GET /contacts/{}"), so a route matches however its wildcards are named.
// GHL answers a token without the scope with 401 "The token is not
// authorized for this scope." (msgScope).
//
// Every route served through Server.api must be listed: New panics on one
// that is not, so a route cannot be added without its scope. The table may
// list GHL routes the fake does not serve (yet).
var routeScopes = map[string]string{
	"POST /oauth/locationToken":     "oauth.write",
	"GET /oauth/installedLocations": "oauth.readonly",

	"POST /contacts/upsert":                 "contacts.write",
	"POST /contacts/{$}":                    "contacts.write",
	"POST /contacts/":                       "contacts.write",
	"PUT /contacts/{}":                      "contacts.write",
	"DELETE /contacts/{}":                   "contacts.write",
	"POST /contacts/{}/tags":                "contacts.write",
	"DELETE /contacts/{}/tags":              "contacts.write",
	"GET /contacts/{}":                      "contacts.readonly",
	"GET /contacts/{$}":                     "contacts.readonly",
	"POST /contacts/search":                 "contacts.readonly",
	"GET /contacts/search/duplicate":        "contacts.readonly",
	"GET /contacts/{}/appointments":         "contacts.readonly",
	"GET /locations/{}":                     "locations.readonly",
	"GET /locations/{}/customFields":        "locations/customFields.readonly",
	"POST /locations/{}/customFields":       "locations/customFields.write",
	"GET /users/{$}":                        "users.readonly",
	"GET /users/":                           "users.readonly",
	"GET /users/{}":                         "users.readonly",
	"GET /calendars/{$}":                    "calendars.readonly",
	"GET /calendars/":                       "calendars.readonly",
	"GET /calendars/{}":                     "calendars.readonly",
	"GET /calendars/events":                 "calendars/events.readonly",
	"GET /calendars/events/appointments/{}": "calendars/events.readonly",
	"POST /calendars/events/appointments":   "calendars/events.write",
	"PUT /calendars/events/appointments/{}": "calendars/events.write",
	"DELETE /calendars/events/{}":           "calendars/events.write",

	"GET /calendars/appointments/{}/notes":       "calendars/events.readonly",
	"POST /calendars/appointments/{}/notes":      "calendars/events.write",
	"PUT /calendars/appointments/{}/notes/{}":    "calendars/events.write",
	"DELETE /calendars/appointments/{}/notes/{}": "calendars/events.write",
}

// Messages of GHL's 401s that no refresh cures (GHL issue #205).
const (
	msgScope       = "The token is not authorized for this scope."
	msgUserMissing = "The user does not exist."
)

// wildcard matches a ServeMux wildcard other than {$}.
var wildcard = regexp.MustCompile(`\{[^}$]*\}`)

// routeKey is pattern as routeScopes keys it: wildcard names left out and
// a host-less pattern's method kept.
func routeKey(pattern string) string { return wildcard.ReplaceAllString(pattern, "{}") }

// scopeFor returns the scope a route pattern requires; ok is false for a
// pattern routeScopes does not list.
func scopeFor(pattern string) (scope string, ok bool) {
	scope, ok = routeScopes[routeKey(pattern)]
	return scope, ok
}

// router is the fake's ServeMux: Handle binds each API route (Server.api)
// to the scope its pattern requires, and panics for an API route whose
// scope routeScopes does not give.
type router struct{ *http.ServeMux }

// Handle registers h for pattern, as ServeMux.Handle does.
func (m router) Handle(pattern string, h http.Handler) {
	if a, ok := h.(*apiRoute); ok {
		scope, known := scopeFor(pattern)
		if !known {
			panic(fmt.Sprintf("ghltest: route %q has no scope in routeScopes (ghltest/scopes.go): add the scope GHL requires for it", pattern))
		}
		a.scope = scope
	}
	m.ServeMux.Handle(pattern, h)
}

// hasScope reports whether a space separated scope list grants scope.
func hasScope(granted, scope string) bool {
	for _, s := range strings.Fields(granted) {
		if s == scope {
			return true
		}
	}
	return false
}
