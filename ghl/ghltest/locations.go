package ghltest

import "net/http"

// locationJSON is a location as GET /locations/{id} answers it: the fields
// ghlsync reads and a few it does not, of the types GHL's spec gives, so a
// client that decodes too much is caught.
type locationJSON struct {
	ID        string         `json:"id"`
	CompanyID string         `json:"companyId,omitempty"`
	Name      string         `json:"name"`
	Timezone  string         `json:"timezone"`
	Settings  map[string]any `json:"settings"`
	Social    map[string]any `json:"social"`
}

// handleGetLocation serves GET /locations/{id}: to the location's own token
// or its agency's token. GHL answers an unknown id with 400 "not found"
// rather than a 404.
func (s *Server) handleGetLocation(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	s.mu.Lock()
	l := s.st.locations[id]
	var out locationJSON
	if l != nil {
		out = locationJSON{ID: l.ID, CompanyID: l.CompanyID, Name: l.name(), Timezone: l.timezone(),
			Settings: map[string]any{"allowDuplicateContact": l.AllowDuplicates}, Social: map[string]any{}}
	}
	s.mu.Unlock()
	switch {
	case l == nil:
		writeError(w, http.StatusBadRequest, "Location with id "+id+" not found")
	case !g.canAccess(id) && !(g.UserType == UserTypeCompany && g.CompanyID == l.CompanyID):
		writeError(w, http.StatusForbidden, "The token does not have access to this location")
	default:
		writeJSON(w, http.StatusOK, struct {
			Location locationJSON `json:"location"`
		}{out})
	}
}
