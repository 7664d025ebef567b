package ghltest

import (
	"net/http"
	"slices"
)

// handleDeleteContact serves DELETE /contacts/{id} as GHL's spec says:
// 200 {"succeded": true} (sic); an unknown id answers 400 "Contact with id
// … not found" and a malformed one 500, as GET and PUT do. The contact's
// appointments stay, as in GHL.
func (s *Server) handleDeleteContact(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	if _, ok := s.contactFor(w, id, g); !ok {
		return
	}
	s.mu.Lock()
	c := s.st.contacts[id]
	if c == nil { // deleted meanwhile
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Contact with id "+id+" not found")
		return
	}
	s.st.unindexContact(c)
	delete(s.st.contacts, id)
	s.st.contactsByLo[c.LocationID] = slices.DeleteFunc(s.st.contactsByLo[c.LocationID],
		func(x string) bool { return x == id })
	s.stats.contactDeletes[c.LocationID]++
	s.changedLocked()
	s.emitContactLocked("ContactDelete", c)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Succeded bool `json:"succeded"` // sic, as GHL spells it
	}{true})
}
