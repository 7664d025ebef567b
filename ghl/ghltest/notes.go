package ghltest

import (
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Appointment notes, as apps/calendars.json gives them: GET and POST
// /calendars/appointments/{appointmentId}/notes, PUT and DELETE
// .../notes/{noteId}. GET requires limit (at most 20) and offset; a body
// is NotesDTO (body required, at most 5,000 characters; userId), and
// nothing else; an unknown appointment or note is a 400 "not found", as
// GHL answers for other ids.

// Note is a note of an appointment.
type Note struct {
	ID            string    `json:"id"`
	AppointmentID string    `json:"-"`
	Body          string    `json:"body"`
	UserID        string    `json:"userId,omitempty"`
	ContactID     string    `json:"contactId,omitempty"`
	DateAdded     time.Time `json:"dateAdded"`
}

// noteInput is NotesDTO; nil fields were absent.
type noteInput struct {
	Body   *string `json:"body"`
	UserID *string `json:"userId"`
}

var noteKeys = []string{"body", "userId"}

const maxNoteBody = 5000

func (in noteInput) validate() []string {
	var msgs []string
	switch {
	case in.Body == nil:
		msgs = append(msgs, "body should not be empty", "body must be a string")
	case utf8.RuneCountInString(*in.Body) > maxNoteBody:
		msgs = append(msgs, "body must be shorter than or equal to 5000 characters")
	}
	return msgs
}

// handleListNotes serves GET /calendars/appointments/{id}/notes.
func (s *Server) handleListNotes(w http.ResponseWriter, r *http.Request, g *grant) {
	a, ok := s.appointmentFor(w, r.PathValue("id"), g)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit, errL := strconv.Atoi(q.Get("limit"))
	offset, errO := strconv.Atoi(q.Get("offset"))
	var msgs []string
	if errL != nil || limit < 1 || limit > 20 {
		msgs = append(msgs, "limit must not be greater than 20", "limit must be a number")
	}
	if errO != nil || offset < 0 {
		msgs = append(msgs, "offset must not be less than 0", "offset must be a number")
	}
	if msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	s.mu.Lock()
	all := s.st.notes[a.ID]
	out := []Note{}
	for i := offset; i < len(all) && len(out) < limit; i++ {
		out = append(out, *all[i])
	}
	more := offset+len(out) < len(all)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Notes   []Note `json:"notes"`
		HasMore bool   `json:"hasMore"`
	}{out, more})
}

// handleCreateNote serves POST /calendars/appointments/{id}/notes.
func (s *Server) handleCreateNote(w http.ResponseWriter, r *http.Request, g *grant) {
	a, ok := s.appointmentFor(w, r.PathValue("id"), g)
	if !ok {
		return
	}
	var in noteInput
	if !decodeBody(w, r, &in, noteKeys) {
		return
	}
	if msgs := in.validate(); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	n := &Note{ID: newID(), AppointmentID: a.ID, Body: *in.Body, ContactID: a.ContactID, DateAdded: s.opts.Now().UTC()}
	if in.UserID != nil {
		n.UserID = *in.UserID
	}
	s.mu.Lock()
	if !s.checkEventIDLocked(w, a.ID, g) { // deleted meanwhile
		s.mu.Unlock()
		return
	}
	s.st.notes[a.ID] = append(s.st.notes[a.ID], n)
	s.stats.noteCreates[a.LocationID]++
	s.changedLocked()
	out := *n
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, struct {
		Note Note `json:"note"`
	}{out})
}

// noteForLocked returns the note noteID of the appointment in the request's
// path, with the appointment's location, if g may reach it; else answers.
// The caller holds no lock; on true it holds s.mu.
func (s *Server) noteForLocked(w http.ResponseWriter, r *http.Request, g *grant) (*Note, string, bool) {
	a, ok := s.appointmentFor(w, r.PathValue("id"), g)
	if !ok {
		return nil, "", false
	}
	s.mu.Lock()
	if !s.checkEventIDLocked(w, a.ID, g) {
		s.mu.Unlock()
		return nil, "", false
	}
	noteID := r.PathValue("noteId")
	i := slices.IndexFunc(s.st.notes[a.ID], func(n *Note) bool { return n.ID == noteID })
	if i < 0 {
		s.stats.notFound[g.subject()]++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Note with id "+noteID+" not found")
		return nil, "", false
	}
	return s.st.notes[a.ID][i], a.LocationID, true
}

// handleUpdateNote serves PUT /calendars/appointments/{id}/notes/{noteId}.
func (s *Server) handleUpdateNote(w http.ResponseWriter, r *http.Request, g *grant) {
	var in noteInput
	if !decodeBody(w, r, &in, noteKeys) {
		return
	}
	if msgs := in.validate(); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	n, loc, ok := s.noteForLocked(w, r, g)
	if !ok {
		return
	}
	n.Body = *in.Body
	if in.UserID != nil {
		n.UserID = *in.UserID
	}
	s.stats.noteUpdates[loc]++
	s.changedLocked()
	out := *n
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Note Note `json:"note"`
	}{out})
}

// handleDeleteNote serves DELETE /calendars/appointments/{id}/notes/{noteId}.
func (s *Server) handleDeleteNote(w http.ResponseWriter, r *http.Request, g *grant) {
	n, loc, ok := s.noteForLocked(w, r, g)
	if !ok {
		return
	}
	s.st.notes[n.AppointmentID] = slices.DeleteFunc(s.st.notes[n.AppointmentID], func(x *Note) bool { return x == n })
	s.stats.noteDeletes[loc]++
	s.changedLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Success bool `json:"success"`
	}{true})
}

// Notes returns copies of the notes of the appointment id, oldest first.
func (s *Server) Notes(appointmentID string) []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Note, 0, len(s.st.notes[appointmentID]))
	for _, n := range s.st.notes[appointmentID] {
		out = append(out, *n)
	}
	return out
}
