package ghltest

import (
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"time"
)

// Calendar is a GHL calendar of a location. A calendar with TeamMembers
// (round robin, collective, class, service, personal) refuses a create or
// update whose assignedUserId is not one of them (GHL issue #23).
type Calendar struct {
	ID          string       `json:"id"`
	LocationID  string       `json:"locationId"`
	Name        string       `json:"name"`
	TeamMembers []TeamMember `json:"teamMembers,omitempty"`
}

// TeamMember is a user of a calendar's team, with two of the side fields
// GHL answers, of GHL's types, so that a client decoding too much is
// caught.
type TeamMember struct {
	UserID              string  `json:"userId"`
	Priority            float64 `json:"priority"`
	MeetingLocationType string  `json:"meetingLocationType"`
}

// hasMember reports whether userID is on the calendar's team.
func (c *Calendar) hasMember(userID string) bool {
	return slices.ContainsFunc(c.TeamMembers, func(m TeamMember) bool { return m.UserID == userID })
}

func (c *Calendar) clone() Calendar {
	cc := *c
	cc.TeamMembers = slices.Clone(c.TeamMembers)
	return cc
}

// Appointment is a GHL calendar appointment (event) as the fake stores and
// answers it. StartTime and EndTime are kept as the client sent them.
type Appointment struct {
	ID                string    `json:"id"`
	CalendarID        string    `json:"calendarId"`
	LocationID        string    `json:"locationId"`
	ContactID         string    `json:"contactId"`
	Title             string    `json:"title,omitempty"`
	StartTime         string    `json:"startTime"`
	EndTime           string    `json:"endTime"`
	AppointmentStatus string    `json:"appointmentStatus"`
	AssignedUserID    string    `json:"assignedUserId,omitempty"`
	Address           string    `json:"address,omitempty"`
	DateAdded         time.Time `json:"dateAdded"`
	DateUpdated       time.Time `json:"dateUpdated"`
}

// appointmentStatuses are the values GHL accepts for appointmentStatus.
var appointmentStatuses = []string{"new", "confirmed", "cancelled", "showed", "noshow", "invalid"}

// defaultAppointmentStatus is what an appointment created without a status
// gets, and defaultDuration sets a missing endTime.
const (
	defaultAppointmentStatus = "confirmed"
	defaultDuration          = 30 * time.Minute
)

// appointmentInput is a create or update body; nil fields were absent.
type appointmentInput struct {
	CalendarID               *string `json:"calendarId"`
	LocationID               *string `json:"locationId"`
	ContactID                *string `json:"contactId"`
	StartTime                *string `json:"startTime"`
	EndTime                  *string `json:"endTime"`
	Title                    *string `json:"title"`
	AppointmentStatus        *string `json:"appointmentStatus"`
	AssignedUserID           *string `json:"assignedUserId"`
	Address                  *string `json:"address"`
	IgnoreDateRange          *bool   `json:"ignoreDateRange"`
	IgnoreFreeSlotValidation *bool   `json:"ignoreFreeSlotValidation"`
	ToNotify                 *bool   `json:"toNotify"`
}

var (
	createAppointmentKeys = jsonKeys(reflect.TypeFor[appointmentInput]())
	updateAppointmentKeys = jsonKeys(reflect.TypeFor[appointmentInput](), "locationId", "contactId")
)

// validate returns the 422 messages of a body; create requires the fields
// GHL requires on create.
func (in *appointmentInput) validate(create bool) []string {
	var msgs []string
	if create {
		for _, f := range []struct {
			name string
			v    *string
		}{{"calendarId", in.CalendarID}, {"locationId", in.LocationID}, {"contactId", in.ContactID}, {"startTime", in.StartTime}} {
			if str(f.v) == "" {
				msgs = append(msgs, f.name+" should not be empty")
			}
		}
	}
	var start, end time.Time
	var err error
	if in.StartTime != nil && *in.StartTime != "" {
		if start, err = time.Parse(time.RFC3339, *in.StartTime); err != nil {
			msgs = append(msgs, "startTime must be a valid ISO 8601 date string")
		}
	}
	if in.EndTime != nil {
		if end, err = time.Parse(time.RFC3339, *in.EndTime); err != nil {
			msgs = append(msgs, "endTime must be a valid ISO 8601 date string")
		}
	}
	if !start.IsZero() && !end.IsZero() && !end.After(start) {
		msgs = append(msgs, "endTime must be after startTime")
	}
	if in.AppointmentStatus != nil && !slices.Contains(appointmentStatuses, *in.AppointmentStatus) {
		msgs = append(msgs, "appointmentStatus must be one of the following values: new, confirmed, cancelled, showed, noshow, invalid")
	}
	return msgs
}

func (in *appointmentInput) apply(a *Appointment) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&a.CalendarID, in.CalendarID)
	set(&a.StartTime, in.StartTime)
	set(&a.EndTime, in.EndTime)
	set(&a.Title, in.Title)
	set(&a.AppointmentStatus, in.AppointmentStatus)
	set(&a.AssignedUserID, in.AssignedUserID)
	set(&a.Address, in.Address)
}

