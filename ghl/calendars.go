package ghl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Appointment statuses (Appointment.AppointmentStatus).
const (
	AppointmentStatusNew       = "new"
	AppointmentStatusConfirmed = "confirmed"
	AppointmentStatusCancelled = "cancelled"
	AppointmentStatusShowed    = "showed"
	AppointmentStatusNoShow    = "noshow"
	AppointmentStatusInvalid   = "invalid"
)

// CalendarsService manages a location's calendars and appointments. Its
// calls take that location's access token.
type CalendarsService struct {
	client *Client
}

// Calendar is one of a location's calendars. Of GHL's calendar only
// these fields are decoded, so no other can fail the call.
type Calendar struct {
	ID         string `json:"id"`
	LocationID string `json:"locationId"`
	Name       string `json:"name"`
	// TeamMembers are the users appointments of the calendar are booked
	// with (round robin, collective, class, service and personal
	// calendars). A calendar with team members refuses an appointment
	// without an AssignedUserID among them.
	TeamMembers []TeamMember `json:"teamMembers,omitempty"`
}

// TeamMember is a user of a calendar's team.
type TeamMember struct {
	UserID string `json:"userId"`
}

// HasMember reports whether userID is on the calendar's team.
func (c *Calendar) HasMember(userID string) bool {
	for _, m := range c.TeamMembers {
		if m.UserID == userID {
			return true
		}
	}
	return false
}

// Event is a calendar event as GHL lists it (GET /calendars/events, GET
// /contacts/{id}/appointments): only what finds an appointment again is
// decoded, and the times are kept as GHL wrote them, to be read in the
// location's time zone with EventTime.In. Raw is the event's JSON as GHL
// answered it (its title, appointmentStatus, assignedUserId, address and
// the rest), for a reader that compares its fields.
type Event struct {
	ID         string          `json:"id"`
	CalendarID string          `json:"calendarId"`
	ContactID  string          `json:"contactId"`
	StartTime  EventTime       `json:"startTime"`
	EndTime    EventTime       `json:"endTime"`
	Raw        json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the event and keeps its JSON in Raw.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*e = Event(p)
	e.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Appointment is an appointment in a calendar. Empty fields are not sent.
//
// On the wire StartTime and EndTime are RFC 3339 with the offset of the
// time's location, to the second.
type Appointment struct {
	ID         string
	CalendarID string
	LocationID string
	ContactID  string
	StartTime  time.Time
	EndTime    time.Time
	Title      string
	// AppointmentStatus is one of the AppointmentStatus constants.
	AppointmentStatus        string
	AssignedUserID           string
	Address                  string
	IgnoreDateRange          bool
	IgnoreFreeSlotValidation bool
	// ToNotify, when set, tells GHL whether to run the calendar's
	// notifications and workflows for this change.
	ToNotify *bool
}

// appointmentJSON is an Appointment as it is sent.
type appointmentJSON struct {
	ID                       string `json:"id,omitempty"`
	CalendarID               string `json:"calendarId,omitempty"`
	LocationID               string `json:"locationId,omitempty"`
	ContactID                string `json:"contactId,omitempty"`
	StartTime                string `json:"startTime,omitempty"`
	EndTime                  string `json:"endTime,omitempty"`
	Title                    string `json:"title,omitempty"`
	AppointmentStatus        string `json:"appointmentStatus,omitempty"`
	AssignedUserID           string `json:"assignedUserId,omitempty"`
	Address                  string `json:"address,omitempty"`
	IgnoreDateRange          bool   `json:"ignoreDateRange,omitempty"`
	IgnoreFreeSlotValidation bool   `json:"ignoreFreeSlotValidation,omitempty"`
	ToNotify                 *bool  `json:"toNotify,omitempty"`
}

// MarshalJSON writes the appointment as GHL expects it.
func (a Appointment) MarshalJSON() ([]byte, error) {
	return json.Marshal(appointmentJSON{
		ID:                       a.ID,
		CalendarID:               a.CalendarID,
		LocationID:               a.LocationID,
		ContactID:                a.ContactID,
		StartTime:                formatTime(a.StartTime),
		EndTime:                  formatTime(a.EndTime),
		Title:                    a.Title,
		AppointmentStatus:        a.AppointmentStatus,
		AssignedUserID:           a.AssignedUserID,
		Address:                  a.Address,
		IgnoreDateRange:          a.IgnoreDateRange,
		IgnoreFreeSlotValidation: a.IgnoreFreeSlotValidation,
		ToNotify:                 a.ToNotify,
	})
}

// appointmentAnswer is an appointment as GHL answers it. Every field is
// read leniently (see text): GHL's spec types the times of an event as
// "object", and a write GHL has made must never look failed because a
// field ghlsync does not rely on came in another shape.
type appointmentAnswer struct {
	ID                json.RawMessage `json:"id"`
	CalendarID        json.RawMessage `json:"calendarId"`
	LocationID        json.RawMessage `json:"locationId"`
	ContactID         json.RawMessage `json:"contactId"`
	StartTime         EventTime       `json:"startTime"`
	EndTime           EventTime       `json:"endTime"`
	Title             json.RawMessage `json:"title"`
	AppointmentStatus json.RawMessage `json:"appointmentStatus"`
	// MisspelledStatus: some of GHL's event payloads spell the status
	// field so.
	MisspelledStatus         json.RawMessage `json:"appoinmentStatus"`
	AssignedUserID           json.RawMessage `json:"assignedUserId"`
	Address                  json.RawMessage `json:"address"`
	IgnoreDateRange          json.RawMessage `json:"ignoreDateRange"`
	IgnoreFreeSlotValidation json.RawMessage `json:"ignoreFreeSlotValidation"`
	ToNotify                 json.RawMessage `json:"toNotify"`
}

// UnmarshalJSON reads an appointment as GHL answers it. A time written
// with its offset is kept with it; one GHL wrote without an offset (in the
// location's time zone, which an answer does not name) or in a form
// nobody can read is left zero, as is a field of an unexpected type: the
// answer to a write must not fail for a field the caller may not use.
func (a *Appointment) UnmarshalJSON(b []byte) error {
	var w appointmentAnswer
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	start, _ := w.StartTime.In(nil)
	end, _ := w.EndTime.In(nil)
	status := text(w.AppointmentStatus)
	if status == "" {
		status = text(w.MisspelledStatus)
	}
	*a = Appointment{
		ID:                       text(w.ID),
		CalendarID:               text(w.CalendarID),
		LocationID:               text(w.LocationID),
		ContactID:                text(w.ContactID),
		StartTime:                start,
		EndTime:                  end,
		Title:                    text(w.Title),
		AppointmentStatus:        status,
		AssignedUserID:           text(w.AssignedUserID),
		Address:                  text(w.Address),
		IgnoreDateRange:          flag(w.IgnoreDateRange),
		IgnoreFreeSlotValidation: flag(w.IgnoreFreeSlotValidation),
	}
	if v, ok := boolOf(w.ToNotify); ok {
		a.ToNotify = &v
	}
	return nil
}

// text is a JSON string's value, "" for anything else.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func boolOf(raw json.RawMessage) (v, ok bool) {
	ok = json.Unmarshal(raw, &v) == nil && len(raw) > 0 && string(raw) != "null"
	return v, ok
}

