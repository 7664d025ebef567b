package syncer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// An appointment becomes a GHL calendar appointment of its patient's
// contact. Idempotence:
//
//   - Once GHL has named the appointment, its id is recorded and the
//     appointment is updated by id; one deleted in GHL ("not found", which
//     GHL answers as a 400 or a 404, and a GET confirms) is booked again,
//     the clinic system being the source of truth.
//   - Before a create, the intent is written: CreatingAt and what the create
//     carries (contact, calendar, start). The answer's id then replaces it.
//     An intent found on a later attempt (the answer was lost to a timeout,
//     a reset or a dead worker) means the create may have happened, so GHL
//     is asked first, and the contact's appointment in that calendar at
//     that start that no other appointment holds is taken as the one the
//     create made. Only when there is none is it created again.
//   - An appointment whose patient changed (patient_external_id, or the
//     contact recorded for its patient) is moved: GHL does not change an
//     appointment's contact, so the one booked for the old contact is
//     deleted and the appointment booked again for the new one. First the
//     intent of that create is written beside the old id, then the old
//     appointment is deleted ("not found" counts as deleted), then the create
//     proceeds as any other, its intent written with the id cleared. A
//     crash before the id is cleared leaves the old id and an intent: no
//     create was sent for it (creates follow only a write without the id),
//     so the next attempt drops the intent, deletes again and creates
//     (or, moved back meanwhile, updates by the old id, booking again if
//     it is gone). A crash after it leaves an intent without id: a lost create, looked
//     up as above. Neither leaves two appointments in GHL, and neither is
//     taken for unchanged, since an intent makes a record changed.
//
// The lookup asks GHL for the intent's calendar's events at that start
// (GET /calendars/events, whose times carry offsets) and, when that finds
// none, the contact's appointments, whose times GHL writes without an
// offset in the location's time zone: the zone comes from the credential,
// read again from GHL (GET /locations/{id}) at the start of a run when it
// is a week old.
//
// What is sent besides the row's fields (owners.go): the GHL user the
// appointment is assigned to, from its practitioner or its calendar's
// default user, and toNotify false unless the location's settings let
// GHL's automations run.
//
// The residual risk is a create that GHL still works on, or does not list
// yet, when the lookup runs: say a proxy cut the connection while GHL went
// on. The lookup comes after the client gave up (a reset, or its 30 s
// timeout) and a backoff of a second or more, or after a dead worker's lock
// expired (15 s); GHL would have to finish the create later than that. Two
// appointments of one patient in the same calendar at the same start are
// told apart by the ids the state table holds, which no two appointments
// may share.

// appointmentMapping versions what an appointment's hash covers
// (appointmentContent), as contactMapping does. appointment/1 left out the
// patient, appointment/2 the owner; each change sends every appointment
// once more.
const appointmentMapping = "appointment/3"

// appointmentContent is what an appointment's hash covers: what is sent,
// the patient it is booked for, which appointmentFor leaves out (GHL takes
// the contact on a create only), and what its owner is chosen from. Every
// column of the row but updated_at is in one or the other. Whether GHL's
// automations run is not: turning them on must not send every appointment
// again, and message every patient.
type appointmentContent struct {
	Appointment *ghl.Appointment
	Patient     string
	Owner       ownerInput
	// Fields and TitleTemplate are the location's allow-list and title
	// template: changing either sends every appointment again. Empty, they
	// leave the hash as before.
	Fields        string `json:",omitempty"`
	TitleTemplate string `json:",omitempty"`
	// Notes is the appointment's note (notes.go); empty, it leaves the
	// hash as before.
	Notes string `json:",omitempty"`
}

// contentOf is what the hash of the appointment row a, mapped to ga, covers.
func contentOf(ga *ghl.Appointment, a *store.AppointmentRow) appointmentContent {
	return appointmentContent{Appointment: ga, Patient: a.PatientExternalID, Owner: ownerInputOf(a), Notes: strings.TrimSpace(a.Notes)}
}

// appointmentStatuses maps the clinic's statuses to GHL's.
var appointmentStatuses = map[string]string{
	store.AppointmentBooked:    ghl.AppointmentStatusNew,
	store.AppointmentConfirmed: ghl.AppointmentStatusConfirmed,
	store.AppointmentCancelled: ghl.AppointmentStatusCancelled,
	store.AppointmentAttended:  ghl.AppointmentStatusShowed,
	store.AppointmentNoShow:    ghl.AppointmentStatusNoShow,
}

