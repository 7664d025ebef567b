package ghltest

import (
	"net/http"
	"strconv"
	"time"
)

// The read side of calendars: a calendar with its team, a calendar's
// events by time range, a contact's appointments. Each answers in the
// shape of GHL's spec, with the side fields GHL sends (of GHL's types), so
// a client that decodes more than it uses is caught, and the contact's
// list writes times as GHL does: without an offset, in the location's
// time zone.

// Layouts of the times GHL answers: with the offset of the location's
// zone (CalendarEventDTO), and without one (GetEventSchema).
const (
	offsetLayout = "2006-01-02T15:04:05-07:00"
	localLayout  = "2006-01-02 15:04:05"
)

// zoneLocked is the IANA zone of location loc; UTC when its name does not
// load (Go's zone database lacks it).
func (s *Server) zoneLocked(loc string) *time.Location {
	name := DefaultTimezone
	if l := s.st.locations[loc]; l != nil {
		name = l.timezone()
	}
	z, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return z
}

// inZone writes the time t (RFC 3339, as stored) in zone with layout; a
// time that does not parse is written as stored.
func inZone(t string, zone *time.Location, layout string) string {
	v, err := time.Parse(time.RFC3339, t)
	if err != nil {
		return t
	}
	return v.In(zone).Format(layout)
}

// calendarJSON is GET /calendars/{id}'s calendar.
type calendarJSON struct {
	ID           string         `json:"id"`
	LocationID   string         `json:"locationId"`
	Name         string         `json:"name"`
	CalendarType string         `json:"calendarType"`
	TeamMembers  []TeamMember   `json:"teamMembers"`
	SlotDuration int            `json:"slotDuration"`
	OpenHours    []any          `json:"openHours"`
	LookBusy     map[string]any `json:"lookBusyConfig"`
	IsActive     bool           `json:"isActive"`
}

// handleGetCalendar serves GET /calendars/{id}: 400 "… not found" for an
// unknown calendar and 500 for a malformed id, as for events.
func (s *Server) handleGetCalendar(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.st.calendars[id]
	switch {
	case !wellFormedEventID(id):
		s.stats.malformedIDs[g.subject()]++
		s.mu.Unlock()
		writeError(w, http.StatusInternalServerError, "Internal server error")
		return
	case c == nil:
		s.stats.notFound[g.subject()]++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Calendar with id "+id+" not found")
		return
	}
	kind := "event"
	if len(c.TeamMembers) > 0 {
		kind = "round_robin"
	}
	out := calendarJSON{ID: c.ID, LocationID: c.LocationID, Name: c.Name, CalendarType: kind,
		TeamMembers: append([]TeamMember{}, c.TeamMembers...), SlotDuration: 30, OpenHours: []any{},
		LookBusy: map[string]any{"enabled": false}, IsActive: true}
	s.mu.Unlock()
	if !g.canAccess(out.LocationID) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Calendar calendarJSON `json:"calendar"`
	}{out})
}

// calendarEventJSON is an event as GET /calendars/events answers it
// (CalendarEventDTO).
type calendarEventJSON struct {
	ID                string   `json:"id"`
	Title             string   `json:"title"`
	Address           string   `json:"address,omitempty"`
	CalendarID        string   `json:"calendarId"`
	LocationID        string   `json:"locationId"`
	ContactID         string   `json:"contactId"`
	GroupID           string   `json:"groupId"`
	AppointmentStatus string   `json:"appointmentStatus"`
	AssignedUserID    string   `json:"assignedUserId"`
	Users             []string `json:"users"`
	IsRecurring       bool     `json:"isRecurring"`
	StartTime         string   `json:"startTime"`
	EndTime           string   `json:"endTime"`
	DateAdded         string   `json:"dateAdded"`
	DateUpdated       string   `json:"dateUpdated"`
}