// AddCalendar registers a calendar of the location (registering the
// location if unknown), without team members.
func (s *Server) AddCalendar(locationID, calendarID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addLocationLockedIfMissing(locationID)
	if _, ok := s.st.calendars[calendarID]; !ok {
		s.st.calOrder = append(s.st.calOrder, calendarID)
	}
	s.st.calendars[calendarID] = &Calendar{ID: calendarID, LocationID: locationID, Name: name}
	s.changedLocked()
}

// SetCalendarTeam makes userIDs the calendar's team members (none: a
// calendar that takes appointments without an owner). From then on the
// calendar refuses creates and updates without an assignedUserId of the
// team. It panics on an unknown calendar.
func (s *Server) SetCalendarTeam(calendarID string, userIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.st.calendars[calendarID]
	if c == nil {
		panic("ghltest: SetCalendarTeam of unknown calendar " + calendarID)
	}
	c.TeamMembers = nil
	for _, id := range userIDs {
		c.TeamMembers = append(c.TeamMembers, TeamMember{UserID: id, Priority: 0.5, MeetingLocationType: "custom"})
	}
	s.changedLocked()
}

// handleListCalendars serves GET /calendars/?locationId=.
func (s *Server) handleListCalendars(w http.ResponseWriter, r *http.Request, g *grant) {
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
	cals := []Calendar{}
	for _, id := range s.st.calOrder {
		if c := s.st.calendars[id]; c.LocationID == loc {
			cals = append(cals, c.clone())
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Calendars []Calendar `json:"calendars"`
	}{cals})
}

// checkRefsLocked answers 400 unless the calendar (and contact, if not "")
// belong to the location.
func (s *Server) checkRefsLocked(loc, calendarID, contactID string) (int, string) {
	if c := s.st.calendars[calendarID]; c == nil || c.LocationID != loc {
		return http.StatusBadRequest, "Calendar not found"
	}
	if contactID != "" {
		if c := s.st.contacts[contactID]; c == nil || c.LocationID != loc {
			return http.StatusBadRequest, "Contact not found"
		}
	}
	return 0, ""
}

// Messages of a calendar with team members, for an appointment without an
// owner of the team (GHL issue #23) and for one whose owner is not on it.
const (
	msgOwnerRequired = "either userId or assignedUserId must be set"
	msgOwnerNotTeam  = "assignedUserId is not a team member of this calendar"
)

// checkOwnerLocked answers 400 when calendarID has team members and
// assigned (nil: absent from the body) is not one of them, and counts it.
func (s *Server) checkOwnerLocked(loc, calendarID string, assigned *string) (int, string) {
	c := s.st.calendars[calendarID]
	if c == nil || len(c.TeamMembers) == 0 {
		return 0, ""
	}
	switch {
	case str(assigned) == "":
		s.stats.ownerRefusals[loc]++
		return http.StatusBadRequest, msgOwnerRequired
	case !c.hasMember(*assigned):
		s.stats.ownerRefusals[loc]++
		return http.StatusBadRequest, msgOwnerNotTeam
	}
	return 0, ""
}

// notifiedLocked counts a write GHL would run the calendar's automations
// for: one sent without toNotify false.
func (s *Server) notifiedLocked(loc string, in *appointmentInput) {
	if in.ToNotify == nil || *in.ToNotify {
		s.stats.notifications[loc]++
	}
}

