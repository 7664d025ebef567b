package ghltest_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// A calendar with team members refuses creates and updates without an
// assignedUserId of its team, as GHL does (#23); one without takes any.
func TestTeamCalendarWantsAnOwner(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	ada := s.AddUser(ghltest.User{LocationID: "loc1", Name: "Ada Lovelace", Email: "ada@example.com"})
	bob := s.AddUser(ghltest.User{LocationID: "loc1", Name: "Bob Smith", Email: "bob@example.com"})
	s.AddCalendar("loc1", "team", "Team")
	s.SetCalendarTeam("team", ada.ID)
	s.AddCalendar("loc1", "open", "Open")
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	v := ghltest.VersionCalendars
	no := false
	create := func(cal, owner string) reply {
		b := map[string]any{"calendarId": cal, "locationId": "loc1", "contactId": c.ID,
			"startTime": "2025-03-03T10:00:00Z", "toNotify": no}
		if owner != "" {
			b["assignedUserId"] = owner
		}
		return call(t, s, "POST", "/calendars/events/appointments", access, v, b)
	}

	checkError(t, create("team", ""), 400, `{"statusCode":400,"message":"either userId or assignedUserId must be set"}`)
	checkError(t, create("team", bob.ID), 400, `{"statusCode":400,"message":"assignedUserId is not a team member of this calendar"}`)
	var a ghltest.Appointment
	if r := create("team", ada.ID); r.status != 200 {
		t.Fatalf("create with a team member: %d %s", r.status, r.body)
	} else {
		r.decode(t, &a)
	}
	if r := create("open", ""); r.status != 200 {
		t.Errorf("create in a calendar without a team: %d %s", r.status, r.body)
	}
	if r := create("open", bob.ID); r.status != 200 {
		t.Errorf("create with an owner in a calendar without a team: %d %s", r.status, r.body)
	}

	put := func(body map[string]any) reply {
		return call(t, s, "PUT", "/calendars/events/appointments/"+a.ID, access, v, body)
	}
	checkError(t, put(map[string]any{"title": "x", "toNotify": no}), 400,
		`{"statusCode":400,"message":"either userId or assignedUserId must be set"}`)
	checkError(t, put(map[string]any{"title": "x", "assignedUserId": bob.ID, "toNotify": no}), 400,
		`{"statusCode":400,"message":"assignedUserId is not a team member of this calendar"}`)
	if r := put(map[string]any{"title": "x", "assignedUserId": ada.ID, "toNotify": no}); r.status != 200 {
		t.Errorf("update with a team member: %d %s", r.status, r.body)
	}
	st := s.Stats()
	if st.OwnerRefusals["loc1"] != 4 || st.AppointmentCreates["loc1"] != 3 || st.AppointmentUpdates["loc1"] != 1 {
		t.Errorf("owner refusals %d, creates %d, updates %d; want 4, 3, 1",
			st.OwnerRefusals["loc1"], st.AppointmentCreates["loc1"], st.AppointmentUpdates["loc1"])
	}
	if st.Notifications["loc1"] != 0 {
		t.Errorf("%d notifications for writes that all said toNotify false", st.Notifications["loc1"])
	}
}