// appointmentFor maps an appointment to what is sent to GHL, less the
// contact. The times are whole seconds in UTC, as sent.
func appointmentFor(loc string, a *store.AppointmentRow) (*ghl.Appointment, error) {
	status, ok := appointmentStatuses[strings.ToLower(strings.TrimSpace(a.Status))]
	if !ok {
		return nil, refusedf("status %q is not one of booked, confirmed, cancelled, attended, no_show", a.Status)
	}
	if strings.TrimSpace(a.CalendarID) == "" {
		return nil, refusedf("calendar_id is empty")
	}
	if strings.TrimSpace(a.PatientExternalID) == "" {
		return nil, refusedf("patient_external_id is empty")
	}
	if err := checkFields(
		field{"calendar_id", strings.TrimSpace(a.CalendarID), maxID},
		field{"title", strings.TrimSpace(a.Title), maxTitle},
		field{"address", strings.TrimSpace(a.Address), maxAddress},
		field{"notes", strings.TrimSpace(a.Notes), ghl.MaxNoteBody},
	); err != nil {
		return nil, err
	}
	start, err := store.ParseTime(a.StartsAt)
	if err != nil {
		return nil, refusedf("starts_at %q is not a time", a.StartsAt)
	}
	end, err := store.ParseTime(a.EndsAt)
	if err != nil {
		return nil, refusedf("ends_at %q is not a time", a.EndsAt)
	}
	start, end = start.Truncate(time.Second), end.Truncate(time.Second)
	if !end.After(start) {
		return nil, refusedf("ends_at %s is not after starts_at %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	return &ghl.Appointment{
		CalendarID:        strings.TrimSpace(a.CalendarID),
		LocationID:        loc,
		StartTime:         start,
		EndTime:           end,
		Title:             strings.TrimSpace(a.Title),
		Address:           strings.TrimSpace(a.Address),
		AppointmentStatus: status,
		// The clinic has booked it: GHL's own availability rules must not
		// refuse the copy.
		IgnoreDateRange:          true,
		IgnoreFreeSlotValidation: true,
	}, nil
}

// locationSettings returns the location's settings, read once per run.
func (ar *appointmentRun) locationSettings(ctx context.Context) (store.LocationSettings, error) {
	ls, err := ar.settings.get("", func() (store.LocationSettings, error) { return loadSettings(ctx, ar.e.State, ar.loc) })
	if err != nil {
		return ls, &locationFault{err}
	}
	return ls, nil
}

// title is the title an appointment is sent with: the location's title
// template rendered for it, or the clinic's title (emptied when the
// allow-list leaves titles out) when the location has none. The calendar's
// name is GHL's, read once per run and only by a template.
func (ar *appointmentRun) title(ctx context.Context, ls store.LocationSettings, a *store.AppointmentRow, ga ghl.Appointment) (string, error) {
	if ls.TitleTemplate == "" {
		return ga.Title, nil
	}
	tmpl, err := ls.Title()
	if err != nil {
		return "", refusedf("%v", err)
	}
	d := store.TitleData{Status: strings.ToLower(strings.TrimSpace(a.Status)), Title: ga.Title}
	if a.Practitioner != nil {
		d.Practitioner = strings.TrimSpace(a.Practitioner.Name)
	}
	cal, err := ar.calendar(ctx, ga.CalendarID)
	if err != nil {
		return "", err
	}
	d.Calendar = strings.TrimSpace(cal.Name)
	title, err := tmpl.Render(d)
	if err != nil {
		return "", refusedf("%v", err)
	}
	if err := checkFields(field{"title (from title_template)", title, maxTitle}); err != nil {
		return "", err
	}
	return title, nil
}

// rawAppointment is what identifies an appointment's content when it cannot
// be mapped.
func rawAppointment(a *store.AppointmentRow) any {
	raw := *a
	raw.Sync, raw.ContactID = store.AppointmentSync{}, ""
	return raw
}

// appointmentRun is what an appointment sync keeps for the length of one
// run: what it read of GHL and of the location's settings, asked once.
type appointmentRun struct {
	*run
	settings  memo[store.LocationSettings]
	zone      memo[*time.Location]
	calendars memo[*ghl.Calendar]
	users     memo[[]ghl.User]
}

// appointmentPages reads the appointments of the run's location as items.
// Before the first page it brings the location's name and time zone up to
// date, once per run.
func appointmentPages(r *run) pageFunc {
	ar := &appointmentRun{run: r}
	return func(ctx context.Context, after string, limit int) ([]item, error) {
		// The zone comes from GHL, and only a push needs it: a dry run
		// makes no call.
		if !r.dryRun {
			if _, err := ar.locationZone(ctx); err != nil {
				return nil, err
			}
		}
		ls, err := ar.locationSettings(ctx)
		if err != nil {
			return nil, err
		}
		rows, err := r.e.State.AppointmentPageSince(ctx, r.loc, after, r.since, limit)
		if err != nil {
			return nil, err
		}
		items := make([]item, len(rows))
		for i := range rows {
			items[i] = ar.planAppointment(&rows[i], ls)
		}
		return items, nil
	}
}

// planAppointment decides what to do with an appointment. A refusal is
// remembered together with the patient's contact at the time, so that an
// appointment refused for want of a contact is tried again once its
// patient has one. A refusal for want of an owner is not remembered: it
// may be cured in GHL (a team member added), which no hash sees, so it is
// tried again on every sync (an incremental pass reads it again as a
// failed record: incremental.go).
func (ar *appointmentRun) planAppointment(row *store.AppointmentRow, ls store.LocationSettings) item {
	r := ar.run
	a := allowedAppointment(row, ls)
	ga, err := appointmentFor(r.loc, a)
	hash := ""
	if err != nil {
		hash = contentHash("appointment-row/1", rawAppointment(a))
	} else {
		ac := contentOf(ga, a)
		ac.Fields, ac.TitleTemplate = ls.Fields, ls.TitleTemplate
		hash = contentHash(appointmentMapping, ac)
	}
	failKey := contentHash("refused/1", []string{hash, a.ContactID})
	it := item{key: a.ExternalID}
	switch {
	case r.force:
		// A repair sends it whatever GHL was last sent or refused.
	case failKey == a.Sync.FailedHash:
		it.known = "unchanged since it was refused: " + a.Sync.LastError
		return it
	case err == nil && hash == a.Sync.SentHash && a.Sync.EventID != "" && a.Sync.CreatingAt == nil &&
		(a.ContactID == "" || a.ContactID == a.Sync.ContactID):
		// Same content, same patient, and that patient's contact (when
		// known) the one it is booked for; no move half done.
		it.unchanged = true
		return it
	}
	st := a.Sync
	st.LocationID, st.ExternalID = r.loc, a.ExternalID
	// push and refuse of one item run one after the other.
	noOwner := false
	it.refuse = func(ctx context.Context, why string) error {
		st.FailedHash, st.LastError, st.FailedAt = failKey, why, ptr(r.e.now().UTC())
		if noOwner {
			st.FailedHash = ""
		}
		return r.e.State.SaveAppointmentSync(ctx, &st)
	}
	if err != nil {
		it.invalid = err.Error()
	} else {
		it.creates = st.EventID == ""
		it.push = func(ctx context.Context) (outcome, error) {
			out, err := ar.pushAppointment(ctx, &st, a, *ga, hash)
			var oe *ownerError
			if noOwner = errors.As(err, &oe); noOwner {
				return 0, refusedf("%s", oe.reason)
			}
			return out, err
		}
	}
	return it
}

// pushAppointment sends a changed appointment and records GHL's id: an
// update by id, a move to another contact, or a create.
func (ar *appointmentRun) pushAppointment(ctx context.Context, st *store.AppointmentSync, a *store.AppointmentRow, ga ghl.Appointment, hash string) (outcome, error) {
	r := ar.run
	owner, err := ar.owner(ctx, a, ga.CalendarID)
	if err != nil {
		return 0, err
	}
	settings, err := ar.locationSettings(ctx)
	if err != nil {
		return 0, err
	}
	if ga.Title, err = ar.title(ctx, settings, a, ga); err != nil {
		return 0, err
	}
	ga.AssignedUserID = owner
	if !settings.Notify {
		// Unset, GHL runs the calendar's automations: a backfill would
		// text and email every patient.
		ga.ToNotify = ptr(false)
	}
	contact := a.ContactID
	if contact == "" {
		var err error
		if contact, err = r.patientContact(ctx, a.PatientExternalID); err != nil {
			return 0, err
		}
	}
	out := created
	if st.EventID != "" {
		// An intent beside a recorded id is a move's whose create was
		// never sent: the move starts over.
		out = updated
		clearIntent(st)
	} else if st.CreatingAt != nil {
		id, err := ar.findCreated(ctx, st)
		if err != nil {
			return 0, err
		}
		if id != "" {
			r.e.log().Info("found the appointment an earlier, unanswered create made",
				"location", r.loc, "appointment", st.ExternalID, "event", id)
			sentHash := st.IntentHash
			st.EventID, st.ContactID = id, st.IntentContactID
			clearIntent(st)
			// The create made no note: notes follow a recorded id.
			st.NoteID, st.NoteIntent = "", ""
			if sentHash == hash && st.ContactID == contact {
				return created, ar.sent(ctx, st, a, hash)
			}
			// Booked with older content or for another contact: record
			// the id, then update or move it below.
			if err := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SaveAppointmentSync(ctx, st) }); err != nil {
				return 0, err
			}
		}
	}

	sent := sentAppointmentFields(&ga)
	sent["contactId"] = contact
	if err := r.recordSent(ctx, store.RecordAppointment, st.ExternalID, st.EventID, sent); err != nil {
		return 0, err
	}
	if st.EventID != "" && st.ContactID == contact {
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Calendars.UpdateAppointment(ctx, token, st.EventID, &ga)
			return resp, err
		})
		switch {
		case err == nil:
			return out, ar.sent(ctx, st, a, hash)
		case !ghl.IsNotFound(err):
			return 0, err
		}
		// GHL's "not found" may name the calendar or the user rather than
		// the appointment: only a GET that does not find it either says it
		// is gone.
		if gone, gerr := ar.gone(ctx, st.EventID); gerr != nil || !gone {
			return 0, cmp.Or(gerr, err)
		}
		r.e.log().Warn("the appointment is gone from GHL; booking it again",
			"location", r.loc, "appointment", st.ExternalID, "event", st.EventID)
		st.EventID, out = "", created
	}

	ga.ContactID = contact
	prev := *st
	setIntent(st, &ga, hash, r.e.now())
	if st.EventID != "" {
		// A move: the intent is written beside the old id before the
		// old appointment is deleted; see the top of this file.
		r.e.log().Info("the appointment's patient changed; booking it again for the new contact",
			"location", r.loc, "appointment", st.ExternalID, "event", st.EventID, "patient", a.PatientExternalID)
		if err := r.e.State.SaveAppointmentSync(ctx, st); err != nil {
			return 0, err
		}
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			return r.e.Calendars.DeleteEvent(ctx, token, st.EventID)
		})
		if err != nil && !ghl.IsNotFound(err) {
			return 0, err
		}
		st.EventID, st.ContactID = "", ""
	}
	// The intent, without an id: from here on a lost answer is looked up.
	if err := r.e.State.SaveAppointmentSync(ctx, st); err != nil {
		return 0, err
	}
	var got *ghl.Appointment
	err = r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		got, resp, err = r.e.Calendars.CreateAppointment(ctx, token, &ga)
		return resp, err
	})
	if notSent(err) {
		// GHL never saw it: the intent is put back as it was.
		st.CreatingAt, st.IntentContactID, st.IntentCalendarID = prev.CreatingAt, prev.IntentContactID, prev.IntentCalendarID
		st.IntentStartsAt, st.IntentHash = prev.IntentStartsAt, prev.IntentHash
		if serr := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SaveAppointmentSync(ctx, st) }); serr != nil {
			return 0, serr
		}
		return 0, err
	}
	if err != nil {
		return 0, err
	}
	st.EventID, st.ContactID = got.ID, contact
	st.NoteID, st.NoteIntent = "", "" // a new appointment has no note yet
	clearIntent(st)
	return out, ar.sent(ctx, st, a, hash)
}