// handleCreateAppointment serves POST /calendars/events/appointments.
func (s *Server) handleCreateAppointment(w http.ResponseWriter, r *http.Request, g *grant) {
	var in appointmentInput
	if !decodeBody(w, r, &in, createAppointmentKeys) {
		return
	}
	if msgs := in.validate(true); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	loc := *in.LocationID
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	now := s.opts.Now()
	a := &Appointment{
		ID:                newID(),
		LocationID:        loc,
		ContactID:         *in.ContactID,
		AppointmentStatus: defaultAppointmentStatus,
		DateAdded:         now,
		DateUpdated:       now,
	}
	in.apply(a)
	if a.EndTime == "" {
		start, _ := time.Parse(time.RFC3339, a.StartTime) // validated
		a.EndTime = start.Add(defaultDuration).Format(time.RFC3339)
	}
	s.mu.Lock()
	status, msg := s.checkRefsLocked(loc, a.CalendarID, a.ContactID)
	if status == 0 {
		status, msg = s.checkOwnerLocked(loc, a.CalendarID, in.AssignedUserID)
	}
	if status != 0 {
		s.mu.Unlock()
		writeError(w, status, msg)
		return
	}
	s.st.appointments[a.ID] = a
	s.st.apptsByLo[loc] = append(s.st.apptsByLo[loc], a.ID)
	s.stats.apptCreates[loc]++
	s.changedLocked()
	s.notifiedLocked(loc, &in)
	out := *a
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// wellFormedEventID reports whether id could be one of GHL's event or
// calendar ids: letters and digits (GHL's own), "_" (a recurring event's
// instance id_start_duration) and "-" (the ids tests and the sandbox give
// calendars).
var wellFormedEventID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`).MatchString

// checkEventIDLocked answers GHL's 500 for a malformed id (GHL issue #6) and
// its 400 "… not found" for an unknown one (GHL documents no 404 for
// events), counting each; ok when id is a known appointment.
func (s *Server) checkEventIDLocked(w http.ResponseWriter, id string, g *grant) bool {
	if !wellFormedEventID(id) {
		s.stats.malformedIDs[g.subject()]++
		writeError(w, http.StatusInternalServerError, "Internal server error")
		return false
	}
	if s.st.appointments[id] == nil {
		s.stats.notFound[g.subject()]++
		writeError(w, http.StatusBadRequest, "Event with id "+id+" not found")
		return false
	}
	return true
}

// appointmentFor returns a copy of appointment id if g may read it, else
// answers.
func (s *Server) appointmentFor(w http.ResponseWriter, id string, g *grant) (Appointment, bool) {
	s.mu.Lock()
	if !s.checkEventIDLocked(w, id, g) {
		s.mu.Unlock()
		return Appointment{}, false
	}
	a := s.st.appointments[id]
	out := *a
	s.mu.Unlock()
	switch {
	case !g.canAccess(out.LocationID):
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return out, false
	}
	return out, true
}

// handleGetAppointment serves GET /calendars/events/appointments/{id}.
func (s *Server) handleGetAppointment(w http.ResponseWriter, r *http.Request, g *grant) {
	a, ok := s.appointmentFor(w, r.PathValue("id"), g)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Event Appointment `json:"event"`
	}{a})
}

// handleUpdateAppointment serves PUT /calendars/events/appointments/{id}.
func (s *Server) handleUpdateAppointment(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	old, ok := s.appointmentFor(w, id, g)
	if !ok {
		return
	}
	var in appointmentInput
	if !decodeBody(w, r, &in, updateAppointmentKeys) {
		return
	}
	// Validate the times the appointment will have. A new start without an
	// end moves the appointment, keeping its duration.
	merged := in
	if merged.StartTime == nil {
		merged.StartTime = &old.StartTime
	}
	if merged.EndTime == nil {
		merged.EndTime = &old.EndTime
		if in.StartTime != nil {
			oldStart, err1 := time.Parse(time.RFC3339, old.StartTime)
			oldEnd, err2 := time.Parse(time.RFC3339, old.EndTime)
			start, err3 := time.Parse(time.RFC3339, *in.StartTime)
			if err1 == nil && err2 == nil && err3 == nil {
				end := start.Add(oldEnd.Sub(oldStart)).Format(time.RFC3339)
				merged.EndTime, in.EndTime = &end, &end
			}
		}
	}
	if msgs := merged.validate(false); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	if !s.checkEventIDLocked(w, id, g) { // deleted meanwhile
		s.mu.Unlock()
		return
	}
	a := s.st.appointments[id]
	calendar := a.CalendarID
	if in.CalendarID != nil {
		if status, msg := s.checkRefsLocked(a.LocationID, *in.CalendarID, ""); status != 0 {
			s.mu.Unlock()
			writeError(w, status, msg)
			return
		}
		calendar = *in.CalendarID
	}
	// GHL asks every update of a team calendar's appointment for its
	// owner, as it asks the create.
	if status, msg := s.checkOwnerLocked(a.LocationID, calendar, in.AssignedUserID); status != 0 {
		s.mu.Unlock()
		writeError(w, status, msg)
		return
	}
	in.apply(a)
	a.DateUpdated = now
	s.stats.apptUpdates[a.LocationID]++
	s.changedLocked()
	s.notifiedLocked(a.LocationID, &in)
	out := *a
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// handleDeleteAppointment serves DELETE /calendars/events/{id}.
func (s *Server) handleDeleteAppointment(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	if _, ok := s.appointmentFor(w, id, g); !ok {
		return
	}
	s.mu.Lock()
	if !s.checkEventIDLocked(w, id, g) { // deleted meanwhile
		s.mu.Unlock()
		return
	}
	a := s.st.appointments[id]
	delete(s.st.appointments, id)
	delete(s.st.notes, id)
	s.st.apptsByLo[a.LocationID] = slices.DeleteFunc(s.st.apptsByLo[a.LocationID],
		func(x string) bool { return x == id })
	s.stats.apptDeletes[a.LocationID]++
	s.changedLocked()
	s.mu.Unlock()
	// GHL answers a delete with 201, its spec's DeleteEventSuccessfulResponseDto.
	writeJSON(w, http.StatusCreated, struct {
		Succeeded bool `json:"succeeded"`
	}{true})
}

// Appointments returns copies of the location's appointments, oldest first;
// deleted ones are gone.
func (s *Server) Appointments(locationID string) []Appointment {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.st.apptsByLo[locationID]
	out := make([]Appointment, 0, len(ids))
	for _, id := range ids {
		out = append(out, *s.st.appointments[id])
	}
	return out
}
