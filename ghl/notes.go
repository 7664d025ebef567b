package ghl

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Appointment notes (apps/calendars.json: GET and POST
// /calendars/appointments/{appointmentId}/notes, PUT and DELETE
// .../notes/{noteId}; Version 2021-04-15; scopes calendars/events.readonly
// and calendars/events.write).

// MaxNoteBody is the longest note body GHL takes (NotesDTO.body maxLength).
const MaxNoteBody = 5000

// MaxNotesPage is the most notes GHL lists per request (limit's maximum).
const MaxNotesPage = 20

// Note is a note of an appointment. Only what ghlsync uses is decoded.
type Note struct {
	ID     string `json:"id"`
	Body   string `json:"body"`
	UserID string `json:"userId,omitempty"`
}

// noteBody is NotesDTO: body required, userId optional.
type noteBody struct {
	Body   string `json:"body"`
	UserID string `json:"userId,omitempty"`
}

// Notes returns up to limit (at most MaxNotesPage) notes of the
// appointment appointmentID from offset, and whether GHL has more.
func (s *CalendarsService) Notes(ctx context.Context, accessToken, appointmentID string, limit, offset int) ([]Note, bool, *Response, error) {
	r := &request{
		endpoint: "calendars.notes",
		method:   http.MethodGet,
		path:     "/calendars/appointments/" + url.PathEscape(appointmentID) + "/notes",
		query:    url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}},
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "appointment id", appointmentID); err != nil {
		return nil, false, nil, err
	}
	if limit < 1 || limit > MaxNotesPage || offset < 0 {
		return nil, false, nil, r.errorf("limit must be 1 to %d and offset at least 0", MaxNotesPage)
	}
	var out struct {
		Notes   []Note `json:"notes"`
		HasMore bool   `json:"hasMore"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, false, resp, err
	}
	return out.Notes, out.HasMore, resp, nil
}

// CreateNote adds a note with body to the appointment appointmentID.
// After a temporary error GHL may have added it anyway.
func (s *CalendarsService) CreateNote(ctx context.Context, accessToken, appointmentID, body string) (*Note, *Response, error) {
	r := &request{
		endpoint: "calendars.createNote",
		method:   http.MethodPost,
		path:     "/calendars/appointments/" + url.PathEscape(appointmentID) + "/notes",
		version:  versionCalendars,
		token:    accessToken,
		json:     noteBody{Body: body},
	}
	return s.doNote(ctx, r, accessToken, appointmentID, body)
}

// UpdateNote replaces the body of the note noteID of the appointment
// appointmentID.
func (s *CalendarsService) UpdateNote(ctx context.Context, accessToken, appointmentID, noteID, body string) (*Note, *Response, error) {
	r := &request{
		endpoint: "calendars.updateNote",
		method:   http.MethodPut,
		path:     "/calendars/appointments/" + url.PathEscape(appointmentID) + "/notes/" + url.PathEscape(noteID),
		version:  versionCalendars,
		token:    accessToken,
		json:     noteBody{Body: body},
	}
	if err := r.require("note id", noteID); err != nil {
		return nil, nil, err
	}
	return s.doNote(ctx, r, accessToken, appointmentID, body)
}

// DeleteNote deletes the note noteID of the appointment appointmentID.
func (s *CalendarsService) DeleteNote(ctx context.Context, accessToken, appointmentID, noteID string) (*Response, error) {
	r := &request{
		endpoint: "calendars.deleteNote",
		method:   http.MethodDelete,
		path:     "/calendars/appointments/" + url.PathEscape(appointmentID) + "/notes/" + url.PathEscape(noteID),
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "appointment id", appointmentID, "note id", noteID); err != nil {
		return nil, err
	}
	return s.client.do(ctx, r, nil)
}

// doNote sends a create or update of a note with body and reads the note
// GHL answers with ({"note": {…}}).
func (s *CalendarsService) doNote(ctx context.Context, r *request, accessToken, appointmentID, body string) (*Note, *Response, error) {
	if err := r.require("access token", accessToken, "appointment id", appointmentID, "body", body); err != nil {
		return nil, nil, err
	}
	if len([]rune(body)) > MaxNoteBody {
		return nil, nil, r.errorf("a note body is at most %d characters", MaxNoteBody)
	}
	var out struct {
		Note *Note `json:"note"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.Note == nil || out.Note.ID == "" {
		return nil, resp, r.errorf("response has no note id")
	}
	return out.Note, resp, nil
}