// handleCalendarEvents serves GET /calendars/events?locationId&calendarId
// (or userId, the owner)&startTime&endTime (epoch ms): the events that
// start in the range, oldest first, times with the location's offset. A
// groupId matches nothing: the fake has no groups.
func (s *Server) handleCalendarEvents(w http.ResponseWriter, r *http.Request, g *grant) {
	q := r.URL.Query()
	loc, cal, user := q.Get("locationId"), q.Get("calendarId"), q.Get("userId")
	var msgs []string
	if loc == "" {
		msgs = append(msgs, "locationId should not be empty")
	}
	if cal == "" && user == "" && q.Get("groupId") == "" {
		msgs = append(msgs, "Either of calendarId, userId or groupId is required")
	}
	from, err1 := strconv.ParseInt(q.Get("startTime"), 10, 64)
	to, err2 := strconv.ParseInt(q.Get("endTime"), 10, 64)
	if err1 != nil {
		msgs = append(msgs, "startTime must be a number string (in millis)")
	}
	if err2 != nil {
		msgs = append(msgs, "endTime must be a number string (in millis)")
	}
	if msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	s.mu.Lock()
	zone := s.zoneLocked(loc)
	events := []calendarEventJSON{}
	for _, id := range s.st.apptsByLo[loc] {
		a := s.st.appointments[id]
		if cal != "" && a.CalendarID != cal || user != "" && a.AssignedUserID != user || cal == "" && user == "" {
			continue
		}
		start, err := time.Parse(time.RFC3339, a.StartTime)
		if err != nil || start.UnixMilli() < from || start.UnixMilli() > to {
			continue
		}
		events = append(events, calendarEventJSON{ID: a.ID, Title: a.Title, Address: a.Address,
			CalendarID: a.CalendarID, LocationID: a.LocationID, ContactID: a.ContactID,
			AppointmentStatus: a.AppointmentStatus, AssignedUserID: a.AssignedUserID, Users: []string{},
			StartTime: inZone(a.StartTime, zone, offsetLayout), EndTime: inZone(a.EndTime, zone, offsetLayout),
			DateAdded: a.DateAdded.In(zone).Format(offsetLayout), DateUpdated: a.DateUpdated.In(zone).Format(offsetLayout)})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Events []calendarEventJSON `json:"events"`
	}{events})
}

// contactEventJSON is an appointment as GET /contacts/{id}/appointments
// answers it (GetEventSchema): times without an offset, in the location's
// zone, and GHL's own status words beside appointmentStatus.
type contactEventJSON struct {
	ID                string   `json:"id"`
	CalendarID        string   `json:"calendarId"`
	Status            string   `json:"status"`
	Title             string   `json:"title"`
	AssignedUserID    string   `json:"assignedUserId,omitempty"`
	Notes             string   `json:"notes"`
	StartTime         string   `json:"startTime"`
	EndTime           string   `json:"endTime"`
	Address           string   `json:"address,omitempty"`
	LocationID        string   `json:"locationId"`
	ContactID         string   `json:"contactId"`
	GroupID           string   `json:"groupId"`
	AppointmentStatus string   `json:"appointmentStatus"`
	Users             []string `json:"users"`
	DateAdded         string   `json:"dateAdded"`
	DateUpdated       string   `json:"dateUpdated"`
}

// handleContactAppointments serves GET /contacts/{id}/appointments: the
// contact's appointments, oldest first, as {"events": [...]}.
func (s *Server) handleContactAppointments(w http.ResponseWriter, r *http.Request, g *grant) {
	c, ok := s.contactFor(w, r.PathValue("id"), g)
	if !ok {
		return
	}
	s.mu.Lock()
	zone := s.zoneLocked(c.LocationID)
	events := []contactEventJSON{}
	for _, id := range s.st.apptsByLo[c.LocationID] {
		if a := s.st.appointments[id]; a.ContactID == c.ID {
			status := "booked"
			if a.AppointmentStatus == "cancelled" {
				status = "cancelled"
			}
			events = append(events, contactEventJSON{ID: a.ID, CalendarID: a.CalendarID, Status: status,
				Title: a.Title, AssignedUserID: a.AssignedUserID, StartTime: inZone(a.StartTime, zone, localLayout),
				EndTime: inZone(a.EndTime, zone, localLayout), Address: a.Address, LocationID: a.LocationID,
				ContactID: a.ContactID, AppointmentStatus: a.AppointmentStatus, Users: []string{},
				DateAdded: a.DateAdded.In(zone).Format(localLayout), DateUpdated: a.DateUpdated.In(zone).Format(localLayout)})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Events []contactEventJSON `json:"events"`
	}{events})
}
