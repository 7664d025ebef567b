package ghl

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCalendarsList(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/calendars/", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-04-15", testAccessToken)
		if r.URL.Path != "/calendars/" {
			t.Errorf("path = %s, want /calendars/", r.URL.Path)
		}
		if got := r.URL.Query().Get("locationId"); got != "loc-1" {
			t.Errorf("locationId = %q", got)
		}
		writeJSON(w, http.StatusOK, `{"calendars":[{"id":"cal-1","locationId":"loc-1","name":"Physio","slotDuration":30},
			{"id":"cal-2","locationId":"loc-1","name":"Massage"}]}`)
	})
	got, _, err := c.Calendars.List(t.Context(), testAccessToken, "loc-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Calendar{{"cal-1", "loc-1", "Physio"}, {"cal-2", "loc-1", "Massage"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calendars mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]observation{{"calendars.list", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

var berlin = time.FixedZone("CET", 3600)

func TestCalendarsCreateAppointment(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/calendars/events/appointments", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testAPIHeaders(t, r, "2021-04-15", testAccessToken)
		testJSON(t, r, `{
			"calendarId": "cal-1",
			"locationId": "loc-1",
			"contactId": "con-1",
			"startTime": "2025-03-03T09:00:00+01:00",
			"endTime": "2025-03-03T09:30:00+01:00",
			"title": "Physio",
			"appointmentStatus": "confirmed",
			"assignedUserId": "user-1",
			"address": "Room 1",
			"ignoreDateRange": true,
			"ignoreFreeSlotValidation": true,
			"toNotify": false
		}`)
		writeJSON(w, http.StatusCreated, `{"id":"ev-1","calendarId":"cal-1","locationId":"loc-1","contactId":"con-1",
			"startTime":"2025-03-03T09:00:00+01:00","endTime":"2025-03-03T09:30:00+01:00","title":"Physio",
			"appointmentStatus":"confirmed","assignedUserId":"user-1","address":"Room 1","isRecurring":false}`)
	})
	notify := false
	in := &Appointment{
		ID:                       "ignored",
		CalendarID:               "cal-1",
		LocationID:               "loc-1",
		ContactID:                "con-1",
		StartTime:                time.Date(2025, 3, 3, 9, 0, 0, 123456789, berlin), // sent to the second
		EndTime:                  time.Date(2025, 3, 3, 9, 30, 0, 0, berlin),
		Title:                    "Physio",
		AppointmentStatus:        AppointmentStatusConfirmed,
		AssignedUserID:           "user-1",
		Address:                  "Room 1",
		IgnoreDateRange:          true,
		IgnoreFreeSlotValidation: true,
		ToNotify:                 &notify,
	}
	got, resp, err := c.Calendars.CreateAppointment(t.Context(), testAccessToken, in)
	if err != nil {
		t.Fatal(err)
	}
	want := &Appointment{
		ID:                "ev-1",
		CalendarID:        "cal-1",
		LocationID:        "loc-1",
		ContactID:         "con-1",
		StartTime:         time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC),
		EndTime:           time.Date(2025, 3, 3, 8, 30, 0, 0, time.UTC),
		Title:             "Physio",
		AppointmentStatus: "confirmed",
		AssignedUserID:    "user-1",
		Address:           "Room 1",
	}
	if diff := cmp.Diff(want, got); diff != "" { // times compare with Equal
		t.Errorf("Appointment mismatch (-want +got):\n%s", diff)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("StatusCode = %d", resp.StatusCode)
	}
	if _, off := got.StartTime.Zone(); off != 3600 {
		t.Errorf("StartTime offset = %d, want GHL's +01:00 kept", off)
	}
}

func TestCalendarsCreateAppointment_NoID(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /calendars/events/appointments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, `{}`)
	})
	a := &Appointment{CalendarID: "cal-1", LocationID: "loc-1", ContactID: "con-1", StartTime: time.Now()}
	_, _, err := c.Calendars.CreateAppointment(t.Context(), testAccessToken, a)
	if err == nil || err.Error() != "ghl: POST /calendars/events/appointments: response has no appointment id" {
		t.Errorf("error = %v, want one about the missing id", err)
	}
}

