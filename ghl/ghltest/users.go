package ghltest

import (
	"net/http"
	"strings"
)

// User is a GHL user (staff member) of a location: whom appointments are
// assigned to.
type User struct {
	ID         string `json:"id"`
	LocationID string `json:"locationId"`
	Name       string `json:"name"`
	Email      string `json:"email"`
}

// userJSON is a user as GET /users/ answers it (UserSchema), with side
// fields of GHL's types so a client that decodes too much is caught.
type userJSON struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	FirstName   string            `json:"firstName"`
	LastName    string            `json:"lastName"`
	Email       string            `json:"email"`
	Phone       string            `json:"phone"`
	Extension   string            `json:"extension"`
	Permissions map[string]bool   `json:"permissions"`
	Roles       map[string]any    `json:"roles"`
	Deleted     bool              `json:"deleted"`
	LCPhone     map[string]string `json:"lcPhone"`
}

// AddUser registers a user of u.LocationID (registering the location if
// unknown) and returns it; an empty ID gets a new one.
func (s *Server) AddUser(u User) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addLocationLockedIfMissing(u.LocationID)
	if u.ID == "" {
		u.ID = newID()
	}
	if _, ok := s.st.users[u.ID]; !ok {
		s.st.usersByLo[u.LocationID] = append(s.st.usersByLo[u.LocationID], u.ID)
	}
	s.st.users[u.ID] = &u
	s.changedLocked()
	return u
}

// Users returns copies of the location's users, oldest first.
func (s *Server) Users(locationID string) []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []User{}
	for _, id := range s.st.usersByLo[locationID] {
		out = append(out, *s.st.users[id])
	}
	return out
}

// handleListUsers serves GET /users/?locationId=: the location's users.
func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request, g *grant) {
	loc := r.URL.Query().Get("locationId")
	if loc == "" {
		writeValidation(w, "locationId should not be empty")
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	s.mu.Lock()
	users := []userJSON{}
	for _, id := range s.st.usersByLo[loc] {
		u := s.st.users[id]
		first, last, _ := strings.Cut(u.Name, " ")
		users = append(users, userJSON{ID: u.ID, Name: u.Name, FirstName: first, LastName: last, Email: u.Email,
			Permissions: map[string]bool{"appointmentsEnabled": true},
			Roles:       map[string]any{"type": "account", "role": "user", "locationIds": []string{loc}},
			LCPhone:     map[string]string{}})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Users []userJSON `json:"users"`
	}{users})
}