func flag(raw json.RawMessage) bool {
	v, _ := boolOf(raw)
	return v
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

// EventTime is a time of an event as GHL wrote it in an answer: RFC 3339
// with an offset (GET /calendars/events, the answers to writes), or
// "2021-07-16 11:00:00", without an offset, in the location's time zone
// (GET /contacts/{id}/appointments). Any JSON string is kept as it came;
// anything else (GHL's spec types event times as "object") is kept empty
// rather than failing the answer. Read it with In.
type EventTime string

// UnmarshalJSON keeps a JSON string, and a number (epoch milliseconds) as
// its digits; any other value is "".
func (t *EventTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = EventTime(s)
		return nil
	}
	var n json.Number
	if json.Unmarshal(b, &n) == nil {
		if _, err := n.Int64(); err == nil {
			*t = EventTime(n.String())
			return nil
		}
	}
	*t = ""
	return nil
}

// In returns the time, reading one written without an offset in zone, the
// location's; see ParseTime.
func (t EventTime) In(zone *time.Location) (time.Time, error) {
	return ParseTime(string(t), zone)
}

// offsetLayouts and localLayouts are the forms GHL writes times in, with
// and without an offset.
var (
	offsetLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00"}
	localLayouts  = []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04", "2006-01-02T15:04"}
)

// ErrNoZone is wrapped by ParseTime's error for a time without an offset
// when no zone is given to read it in.
var ErrNoZone = errors.New("a time without an offset needs the location's time zone")

// ParseTime reads a time as GHL writes it: RFC 3339 (fractions and a space
// for the T allowed), epoch milliseconds, or a wall-clock time without an
// offset ("2021-07-16 11:00:00"), which is read in zone, the location's
// time zone. Without a zone such a time is an error wrapping ErrNoZone.
func ParseTime(s string, zone *time.Location) (time.Time, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return time.Time{}, errors.New("ghl: no time")
	}
	for _, layout := range offsetLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	for _, layout := range localLayouts {
		if _, err := time.Parse(layout, v); err != nil {
			continue
		}
		if zone == nil {
			return time.Time{}, fmt.Errorf("ghl: time %q: %w", s, ErrNoZone)
		}
		t, _ := time.ParseInLocation(layout, v, zone)
		return t, nil
	}
	return time.Time{}, fmt.Errorf("ghl: time %q is not a time GHL writes", s)
}

