package ghltest

import (
	"net/http"
	"strings"
)

// TokenAnswer shapes the JSON of the token endpoints' answers
// (/oauth/token and /oauth/locationToken) in ways GHL's own answers vary:
// its spec requires only userId, types isBulkInstallation a boolean with
// "Bearer" as the example, and answers without expires_in are reported.
// The zero value is GHL's usual answer.
type TokenAnswer struct {
	// NoExpiresIn leaves expires_in out.
	NoExpiresIn bool
	// OddSideFields gives every field a client has no use for an odd
	// type (isBulkInstallation "Bearer", userId and planId numbers,
	// traceId an object, approveAllLocations a string,
	// installToFutureLocations a number) and adds fields no spec lists.
	OddSideFields bool
}

// SetTokenAnswer shapes the token answers about subject (a location or
// company id; "" for every subject without an answer of its own, which
// Options.TokenAnswer sets at start).
func (s *Server) SetTokenAnswer(subject string, a TokenAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[subject] = a
}

// SetUserMissing makes every API call whose path names GHL user userID
// (/users/{userID}) answer 401 "The user does not exist.", as GHL answers
// for a user deleted or never there (GHL issue #205: a 401, not a 404);
// missing false ends it.
func (s *Server) SetUserMissing(userID string, missing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if missing {
		s.userMissing[userID] = true
	} else {
		delete(s.userMissing, userID)
	}
}

// namesMissingUserLocked reports whether path names a user SetUserMissing
// marked.
func (s *Server) namesMissingUserLocked(path string) bool {
	if len(s.userMissing) == 0 {
		return false
	}
	_, rest, ok := strings.Cut(path, "/users/")
	if !ok {
		return false
	}
	id, _, _ := strings.Cut(rest, "/")
	return s.userMissing[id]
}

// writeToken writes a token answer shaped as SetTokenAnswer says for its
// subject. A Company token carries the bulk install fields.
func (s *Server) writeToken(w http.ResponseWriter, r tokenResponse) {
	s.mu.Lock()
	a, ok := s.answers[r.subject()]
	if !ok {
		a = s.answers[""]
	}
	var approveAll, future bool
	if c := s.st.companies[r.CompanyID]; r.UserType == UserTypeCompany && c != nil {
		future = c.InstallToFuture
		approveAll = len(r.ApprovedLocations) >= len(c.Locations)
	}
	s.mu.Unlock()

	out := map[string]any{
		"access_token":       r.AccessToken,
		"token_type":         r.TokenType,
		"expires_in":         r.ExpiresIn,
		"refresh_token":      r.RefreshToken,
		"scope":              r.Scope,
		"userType":           r.UserType,
		"userId":             r.UserID,
		"isBulkInstallation": r.IsBulkInstallation,
		"refreshTokenId":     r.RefreshTokenID,
		"traceId":            r.TraceID,
	}
	for k, v := range map[string]string{"locationId": r.LocationID, "companyId": r.CompanyID, "planId": r.PlanID} {
		if v != "" {
			out[k] = v
		}
	}
	if r.RefreshToken == "" {
		delete(out, "refresh_token")
	}
	if len(r.ApprovedLocations) > 0 {
		out["approvedLocations"] = r.ApprovedLocations
	}
	if r.UserType == UserTypeCompany {
		out["approveAllLocations"] = approveAll
		out["installToFutureLocations"] = future
	}
	if a.NoExpiresIn {
		delete(out, "expires_in")
	}
	if a.OddSideFields {
		out["isBulkInstallation"] = "Bearer"
		out["userId"] = 48151623
		out["planId"] = 42
		out["traceId"] = map[string]any{"id": r.TraceID}
		out["refreshTokenId"] = 7
		out["approveAllLocations"] = "true"
		out["installToFutureLocations"] = 0
		out["hlNewField"] = []any{1, "a", nil, map[string]any{}}
	}
	writeJSON(w, http.StatusOK, out)
}
