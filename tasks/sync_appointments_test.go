package tasks_test

import (
	"cmp"
	"context"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// ghlClient is a client of the fake with a token of loc's own, for a test
// to act in GHL as the clinic's staff would.
func (e *syncEnv) ghlClient(t *testing.T, loc string) (*ghl.Client, string) {
	t.Helper()
	c, err := ghl.NewClient(ghl.Config{BaseURL: e.Fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	access, _, _ := e.Fake.IssueToken(loc)
	return c, access
}

// Issue 9, test 1 for appointments: appointments deleted in GHL (GHL
// answers their ids 400 "… not found", not 404) are booked again the next
// time they are sent, and a move whose old booking is gone completes;
// nothing is refused.
func TestSyncBooksAgainWhatGHLDeleted(t *testing.T) {
	t.Parallel()
	e := newSyncEnv(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 3, 3)
	e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)

	// Staff delete two of the bookings in GHL; the clinic then changes
	// one and moves the other to another patient.
	c, access := e.ghlClient(t, "loc1")
	byTitle := map[string]string{}
	for _, a := range e.Fake.Appointments("loc1") {
		byTitle[a.Title] = a.ID
	}
	for _, title := range []string{"Session 0", "Session 1"} {
		if _, err := c.Calendars.DeleteEvent(t.Context(), access, byTitle[title]); err != nil {
			t.Fatal(err)
		}
	}
	e.exec(t, `UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, title = 'Session 0, longer' WHERE location_id = 'loc1' AND external_id = 'a-0000'`)
	e.movePatient(t, "a-0001", "p-0002")

	run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
	if run.Failed != 0 || run.Created+run.Updated != 2 || run.Unchanged != 1 {
		t.Errorf("the sync after GHL's deletions: %+v, want 2 sent, none failed", run)
	}
	e.bookedFor(t, 3, map[string]string{"Session 0, longer": "p-0000", "Session 1": "p-0002", "Session 2": "p-0002"})
	st := e.Fake.Stats()
	if st.NotFound["loc1"] < 2 {
		t.Errorf("GHL answered %d not found, want at least the update's and the move's delete: the test did not test", st.NotFound["loc1"])
	}
	var refused int64
	if err := storetest.DB(t, e.DatabaseURL).Model(&store.AppointmentSync{}).
		Where("location_id = 'loc1' AND (failed_hash <> '' OR last_error <> '')").Count(&refused).Error; err != nil {
		t.Fatal(err)
	}
	if refused != 0 {
		t.Errorf("%d appointments recorded as refused", refused)
	}
	before := e.calls("loc1")
	if run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments); run.Unchanged != 3 || e.calls("loc1") != before {
		t.Errorf("the sync after: %+v, %d calls; want 3 unchanged, no call", run, e.calls("loc1")-before)
	}
}

// refusedEvents is GHL refusing the query of a calendar's events.
type refusedEvents struct{ syncer.Calendars }

func (refusedEvents) Events(context.Context, string, ghl.EventsQuery) ([]ghl.Event, *ghl.Response, error) {
	return nil, &ghl.Response{StatusCode: 422}, &ghl.ErrorResponse{StatusCode: 422, Message: "calendarId must be a valid id"}
}

// Issue 9, test 2 for an appointment: a create whose answer is lost is
// found in GHL and not booked again, by the calendar's events (times with
// offsets) or, when GHL refuses that query, among the contact's
// appointments, whose times GHL writes without an offset in the
// location's time zone (read from GHL at the start of the run).
func TestSyncFindsALostAppointmentCreate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		events bool // GET /calendars/events answers
	}{{"calendar events", true}, {"contact's appointments", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSyncEnv(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) {
				if !tc.events {
					h.Calendars = refusedEvents{h.Calendars}
				}
			}, "loc1")
			// Half an hour off UTC, and not the fake's default: a lookup
			// that reads the contact's times in any other zone misses.
			e.Fake.SetLocationInfo("loc1", "Physio Kolkata", "Asia/Kolkata")
			e.seed(t, "loc1", 6, 6)
			e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
			e.Fake.InjectFault(ghltest.Fault{Path: "/calendars/events/appointments", DropAfter: true, Times: 3})

			run := e.mustSync(t, tasks.NewAppointmentsSyncTask, syncer.KindAppointments)
			if run.Created != 6 || run.Failed != 0 {
				t.Errorf("run %+v, want 6 created", run)
			}
			st := e.Fake.Stats()
			if st.Faults < 3 || st.AppointmentCreates["loc1"] != 6 || len(e.Fake.Appointments("loc1")) != 6 {
				t.Errorf("%d faults, %d creates, %d appointments in GHL; want 3 lost answers and no duplicate",
					st.Faults, st.AppointmentCreates["loc1"], len(e.Fake.Appointments("loc1")))
			}
			if n := strings.Count(e.logs.String(), "found the appointment an earlier, unanswered create made"); n != 3 {
				t.Errorf("%d lost creates found, want 3", n)
			}
			lookups := e.Fake.Requests("/contacts/", "loc1") - e.Fake.Requests("/contacts/upsert", "loc1")
			if !tc.events && lookups != 3 {
				t.Errorf("%d lookups among the contacts' appointments, want 3", lookups)
			}
			_, c := e.StoredTokens(t, "loc1")
			if c.Timezone != "Asia/Kolkata" || c.Name != "Physio Kolkata" || c.InfoAt == nil {
				t.Errorf("the location's info as stored: %q %q %v", c.Name, c.Timezone, c.InfoAt)
			}
			e.checkAppointments(t, "loc1", 6, 6, e.checkContacts(t, "loc1", 6))
		})
	}
}