func TestCalendarsUpdateAppointment(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/calendars/events/appointments/ev-1", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPut)
		testAPIHeaders(t, r, "2021-04-15", testAccessToken)
		// No id, locationId or contactId: GHL refuses them on update.
		testJSON(t, r, `{"calendarId":"cal-1","startTime":"2025-03-03T08:00:00Z","appointmentStatus":"cancelled"}`)
		writeJSON(w, http.StatusOK, `{"id":"ev-1","calendarId":"cal-1","startTime":"2025-03-03T08:00:00Z","appointmentStatus":"cancelled"}`)
	})
	in := &Appointment{
		ID:                "ev-1",
		CalendarID:        "cal-1",
		LocationID:        "loc-1",
		ContactID:         "con-1",
		StartTime:         time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC),
		AppointmentStatus: AppointmentStatusCancelled,
	}
	got, _, err := c.Calendars.UpdateAppointment(t.Context(), testAccessToken, "ev-1", in)
	if err != nil {
		t.Fatal(err)
	}
	want := &Appointment{ID: "ev-1", CalendarID: "cal-1", StartTime: in.StartTime, AppointmentStatus: "cancelled"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Appointment mismatch (-want +got):\n%s", diff)
	}
	if in.LocationID != "loc-1" || in.ContactID != "con-1" {
		t.Error("UpdateAppointment changed its argument")
	}
}

func TestCalendarsGetAppointment(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/calendars/events/appointments/{id}", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-04-15", testAccessToken)
		switch r.PathValue("id") {
		case "ev-1":
			writeJSON(w, http.StatusOK, `{"event":{"id":"ev-1","calendarId":"cal-1","locationId":"loc-1","contactId":"con-1",
				"startTime":"2025-03-03T09:00:00.000+01:00","endTime":"2025-03-03T09:30:00+01:00","appointmentStatus":"showed"}}`)
		case "ev-typo": // GHL spells the field so in some event payloads
			writeJSON(w, http.StatusOK, `{"event":{"id":"ev-typo","appoinmentStatus":"noshow"}}`)
		case "ev-badtime":
			writeJSON(w, http.StatusOK, `{"event":{"id":"ev-badtime","startTime":"tomorrow"}}`)
		case "ev-none":
			writeJSON(w, http.StatusOK, `{}`)
		}
	})
	ctx := t.Context()

	got, _, err := c.Calendars.GetAppointment(ctx, testAccessToken, "ev-1")
	if err != nil {
		t.Fatal(err)
	}
	want := &Appointment{
		ID:                "ev-1",
		CalendarID:        "cal-1",
		LocationID:        "loc-1",
		ContactID:         "con-1",
		StartTime:         time.Date(2025, 3, 3, 9, 0, 0, 0, berlin),
		EndTime:           time.Date(2025, 3, 3, 9, 30, 0, 0, berlin),
		AppointmentStatus: AppointmentStatusShowed,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Appointment mismatch (-want +got):\n%s", diff)
	}

	got, _, err = c.Calendars.GetAppointment(ctx, testAccessToken, "ev-typo")
	if err != nil {
		t.Fatal(err)
	}
	if got.AppointmentStatus != AppointmentStatusNoShow {
		t.Errorf("AppointmentStatus = %q, want %q", got.AppointmentStatus, AppointmentStatusNoShow)
	}

	if _, _, err := c.Calendars.GetAppointment(ctx, testAccessToken, "ev-badtime"); err == nil {
		t.Error("GetAppointment with a bad startTime: nil error, want one")
	}
	_, _, err = c.Calendars.GetAppointment(ctx, testAccessToken, "ev-none")
	if err == nil || err.Error() != "ghl: GET /calendars/events/appointments/ev-none: response has no event" {
		t.Errorf("error = %v, want one about the missing event", err)
	}
}

func TestCalendarsDeleteEvent(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/calendars/events/ev-1", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodDelete)
		testAPIHeaders(t, r, "2021-04-15", testAccessToken)
		writeJSON(w, http.StatusOK, `{"succeeded":true}`)
	})
	resp, err := c.Calendars.DeleteEvent(t.Context(), testAccessToken, "ev-1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("StatusCode = %d", resp.StatusCode)
	}
	if diff := cmp.Diff([]observation{{"calendars.deleteEvent", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

func TestAppointment_MarshalJSON(t *testing.T) {
	t.Parallel()
	// Zero times and empty fields are left out; the misspelt status field is
	// never sent.
	b, err := json.Marshal(Appointment{CalendarID: "cal-1", AppointmentStatus: AppointmentStatusNew})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"calendarId":"cal-1","appointmentStatus":"new"}`; got != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
}