// List returns the calendars of locationID.
func (s *CalendarsService) List(ctx context.Context, accessToken, locationID string) ([]Calendar, *Response, error) {
	r := &request{
		endpoint: "calendars.list",
		method:   http.MethodGet,
		path:     "/calendars/",
		query:    url.Values{"locationId": {locationID}},
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "location id", locationID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Calendars []Calendar `json:"calendars"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Calendars, resp, nil
}

// Get returns the calendar calendarID with its team members.
func (s *CalendarsService) Get(ctx context.Context, accessToken, calendarID string) (*Calendar, *Response, error) {
	r := &request{
		endpoint: "calendars.get",
		method:   http.MethodGet,
		path:     "/calendars/" + url.PathEscape(calendarID),
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "calendar id", calendarID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Calendar *Calendar `json:"calendar"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.Calendar == nil || out.Calendar.ID == "" {
		return nil, resp, r.errorf("response has no calendar")
	}
	return out.Calendar, resp, nil
}

// EventsQuery selects the events of one calendar of a location that start
// in [Start, End].
type EventsQuery struct {
	LocationID string
	CalendarID string
	Start, End time.Time
}

// Events returns the events of q.CalendarID between q.Start and q.End. GHL
// writes their times with offsets. After a create whose answer was lost,
// it is how the appointment the create made is found: the contact's event
// at that start.
func (s *CalendarsService) Events(ctx context.Context, accessToken string, q EventsQuery) ([]Event, *Response, error) {
	r := &request{
		endpoint: "calendars.events",
		method:   http.MethodGet,
		path:     "/calendars/events",
		query: url.Values{
			"locationId": {q.LocationID},
			"calendarId": {q.CalendarID},
			"startTime":  {strconv.FormatInt(q.Start.UnixMilli(), 10)},
			"endTime":    {strconv.FormatInt(q.End.UnixMilli(), 10)},
		},
		version: versionCalendars,
		token:   accessToken,
	}
	if err := r.require("access token", accessToken, "location id", q.LocationID, "calendar id", q.CalendarID); err != nil {
		return nil, nil, err
	}
	if q.Start.IsZero() || q.End.Before(q.Start) {
		return nil, nil, r.errorf("a time range from Start to End is required")
	}
	var out struct {
		Events []Event `json:"events"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Events, resp, nil
}

// CreateAppointment books a in a.CalendarID. CalendarID, LocationID,
// ContactID and StartTime are required; a calendar with team members also
// wants an AssignedUserID of its team. a.ID is not sent. Leave ToNotify
// nil and GHL runs the calendar's automations (confirmations by SMS and
// email); false keeps them quiet.
//
// After a temporary error GHL may have booked it anyway.
func (s *CalendarsService) CreateAppointment(ctx context.Context, accessToken string, a *Appointment) (*Appointment, *Response, error) {
	body := Appointment{}
	if a != nil {
		body = *a
	}
	body.ID = ""
	r := &request{
		endpoint: "calendars.createAppointment",
		method:   http.MethodPost,
		path:     "/calendars/events/appointments",
		version:  versionCalendars,
		token:    accessToken,
		json:     body,
	}
	if err := r.require("access token", accessToken, "calendarId", body.CalendarID,
		"locationId", body.LocationID, "contactId", body.ContactID, "startTime", formatTime(body.StartTime)); err != nil {
		return nil, nil, err
	}
	out, resp, err := s.doFlat(ctx, r)
	if err == nil && out.ID == "" {
		return nil, resp, r.errorf("response has no appointment id")
	}
	return out, resp, err
}

// UpdateAppointment changes the appointment eventID to a's non-empty fields.
// a.ID, a.LocationID and a.ContactID are not sent: GHL refuses them on
// update.
func (s *CalendarsService) UpdateAppointment(ctx context.Context, accessToken, eventID string, a *Appointment) (*Appointment, *Response, error) {
	body := Appointment{}
	if a != nil {
		body = *a
	}
	body.ID, body.LocationID, body.ContactID = "", "", ""
	r := &request{
		endpoint: "calendars.updateAppointment",
		method:   http.MethodPut,
		path:     "/calendars/events/appointments/" + url.PathEscape(eventID),
		version:  versionCalendars,
		token:    accessToken,
		json:     body,
	}
	if err := r.require("access token", accessToken, "event id", eventID); err != nil {
		return nil, nil, err
	}
	return s.doFlat(ctx, r)
}

// GetAppointment returns the appointment eventID.
func (s *CalendarsService) GetAppointment(ctx context.Context, accessToken, eventID string) (*Appointment, *Response, error) {
	r := &request{
		endpoint: "calendars.getAppointment",
		method:   http.MethodGet,
		path:     "/calendars/events/appointments/" + url.PathEscape(eventID),
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "event id", eventID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Event *Appointment `json:"event"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.Event == nil {
		return nil, resp, r.errorf("response has no event")
	}
	return out.Event, resp, nil
}

// DeleteEvent deletes the calendar event (appointment or blocked slot)
// eventID. GHL answers 201; any 2xx is success.
func (s *CalendarsService) DeleteEvent(ctx context.Context, accessToken, eventID string) (*Response, error) {
	r := &request{
		endpoint: "calendars.deleteEvent",
		method:   http.MethodDelete,
		path:     "/calendars/events/" + url.PathEscape(eventID),
		version:  versionCalendars,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "event id", eventID); err != nil {
		return nil, err
	}
	return s.client.do(ctx, r, nil)
}

// doFlat sends r, whose answer is the appointment itself.
func (s *CalendarsService) doFlat(ctx context.Context, r *request) (*Appointment, *Response, error) {
	var out Appointment
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return &out, resp, nil
}