// gone reports whether GHL no longer has the appointment eventID.
func (ar *appointmentRun) gone(ctx context.Context, eventID string) (bool, error) {
	err := ar.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
		_, resp, err := ar.e.Calendars.GetAppointment(ctx, token, eventID)
		return resp, err
	})
	if ghl.IsNotFound(err) {
		return true, nil
	}
	return false, err
}

// setIntent records in st what a create of ga carries.
func setIntent(st *store.AppointmentSync, ga *ghl.Appointment, hash string, now time.Time) {
	st.CreatingAt, st.IntentContactID, st.IntentCalendarID = ptr(now.UTC()), ga.ContactID, ga.CalendarID
	st.IntentStartsAt, st.IntentHash = ptr(ga.StartTime), hash
}

// findCreated looks for the appointment that the create recorded in st's
// intent made: the intent's contact's appointment in that calendar at that
// start, held by no other appointment. "" when there is none. It asks the
// calendar's events at that time first, then the contact's appointments.
func (ar *appointmentRun) findCreated(ctx context.Context, st *store.AppointmentSync) (string, error) {
	if st.IntentContactID == "" || st.IntentStartsAt == nil {
		return "", nil
	}
	ids, err := ar.calendarEventsAt(ctx, st)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		if ids, err = ar.contactEventsAt(ctx, st); err != nil {
			return "", err
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	holders, err := ar.e.State.EventHolders(ctx, ar.loc, ids)
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		if holder, held := holders[id]; !held || holder == st.ExternalID {
			return id, nil
		}
	}
	return "", nil
}

