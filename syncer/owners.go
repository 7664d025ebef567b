package syncer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// An appointment is assigned to a GHL user (assignedUserId), chosen in
// this order:
//
//  1. its practitioner's ghl_user_id (practitioners, by
//     appointments.practitioner_external_id);
//  2. the GHL user of the location whose email is the practitioner's
//     (GET /users/, asked once per run), when ghl_user_id is empty;
//  3. the calendar's default user (calendar_settings).
//
// A calendar with team members in GHL (GET /calendars/{id}, asked once per
// calendar and run) refuses an appointment without an owner of its team,
// so such an appointment is failed before it is sent, with a reason that
// names the practitioner and what to set. A calendar without a team takes
// the owner when there is one, and none otherwise.

// ownerInput is what an appointment's owner is chosen from in ghlsync's
// tables: covered by the appointment's hash, so that mapping a
// practitioner or giving a calendar its default user sends the
// appointments again.
type ownerInput struct {
	Practitioner string
	Known        bool // the practitioner has a row
	Email        string
	UserID       string
	Default      string
}

func ownerInputOf(a *store.AppointmentRow) ownerInput {
	in := ownerInput{Practitioner: strings.TrimSpace(a.PractitionerExternalID), Default: strings.TrimSpace(a.DefaultUserID)}
	if p := a.Practitioner; p != nil {
		in.Known, in.Email, in.UserID = true, normalEmail(p.Email), strings.TrimSpace(p.GHLUserID)
	}
	return in
}

func normalEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ownerError: the appointment's calendar wants an owner the sync cannot
// name. It is reported like a refusal, but not remembered (see
// planAppointment).
type ownerError struct{ reason string }

func (e *ownerError) Error() string { return e.reason }

// owner returns the GHL user to assign a to in calendar calendarID, ""
// for none, or an *ownerError.
func (ar *appointmentRun) owner(ctx context.Context, a *store.AppointmentRow, calendarID string) (string, error) {
	cal, err := ar.calendar(ctx, calendarID)
	if err != nil {
		return "", err
	}
	in := ownerInputOf(a)
	who := practitionerName(a)
	user, from, why := "", "", ""
	switch {
	case in.Practitioner == "":
		why = "it has no practitioner_external_id"
	case !in.Known:
		why = fmt.Sprintf("practitioner %s is not in the practitioners table", in.Practitioner)
	case in.UserID != "":
		user, from = in.UserID, "the ghl_user_id of "+who
	case in.Email == "":
		why = who + " has neither a ghl_user_id nor an email"
	default:
		users, err := ar.locationUsers(ctx)
		if err != nil {
			return "", err
		}
		for _, u := range users {
			if normalEmail(u.Email) == in.Email {
				user, from = u.ID, fmt.Sprintf("the GHL user with the email of %s", who)
				break
			}
		}
		if user == "" {
			why = fmt.Sprintf("%s has no ghl_user_id and no GHL user of the location has the email %s", who, in.Email)
		}
	}
	if user == "" && in.Default != "" {
		user, from = in.Default, "the default user of calendar "+calendarID
	}
	switch {
	case len(cal.TeamMembers) == 0:
		return user, nil
	case user == "":
		return "", &ownerError{fmt.Sprintf("calendar %s has team members in GHL and books no appointment without one, "+
			"but this one has no owner: %s; set practitioners.ghl_user_id (or give the practitioner the email of a GHL user), "+
			"or a default user for the calendar in calendar_settings", calendarID, why)}
	case !cal.HasMember(user):
		return "", &ownerError{fmt.Sprintf("GHL user %s (%s) is not a team member of calendar %s; add the user to the "+
			"calendar's team in GHL, or map the practitioner to one of its team members", user, from, calendarID)}
	}
	return user, nil
}

// practitionerName names the appointment's practitioner for a reason.
func practitionerName(a *store.AppointmentRow) string {
	id := strings.TrimSpace(a.PractitionerExternalID)
	if a.Practitioner != nil && strings.TrimSpace(a.Practitioner.Name) != "" {
		return fmt.Sprintf("practitioner %s (%s)", id, strings.TrimSpace(a.Practitioner.Name))
	}
	return "practitioner " + id
}

// calendar returns the calendar calendarID with its team, read once per
// run. A calendar GHL does not know fails the appointment for good: its id
// is the clinic's mistake.
func (ar *appointmentRun) calendar(ctx context.Context, calendarID string) (*ghl.Calendar, error) {
	cal, err := ar.calendars.get(calendarID, func() (*ghl.Calendar, error) {
		var cal *ghl.Calendar
		err := ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
			cal, resp, err = ar.e.Calendars.Get(ctx, token, calendarID)
			return resp, err
		})
		if ghl.IsNotFound(err) {
			return nil, nil
		}
		return cal, err
	})
	if err == nil && cal == nil {
		return nil, refusedf("calendar_id %s: GHL has no such calendar", calendarID)
	}
	return cal, err
}

// locationUsers returns the location's GHL users, read once per run.
func (ar *appointmentRun) locationUsers(ctx context.Context) ([]ghl.User, error) {
	return ar.users.get("", func() ([]ghl.User, error) {
		var users []ghl.User
		err := ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
			users, resp, err = ar.e.Users.List(ctx, token, ar.loc)
			return resp, err
		})
		return users, err
	})
}

// locationZone returns the location's time zone, in which GHL writes some
// times without an offset; nil when it is unknown. Once per run, when the
// credential's copy is a week old, it asks GHL (GET /locations/{id}) and
// records the answer; that is best effort: without an answer the stored
// zone is used.
func (ar *appointmentRun) locationZone(ctx context.Context) (*time.Location, error) {
	return ar.zone.get("", func() (*time.Location, error) {
		c, err := ar.e.Credentials.Credential(ctx, ar.loc)
		if err != nil {
			return nil, err
		}
		name := c.Timezone
		if c.InfoStale(ar.e.now()) {
			var l *ghl.Location
			err := ar.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
				l, resp, err = ar.e.Locations.Get(ctx, token, ar.loc)
				return resp, err
			})
			switch {
			case err != nil:
				ar.e.log().Warn("could not read the location's time zone from GHL", "location", ar.loc, "err", err)
			default:
				name = l.Timezone
				if err := ar.e.State.SetLocationInfo(ctx, ar.loc, l.Name, l.Timezone); err != nil {
					ar.e.log().Warn("could not record the location's name and time zone", "location", ar.loc, "err", err)
				}
			}
		}
		if name == "" {
			return nil, nil
		}
		zone, err := time.LoadLocation(name)
		if err != nil {
			ar.e.log().Warn("the location's time zone is not one this system knows", "location", ar.loc, "zone", name, "err", err)
			return nil, nil
		}
		return zone, nil
	})
}

// memo keeps what a run read, by key: load runs once per key while it
// succeeds, and callers of one key wait for the first. A failed load is
// not kept; the next caller tries again.
type memo[V any] struct {
	mu    sync.Mutex
	vals  map[string]V
	locks keyLocks
}

func (m *memo[V]) get(key string, load func() (V, error)) (V, error) {
	if v, ok := m.lookup(key); ok {
		return v, nil
	}
	defer m.locks.lock([]string{key})()
	if v, ok := m.lookup(key); ok {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	m.mu.Lock()
	if m.vals == nil {
		m.vals = map[string]V{}
	}
	m.vals[key] = v
	m.mu.Unlock()
	return v, nil
}

func (m *memo[V]) lookup(key string) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	return v, ok
}
