package ghl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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

// Calendar is one of a location's calendars.
type Calendar struct {
	ID         string `json:"id"`
	LocationID string `json:"locationId"`
	Name       string `json:"name"`
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

// appointmentJSON is an Appointment on the wire.
type appointmentJSON struct {
	ID                string `json:"id,omitempty"`
	CalendarID        string `json:"calendarId,omitempty"`
	LocationID        string `json:"locationId,omitempty"`
	ContactID         string `json:"contactId,omitempty"`
	StartTime         string `json:"startTime,omitempty"`
	EndTime           string `json:"endTime,omitempty"`
	Title             string `json:"title,omitempty"`
	AppointmentStatus string `json:"appointmentStatus,omitempty"`
	// MisspelledStatus is read only: some of GHL's event payloads spell
	// the status field so.
	MisspelledStatus         string `json:"appoinmentStatus,omitempty"`
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

// UnmarshalJSON reads an appointment as GHL sends it.
func (a *Appointment) UnmarshalJSON(b []byte) error {
	var w appointmentJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	start, err := parseTime("startTime", w.StartTime)
	if err != nil {
		return err
	}
	end, err := parseTime("endTime", w.EndTime)
	if err != nil {
		return err
	}
	status := w.AppointmentStatus
	if status == "" {
		status = w.MisspelledStatus
	}
	*a = Appointment{
		ID:                       w.ID,
		CalendarID:               w.CalendarID,
		LocationID:               w.LocationID,
		ContactID:                w.ContactID,
		StartTime:                start,
		EndTime:                  end,
		Title:                    w.Title,
		AppointmentStatus:        status,
		AssignedUserID:           w.AssignedUserID,
		Address:                  w.Address,
		IgnoreDateRange:          w.IgnoreDateRange,
		IgnoreFreeSlotValidation: w.IgnoreFreeSlotValidation,
		ToNotify:                 w.ToNotify,
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
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

// CreateAppointment books a in a.CalendarID. CalendarID, LocationID,
// ContactID and StartTime are required; some calendars also want
// AssignedUserID. a.ID is not sent.
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
// eventID.
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