// Issue 9, test 3: 300 appointments over calendars with and without team
// members. Every row whose practitioner maps to a GHL user (by
// ghl_user_id, or by email) is booked with that user; the others get the
// calendar's default user, no owner where the calendar takes none, or,
// on a team calendar without a default, a reason that names the
// practitioner and what to set. No automation runs. Once the calendar has
// a default user, the next sync books the rest.
func TestSyncAssignsPractitioners(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	ctx := context.Background()
	ada := e.Fake.AddUser(ghltest.User{LocationID: "loc1", Name: "Ada Lovelace", Email: "ada@example.com"})
	bob := e.Fake.AddUser(ghltest.User{LocationID: "loc1", Name: "Bob Smith", Email: "bob@example.com"})
	desk := e.Fake.AddUser(ghltest.User{LocationID: "loc1", Name: "Front Desk", Email: "desk@example.com"})
	e.Fake.AddCalendar("loc1", "cal-team", "Team")
	e.Fake.SetCalendarTeam("cal-team", ada.ID, bob.ID)
	e.Fake.AddCalendar("loc1", "cal-desk", "Desk")
	e.Fake.SetCalendarTeam("cal-desk", ada.ID, bob.ID, desk.ID)
	if err := e.Store.SetCalendarDefaultUser(ctx, "loc1", "cal-desk", desk.ID); err != nil {
		t.Fatal(err)
	}
	// cal-loc1, made by newSyncEnv, has no team.
	if err := e.Store.InsertPractitioners(ctx, []store.Practitioner{
		{LocationID: "loc1", ExternalID: "pr-ada", Name: "Dr Ada", Email: "ada@example.com", GHLUserID: ada.ID},
		{LocationID: "loc1", ExternalID: "pr-bob", Name: "Dr Bob", Email: "BOB@example.com"}, // matched by email
		{LocationID: "loc1", ExternalID: "pr-ghost", Name: "Dr Ghost", Email: "ghost@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	calendars := []string{"cal-team", "cal-desk", "cal-loc1"}
	practitioners := []string{"pr-ada", "pr-bob", "pr-ghost", ""}
	e.seed(t, "loc1", 50, 0)
	rows := make([]store.Appointment, n)
	for i := range rows {
		rows[i] = appointment("loc1", i, 50)
		rows[i].CalendarID, rows[i].PractitionerExternalID = calendars[i%3], practitioners[i%4]
	}
	if err := e.Store.InsertAppointments(ctx, rows); err != nil {
		t.Fatal(err)
	}
	mapped := map[string]string{"pr-ada": ada.ID, "pr-bob": bob.ID}
	// want is the owner each row must be booked with; "-" for a row that
	// must fail.
	want := func(i int, teamDefault string) string {
		switch user, ok := mapped[practitioners[i%4]]; {
		case ok:
			return user
		case calendars[i%3] == "cal-desk":
			return desk.ID
		case calendars[i%3] == "cal-team":
			return cmp.Or(teamDefault, "-")
		}
		return ""
	}

	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	booked := map[string]string{}
	for _, a := range e.Fake.Appointments("loc1") {
		booked[a.Title] = a.AssignedUserID
	}
	failed := map[string]string{}
	for _, f := range res.Failed {
		failed[f.ExternalID] = f.Reason
	}
	wantFailed := 0
	for i, r := range rows {
		w := want(i, "")
		if w == "-" {
			wantFailed++
			why := failed[r.ExternalID]
			for _, part := range []string{"calendar cal-team has team members", "practitioners.ghl_user_id", "calendar_settings"} {
				if !strings.Contains(why, part) {
					t.Errorf("%s: reason %q does not say %q", r.ExternalID, why, part)
				}
			}
			if p := practitioners[i%4]; p == "pr-ghost" && !strings.Contains(why, "practitioner pr-ghost (Dr Ghost) has no ghl_user_id and no GHL user of the location has the email ghost@example.com") ||
				p == "" && !strings.Contains(why, "no practitioner_external_id") {
				t.Errorf("%s: reason %q does not name the practitioner", r.ExternalID, why)
			}
			if _, ok := booked[r.Title]; ok {
				t.Errorf("%s booked though its calendar wants an owner it has not", r.ExternalID)
			}
			continue
		}
		if got, ok := booked[r.Title]; !ok || got != w {
			t.Errorf("%s (%s, %q) booked %v with %q, want %q; failed: %s", r.ExternalID, r.CalendarID, r.PractitionerExternalID, ok, got, w, failed[r.ExternalID])
		}
	}
	if res.FailedCount != wantFailed || res.Created != n-wantFailed || wantFailed == 0 {
		t.Errorf("result: %d created, %d failed; want %d and %d", res.Created, res.FailedCount, n-wantFailed, wantFailed)
	}
	st := e.Fake.Stats()
	if st.Notifications["loc1"] != 0 || st.OwnerRefusals["loc1"] != 0 {
		t.Errorf("%d notifications, %d owner refusals by GHL; want none", st.Notifications["loc1"], st.OwnerRefusals["loc1"])
	}
	// Users once, each calendar once, for the whole run.
	if u, c := e.Fake.Requests("/users/", "loc1"), e.Fake.Requests("/calendars/cal-team", "loc1"); u != 1 || c != 1 {
		t.Errorf("%d user lists, %d reads of cal-team; want 1 each", u, c)
	}

	// The failures are not remembered as refusals: the calendar's default
	// user cures them on the next sync.
	if err := e.Store.SetCalendarDefaultUser(ctx, "loc1", "cal-team", bob.ID); err != nil {
		t.Fatal(err)
	}
	res = e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.FailedCount != 0 || res.Created != wantFailed {
		t.Errorf("after cal-team got a default user: %d created, %d failed; want %d, 0", res.Created, res.FailedCount, wantFailed)
	}
	booked = map[string]string{}
	for _, a := range e.Fake.Appointments("loc1") {
		booked[a.Title] = a.AssignedUserID
	}
	for i, r := range rows {
		if got, w := booked[r.Title], want(i, bob.ID); got != w {
			t.Errorf("%s booked with %q, want %q", r.ExternalID, got, w)
		}
	}
	if len(booked) != n || e.Fake.Notifications("loc1") != 0 {
		t.Errorf("%d appointments in GHL, %d notifications; want %d, 0", len(booked), e.Fake.Notifications("loc1"), n)
	}
}

// A location whose settings ask for GHL's automations gets them: toNotify
// is left to GHL. Turning the setting on sends nothing again.
func TestSyncNotifiesOnlyWhenTheLocationAsks(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1", "loc2")
	if err := e.Store.SaveSettings(context.Background(), store.LocationSettings{LocationID: "loc2", Notify: true}); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		e.seed(t, loc, 5, 10)
		e.syncLocation(t, tasks.NewAppointmentsSyncTask, loc)
	}
	if a, b := e.Fake.Notifications("loc1"), e.Fake.Notifications("loc2"); a != 0 || b != 10 {
		t.Errorf("notifications: loc1 %d, loc2 %d; want 0 and 10", a, b)
	}
	if err := e.Store.SaveSettings(context.Background(), store.LocationSettings{LocationID: "loc1", Notify: true}); err != nil {
		t.Fatal(err)
	}
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Unchanged != 10 {
		t.Errorf("after turning notify on: %+v, want all 10 unchanged", res)
	}
	if n := e.Fake.Notifications("loc1"); n != 0 {
		t.Errorf("%d notifications for loc1 after the setting changed, want 0", n)
	}
}

// An appointment whose calendar GHL does not know fails for good with a
// reason that names it; the rest go on.
func TestSyncRefusesAnUnknownCalendar(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 3, 3)
	e.exec(t, `UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, calendar_id = 'cal-gone' WHERE external_id = 'a-0001'`)
	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.Created != 2 || res.FailedCount != 1 || res.Failed[0].Reason != "calendar_id cal-gone: GHL has no such calendar" {
		t.Errorf("result %+v", res)
	}
	before := e.calls("loc1")
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.FailedCount != 1 || e.calls("loc1") != before {
		t.Errorf("second sync: %+v, %d calls; want the refusal remembered, no call", res, e.calls("loc1")-before)
	}
}