// calendarEventsAt lists the intent's calendar's events of the intent's
// contact at the intent's start (GET /calendars/events). A refusal of the
// query is no answer: the contact's list is asked instead.
func (ar *appointmentRun) calendarEventsAt(ctx context.Context, st *store.AppointmentSync) ([]string, error) {
	start := *st.IntentStartsAt
	q := ghl.EventsQuery{LocationID: ar.loc, CalendarID: st.IntentCalendarID, Start: start, End: start.Add(time.Minute)}
	var events []ghl.Event
	err := ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		events, resp, err = ar.e.Calendars.Events(ctx, token, q)
		return resp, err
	})
	if ghl.IsRefused(err) {
		ar.e.log().Warn("GHL refused the calendar's events; looking among the contact's appointments",
			"location", ar.loc, "appointment", st.ExternalID, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	zone, err := ar.locationZone(ctx)
	if err != nil {
		return nil, err
	}
	return matching(events, st, zone), nil
}

// contactEventsAt lists the intent's contact's appointments in the intent's
// calendar at the intent's start (GET /contacts/{id}/appointments), whose
// times are read in the location's zone.
func (ar *appointmentRun) contactEventsAt(ctx context.Context, st *store.AppointmentSync) ([]string, error) {
	zone, err := ar.locationZone(ctx)
	if err != nil {
		return nil, err
	}
	if zone == nil {
		ar.e.log().Warn("the location's time zone is unknown, so its contact's appointments cannot be matched by time",
			"location", ar.loc, "appointment", st.ExternalID)
		return nil, nil
	}
	var events []ghl.Event
	err = ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		events, resp, err = ar.e.Contacts.Appointments(ctx, token, st.IntentContactID)
		return resp, err
	})
	if ghl.IsNotFound(err) {
		return nil, nil // the contact is gone, and its appointments with it
	}
	if err != nil {
		return nil, err
	}
	return matching(events, st, zone), nil
}

// matching returns the ids of the events of st's intent: its contact's,
// in its calendar, starting at its start. Times without an offset are read
// in zone; one that cannot be read matches nothing.
func matching(events []ghl.Event, st *store.AppointmentSync, zone *time.Location) []string {
	var ids []string
	for _, e := range events {
		if e.CalendarID != st.IntentCalendarID || e.ContactID != st.IntentContactID {
			continue
		}
		if start, err := e.StartTime.In(zone); err == nil && start.Equal(*st.IntentStartsAt) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func clearIntent(st *store.AppointmentSync) {
	st.CreatingAt, st.IntentContactID, st.IntentCalendarID, st.IntentStartsAt, st.IntentHash = nil, "", "", nil, ""
}

// appointmentSent records that GHL accepted the content with hash.
func (r *run) appointmentSent(ctx context.Context, st *store.AppointmentSync, hash string) error {
	st.SentHash, st.SentAt = hash, ptr(r.e.now().UTC())
	st.FailedHash, st.LastError, st.FailedAt = "", "", nil
	if err := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SaveAppointmentSync(ctx, st) }); err != nil {
		return fmt.Errorf("recording GHL appointment %s: %w", st.EventID, err)
	}
	return nil
}