// The notification counter counts every write GHL took without toNotify
// false: absent or true.
func TestNotificationCounter(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	s.AddCalendar("loc1", "cal1", "Physio")
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	v := ghltest.VersionCalendars
	for i, notify := range []any{nil, true, false} {
		b := map[string]any{"calendarId": "cal1", "locationId": "loc1", "contactId": c.ID,
			"startTime": "2025-03-0" + strconv.Itoa(i+1) + "T10:00:00Z"}
		if notify != nil {
			b["toNotify"] = notify
		}
		if r := call(t, s, "POST", "/calendars/events/appointments", access, v, b); r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	// A refused write runs nothing.
	call(t, s, "POST", "/calendars/events/appointments", access, v, map[string]any{"calendarId": "cal1",
		"locationId": "loc1", "contactId": "nobody", "startTime": "2025-03-09T10:00:00Z"})
	if n := s.Notifications("loc1"); n != 2 {
		t.Errorf("%d notifications, want 2 (no toNotify, toNotify true)", n)
	}
}

func TestGetCalendar(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	other, _, _ := s.IssueToken("loc2")
	s.AddCalendar("loc1", "team", "Team")
	s.SetCalendarTeam("team", "u1", "u2")
	s.AddCalendar("loc1", "open", "Open")
	v := ghltest.VersionCalendars

	var got struct {
		Calendar struct {
			ID           string
			CalendarType string
			TeamMembers  []struct {
				UserID   string
				Priority float64
			}
		}
	}
	call(t, s, "GET", "/calendars/team", access, v, nil).decode(t, &got)
	if got.Calendar.ID != "team" || got.Calendar.CalendarType != "round_robin" || len(got.Calendar.TeamMembers) != 2 ||
		got.Calendar.TeamMembers[1].UserID != "u2" || got.Calendar.TeamMembers[1].Priority != 0.5 {
		t.Errorf("team calendar: %+v", got.Calendar)
	}
	r := call(t, s, "GET", "/calendars/open", access, v, nil)
	if !bytes.Contains(r.body, []byte(`"teamMembers":[]`)) {
		t.Errorf("calendar without a team: %s", r.body)
	}
	checkError(t, call(t, s, "GET", "/calendars/nope", access, v, nil), 400,
		`{"statusCode":400,"message":"Calendar with id nope not found"}`)
	checkError(t, call(t, s, "GET", "/calendars/team", other, v, nil), 403,
		`{"statusCode":403,"message":"The token does not have access to this location"}`)
}

// GET /calendars/events answers a calendar's events that start in the
// range (epoch ms), with the location's offset.
func TestCalendarEvents(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	s.AddCalendar("loc1", "cal1", "Physio")
	s.AddCalendar("loc1", "cal2", "Massage")
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	book := func(cal, start string) string {
		t.Helper()
		r := call(t, s, "POST", "/calendars/events/appointments", access, ghltest.VersionCalendars,
			map[string]any{"calendarId": cal, "locationId": "loc1", "contactId": c.ID, "startTime": start, "toNotify": false})
		var a ghltest.Appointment
		r.decode(t, &a)
		return a.ID
	}
	in := book("cal1", "2025-07-16T16:00:00Z")
	book("cal1", "2025-07-16T18:00:00Z") // after the range
	book("cal2", "2025-07-16T16:00:00Z") // another calendar

	from := time.Date(2025, 7, 16, 15, 0, 0, 0, time.UTC).UnixMilli()
	to := time.Date(2025, 7, 16, 17, 0, 0, 0, time.UTC).UnixMilli()
	q := "/calendars/events?locationId=loc1&calendarId=cal1&startTime=" + strconv.FormatInt(from, 10) + "&endTime=" + strconv.FormatInt(to, 10)
	var got struct {
		Events []struct{ ID, CalendarID, ContactID, StartTime, EndTime string }
	}
	call(t, s, "GET", q, access, ghltest.VersionCalendars, nil).decode(t, &got)
	want := []struct{ ID, CalendarID, ContactID, StartTime, EndTime string }{
		{in, "cal1", c.ID, "2025-07-16T11:00:00-05:00", "2025-07-16T11:30:00-05:00"}} // CDT
	if diff := cmp.Diff(want, got.Events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	checkError(t, call(t, s, "GET", "/calendars/events?locationId=loc1&startTime=1&endTime=2", access, ghltest.VersionCalendars, nil),
		422, `{"statusCode":422,"message":["Either of calendarId, userId or groupId is required"]}`)
	checkError(t, call(t, s, "GET", "/calendars/events?locationId=loc1&calendarId=cal1&startTime=today&endTime=2", access, ghltest.VersionCalendars, nil),
		422, `{"statusCode":422,"message":["startTime must be a number string (in millis)"]}`)
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	other, _, _ := s.IssueToken("loc2")
	ada := s.AddUser(ghltest.User{LocationID: "loc1", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.AddUser(ghltest.User{LocationID: "loc2", Name: "Eve", Email: "eve@example.com"})
	var got struct {
		Users []struct {
			ID, Name, Email, FirstName string
			Roles                      map[string]any
		}
	}
	call(t, s, "GET", "/users/?locationId=loc1", access, ghltest.VersionContacts, nil).decode(t, &got)
	if len(got.Users) != 1 || got.Users[0].ID != ada.ID || got.Users[0].Email != "ada@example.com" ||
		got.Users[0].FirstName != "Ada" || got.Users[0].Roles["role"] != "user" {
		t.Errorf("users of loc1: %+v", got.Users)
	}
	checkError(t, call(t, s, "GET", "/users/?locationId=loc1", other, ghltest.VersionContacts, nil), 403,
		`{"statusCode":403,"message":"The token does not have access to this location"}`)
	checkError(t, call(t, s, "GET", "/users/?locationId=loc1", access, ghltest.VersionCalendars, nil), 400,
		`{"statusCode":400,"message":"Invalid parameter: Version"}`)
}

// An appointment create whose answer is lost (DropAfter) has booked it.
func TestAppointmentCreateLostAnswer(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	s.AddCalendar("loc1", "cal1", "Physio")
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "pat@example.com"})
	s.InjectFault(ghltest.Fault{Path: "/calendars/events/appointments", DropAfter: true, Times: 1})
	body := `{"calendarId":"cal1","locationId":"loc1","contactId":"` + c.ID + `","startTime":"2025-03-03T10:00:00Z","toNotify":false}`
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/calendars/events/appointments", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Version", ghltest.VersionCalendars)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := s.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped create answered %d", resp.StatusCode)
	}
	if n := len(s.Appointments("loc1")); n != 1 || s.Stats().Faults != 1 {
		t.Errorf("%d appointments after a lost answer, want 1 (GHL acted)", n)
	}
}

// Teams and users survive Save and Load.
func TestSaveLoadTeamsAndUsers(t *testing.T) {
	t.Parallel()
	s1, clk := setup(t, ghltest.Options{})
	u := s1.AddUser(ghltest.User{LocationID: "loc1", Name: "Ada", Email: "ada@example.com"})
	s1.AddCalendar("loc1", "team", "Team")
	s1.SetCalendarTeam("team", u.ID)
	var buf bytes.Buffer
	if err := s1.Save(&buf); err != nil {
		t.Fatal(err)
	}
	s2 := ghltest.NewServer(ghltest.Options{ClientID: clientID, ClientSecret: clientSecret, Now: clk.Now})
	defer s2.Close()
	if err := s2.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s1.Users("loc1"), s2.Users("loc1")); diff != "" {
		t.Errorf("Users (-want +got):\n%s", diff)
	}
	access, _, _ := s2.IssueToken("loc1")
	r := call(t, s2, "GET", "/calendars/team", access, ghltest.VersionCalendars, nil)
	if !bytes.Contains(r.body, []byte(`"userId":"`+u.ID+`"`)) {
		t.Errorf("team after load: %s", r.body)
	}
}
