package syncer

import (
	"context"
	"strings"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// Appointment notes. An appointment's notes column is kept in GHL as one
// note of the appointment (GHL's appointment notes), ghlsync's, whose id
// the sync state records (AppointmentSync.NoteID): an edited note is
// updated in place, an emptied one deleted, a note deleted in GHL created
// again. The note is part of the appointment's hash, so an unchanged one
// costs no call, and it obeys the allow-list (appointment.notes) as the
// other fields do: left out, a note sent before is deleted.
//
// A create whose answer is lost must not add a second note: before it,
// the hash of the body it carries is written (NoteIntent); found set
// without an id, it says the create may have happened, and the
// appointment's notes are read first: the one whose body hashes the same
// is taken as the one it made.

// noteMapping versions the hash a note intent holds.
const noteMapping = "note/1"

// sent brings the appointment's note in GHL in line with the row a, then
// records that GHL holds the content with hash.
func (ar *appointmentRun) sent(ctx context.Context, st *store.AppointmentSync, a *store.AppointmentRow, hash string) error {
	if err := ar.syncNote(ctx, st, strings.TrimSpace(a.Notes)); err != nil {
		return err
	}
	return ar.appointmentSent(ctx, st, hash)
}

// syncNote creates, updates or deletes the note of the appointment
// st.EventID so that it holds body (none when body is empty).
func (ar *appointmentRun) syncNote(ctx context.Context, st *store.AppointmentSync, body string) error {
	r := ar.run
	if st.NoteID == "" && st.NoteIntent != "" {
		id, err := ar.findNote(ctx, st.EventID, st.NoteIntent)
		if err != nil {
			return err
		}
		if id != "" {
			r.e.log().Info("found the note an earlier, unanswered create made",
				"location", r.loc, "appointment", st.ExternalID, "note", id)
		}
		st.NoteID, st.NoteIntent = id, ""
	}
	switch {
	case body == "" && st.NoteID == "":
		return nil
	case body == "":
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			return r.e.Calendars.DeleteNote(ctx, token, st.EventID, st.NoteID)
		})
		if err != nil && !ghl.IsNotFound(err) {
			return err
		}
		st.NoteID = ""
		return nil
	case st.NoteID != "":
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Calendars.UpdateNote(ctx, token, st.EventID, st.NoteID, body)
			return resp, err
		})
		if !ghl.IsNotFound(err) {
			return err
		}
		// Deleted in GHL (the appointment was just written, so it is the
		// note GHL does not find): the clinic's note goes back.
		r.e.log().Warn("the appointment's note is gone from GHL; adding it again",
			"location", r.loc, "appointment", st.ExternalID, "note", st.NoteID)
		st.NoteID = ""
	}
	prev := st.NoteIntent
	st.NoteIntent = contentHash(noteMapping, body)
	if err := r.e.State.SaveAppointmentSync(ctx, st); err != nil {
		return err
	}
	var n *ghl.Note
	err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		n, resp, err = r.e.Calendars.CreateNote(ctx, token, st.EventID, body)
		return resp, err
	})
	if notSent(err) {
		// GHL never saw it: the intent is put back as it was.
		st.NoteIntent = prev
		if serr := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SaveAppointmentSync(ctx, st) }); serr != nil {
			return serr
		}
		return err
	}
	if err != nil {
		return err
	}
	st.NoteID, st.NoteIntent = n.ID, ""
	return r.persist(ctx, func(ctx context.Context) error { return r.e.State.SaveAppointmentSync(ctx, st) })
}

// findNote returns the id of the note of the appointment eventID whose body
// hashes as intent, "" when there is none.
func (ar *appointmentRun) findNote(ctx context.Context, eventID, intent string) (string, error) {
	for offset := 0; ; offset += ghl.MaxNotesPage {
		var notes []ghl.Note
		var more bool
		err := ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
			notes, more, resp, err = ar.e.Calendars.Notes(ctx, token, eventID, ghl.MaxNotesPage, offset)
			return resp, err
		})
		if err != nil {
			return "", err
		}
		for _, n := range notes {
			if contentHash(noteMapping, strings.TrimSpace(n.Body)) == intent {
				return n.ID, nil
			}
		}
		if !more || len(notes) == 0 {
			return "", nil
		}
	}
}
