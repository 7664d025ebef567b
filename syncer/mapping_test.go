package syncer

// Tests of the engine's pure functions: how a clinic row becomes what is
// sent to GHL (contactFor, appointmentFor), the content hash that decides
// whether a record changed (contentHash), how a record's error is sorted
// (classify) and why a location is not synced (NotSyncable).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

const testLoc = "loc1"

// wantRefusal checks that err is a *refusal whose text holds every one of
// parts.
func wantRefusal(t *testing.T, err error, parts []string) {
	t.Helper()
	var rf *refusal
	if !errors.As(err, &rf) {
		t.Fatalf("error = %v (%T), want a *refusal", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(rf.Error(), p) {
			t.Errorf("refusal %q does not contain %q", rf.Error(), p)
		}
	}
}

func TestContactFor(t *testing.T) {
	t.Parallel()
	// dob is a patient with only a name and a date of birth.
	dob := func(v string) store.PatientRow {
		return store.PatientRow{ExternalID: "p1", FirstName: "Ada", DateOfBirth: v}
	}
	// contact is the contact of such a patient, born on day ("" for none).
	contact := func(day string) *ghl.Contact {
		return &ghl.Contact{LocationID: testLoc, FirstName: "Ada", DateOfBirth: day}
	}

	tests := []struct {
		name string
		row  store.PatientRow
		want *ghl.Contact
		// wantRefusal, when set, are parts of the refusal's text.
		wantRefusal []string
	}{
		{
			name: "every field trimmed",
			row: store.PatientRow{
				ExternalID:  " p1 ",
				FirstName:   "  Ada ",
				LastName:    "\tLovelace\n",
				Email:       " ada@example.com ",
				Phone:       " +44 20 7946 0000 ",
				DateOfBirth: " 1815-12-10 ",
				Address1:    " 12 St James's Square ",
				City:        " London ",
				PostalCode:  " SW1Y 4JH ",
				Country:     " GB ",
				// The sync state is not part of the contact.
				Sync: store.PatientSync{LocationID: testLoc, ExternalID: "p1", ContactID: "c1"},
			},
			want: &ghl.Contact{
				LocationID:  testLoc,
				FirstName:   "Ada",
				LastName:    "Lovelace",
				Email:       "ada@example.com",
				Phone:       "+44 20 7946 0000",
				DateOfBirth: "1815-12-10",
				Address1:    "12 St James's Square",
				City:        "London",
				PostalCode:  "SW1Y 4JH",
				Country:     "GB",
			},
		},
		{
			// Left out, so that a value cleared in the clinic system stays
			// in GHL.
			name: "empty and blank fields left out",
			row: store.PatientRow{
				ExternalID: "p1",
				FirstName:  "Ada",
				LastName:   "",
				Email:      "   ",
				Phone:      "\t",
				Address1:   "\n",
				City:       " ",
				PostalCode: "",
				Country:    "  ",
			},
			want: contact(""),
		},
		{name: "NULL date of birth left out", row: dob(""), want: contact("")},
		{name: "blank date of birth left out", row: dob(" \t "), want: contact("")},

		// The forms store.ParseTime reads, each sent as YYYY-MM-DD.
		{name: "date", row: dob("1980-05-17"), want: contact("1980-05-17")},
		{name: "RFC 3339 midnight (a DATE column through a driver)", row: dob("1980-05-17T00:00:00Z"), want: contact("1980-05-17")},
		{name: "RFC 3339 with fraction", row: dob("1980-05-17T00:00:00.000000Z"), want: contact("1980-05-17")},
		{name: "SQLite datetime", row: dob("1980-05-17 00:00:00"), want: contact("1980-05-17")},
		{name: "SQLite datetime with fraction", row: dob("1980-05-17 23:59:59.999"), want: contact("1980-05-17")},
		{name: "SQLite datetime with offset", row: dob("1980-05-17 00:00:00+00:00"), want: contact("1980-05-17")},
		{name: "ISO datetime without offset", row: dob("1980-05-17T08:30:00"), want: contact("1980-05-17")},
		{name: "minutes, space", row: dob("1980-05-17 08:30"), want: contact("1980-05-17")},
		{name: "minutes, T", row: dob("1980-05-17T08:30"), want: contact("1980-05-17")},
		{name: "Unix seconds", row: dob("327369600"), want: contact("1980-05-17")},
		{
			// The instant is taken to UTC before its date is kept: a
			// late-evening time west of Greenwich becomes the next day.
			name: "offset taken to UTC first",
			row:  dob("1980-05-17T23:30:00-05:00"),
			want: contact("1980-05-18"),
		},
		{
			// Current behaviour, questionable: a compact YYYYMMDD date is
			// a whole number, so it is read as Unix seconds.
			name: "compact YYYYMMDD read as Unix seconds",
			row:  dob("19800517"),
			want: contact("1970-08-18"),
		},

		// Refused: the refusal names the column and the value as read.
		{
			name:        "day first refused",
			row:         dob("17/05/1980"),
			wantRefusal: []string{"date_of_birth", `"17/05/1980"`},
		},
		{
			name:        "words refused",
			row:         dob("May 17, 1980"),
			wantRefusal: []string{"date_of_birth", `"May 17, 1980"`},
		},
		{
			name:        "no such day refused",
			row:         dob("1980-02-30"),
			wantRefusal: []string{"date_of_birth", `"1980-02-30"`},
		},
		{
			name:        "placeholder refused, untrimmed in the reason",
			row:         dob(" unknown "),
			wantRefusal: []string{"date_of_birth", `" unknown "`, "YYYY-MM-DD"},
		},

		// What GHL should never get: control characters, invalid UTF-8,
		// values beyond any real one. The reason names the column and why,
		// not the value.
		{
			name:        "NUL in a name refused",
			row:         store.PatientRow{ExternalID: "p1", FirstName: "Ada\x00Lovelace"},
			wantRefusal: []string{"first_name", "control character U+0000", "byte 3"},
		},
		{
			name:        "newline inside an email refused",
			row:         store.PatientRow{ExternalID: "p1", FirstName: "Ada", Email: "ada@example.com\nbcc: x@y.z"},
			wantRefusal: []string{"email", "U+000A"},
		},
		{
			name:        "escape sequence in a city refused",
			row:         store.PatientRow{ExternalID: "p1", FirstName: "Ada", City: "London\x1b[2J"},
			wantRefusal: []string{"city", "U+001B"},
		},
		{
			name:        "invalid UTF-8 in a last name refused",
			row:         store.PatientRow{ExternalID: "p1", LastName: "Lovel\xe9ce"},
			wantRefusal: []string{"last_name", "not valid UTF-8"},
		},
		{
			name:        "1 MB first name refused",
			row:         store.PatientRow{ExternalID: "p1", FirstName: strings.Repeat("a", 1<<20)},
			wantRefusal: []string{"first_name", "1048576 characters", "at most 255"},
		},
		{
			name:        "email over 254 refused",
			row:         store.PatientRow{ExternalID: "p1", Email: strings.Repeat("a", 243) + "@example.com"},
			wantRefusal: []string{"email", "255 characters", "at most 254"},
		},
		{
			name:        "phone over 64 refused",
			row:         store.PatientRow{ExternalID: "p1", Phone: strings.Repeat("1", 65)},
			wantRefusal: []string{"phone", "at most 64"},
		},
		{
			name:        "address over 1000 refused",
			row:         store.PatientRow{ExternalID: "p1", Address1: strings.Repeat("x", 1001)},
			wantRefusal: []string{"address1", "at most 1000"},
		},
		{
			name:        "postal code over 32 refused",
			row:         store.PatientRow{ExternalID: "p1", PostalCode: strings.Repeat("9", 33)},
			wantRefusal: []string{"postal_code", "at most 32"},
		},
		{
			name:        "country over 64 refused",
			row:         store.PatientRow{ExternalID: "p1", Country: strings.Repeat("G", 65)},
			wantRefusal: []string{"country", "at most 64"},
		},
		{
			// The limit counts characters, not bytes, and is checked after
			// trimming.
			name: "name of 255 characters in 510 bytes, padded, accepted",
			row:  store.PatientRow{ExternalID: "p1", FirstName: "  " + strings.Repeat("é", 255) + "  "},
			want: &ghl.Contact{LocationID: testLoc, FirstName: strings.Repeat("é", 255)},
		},
		{
			// Tabs and newlines around a value are trimmed, not refused.
			name: "surrounding tabs and newlines trimmed, not refused",
			row:  store.PatientRow{ExternalID: "p1", FirstName: "\tAda\r\n"},
			want: contact(""),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := tc.row
			got, err := contactFor(testLoc, &row)
			if tc.wantRefusal != nil {
				wantRefusal(t, err, tc.wantRefusal)
				if got != nil {
					t.Errorf("contactFor() = %+v with the refusal, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("contactFor() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("contactFor() mismatch (-want +got):\n%s", diff)
			}
			// Nothing is sent empty: an empty value would clear GHL's.
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var sent map[string]any
			if err := json.Unmarshal(b, &sent); err != nil {
				t.Fatal(err)
			}
			for k, v := range sent {
				if v == "" {
					t.Errorf("contact sent as %s: %q is empty, want it left out", b, k)
				}
			}
		})
	}
}

func TestAppointmentFor(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	// row is a valid appointment with edit applied.
	row := func(edit func(a *store.AppointmentRow)) store.AppointmentRow {
		a := store.AppointmentRow{
			ExternalID:        "a1",
			PatientExternalID: "p1",
			CalendarID:        "cal1",
			StartsAt:          "2024-05-01T10:00:00Z",
			EndsAt:            "2024-05-01T10:30:00Z",
			Title:             "Check-up",
			Status:            store.AppointmentBooked,
			// The patient's contact is known, but appointmentFor leaves
			// the contact out: GHL takes it on a create only.
			ContactID: "c1",
		}
		if edit != nil {
			edit(&a)
		}
		return a
	}
	// want is what row(nil) maps to, with edit applied.
	want := func(edit func(g *ghl.Appointment)) *ghl.Appointment {
		g := &ghl.Appointment{
			CalendarID:               "cal1",
			LocationID:               testLoc,
			StartTime:                at("2024-05-01T10:00:00Z"),
			EndTime:                  at("2024-05-01T10:30:00Z"),
			Title:                    "Check-up",
			AppointmentStatus:        ghl.AppointmentStatusNew,
			IgnoreDateRange:          true,
			IgnoreFreeSlotValidation: true,
		}
		if edit != nil {
			edit(g)
		}
		return g
	}
	status := func(s string) func(a *store.AppointmentRow) {
		return func(a *store.AppointmentRow) { a.Status = s }
	}
	ghlStatus := func(s string) func(g *ghl.Appointment) {
		return func(g *ghl.Appointment) { g.AppointmentStatus = s }
	}
	times := func(start, end string) func(a *store.AppointmentRow) {
		return func(a *store.AppointmentRow) { a.StartsAt, a.EndsAt = start, end }
	}
	ghlTimes := func(start, end string) func(g *ghl.Appointment) {
		return func(g *ghl.Appointment) { g.StartTime, g.EndTime = at(start), at(end) }
	}

	tests := []struct {
		name string
		row  store.AppointmentRow
		want *ghl.Appointment
		// wantRefusal, when set, are parts of the refusal's text.
		wantRefusal []string
	}{
		{name: "booked is new", row: row(nil), want: want(nil)},

		// Every clinic status.
		{name: "status booked", row: row(status(store.AppointmentBooked)), want: want(ghlStatus(ghl.AppointmentStatusNew))},
		{name: "status confirmed", row: row(status(store.AppointmentConfirmed)), want: want(ghlStatus(ghl.AppointmentStatusConfirmed))},
		{name: "status cancelled", row: row(status(store.AppointmentCancelled)), want: want(ghlStatus(ghl.AppointmentStatusCancelled))},
		{name: "status attended is showed", row: row(status(store.AppointmentAttended)), want: want(ghlStatus(ghl.AppointmentStatusShowed))},
		{name: "status no_show is noshow", row: row(status(store.AppointmentNoShow)), want: want(ghlStatus(ghl.AppointmentStatusNoShow))},
		{name: "status case and space ignored", row: row(status(" Confirmed ")), want: want(ghlStatus(ghl.AppointmentStatusConfirmed))},
		{name: "status upper case", row: row(status("NO_SHOW")), want: want(ghlStatus(ghl.AppointmentStatusNoShow))},

		// Unknown statuses: the reason quotes the value and lists the
		// statuses the clinic may use.
		{
			name:        "unknown status refused",
			row:         row(status("pending")),
			wantRefusal: []string{`status "pending"`, "booked, confirmed, cancelled, attended, no_show"},
		},
		{
			name:        "empty status refused",
			row:         row(status("")),
			wantRefusal: []string{`status ""`},
		},
		{
			// GHL's spelling is not the clinic's.
			name:        "GHL status noshow refused",
			row:         row(status(ghl.AppointmentStatusNoShow)),
			wantRefusal: []string{`status "noshow"`},
		},
		{
			name:        "no-show with a hyphen refused",
			row:         row(status("no-show")),
			wantRefusal: []string{`status "no-show"`},
		},

		// Calendar, patient, title.
		{
			name: "calendar id and title trimmed",
			row:  row(func(a *store.AppointmentRow) { a.CalendarID, a.Title = " cal1\t", "  Check-up \n" }),
			want: want(nil),
		},
		{
			name: "empty title sent empty",
			row:  row(func(a *store.AppointmentRow) { a.Title = "  " }),
			want: want(func(g *ghl.Appointment) { g.Title = "" }),
		},
		{
			name:        "blank calendar id refused",
			row:         row(func(a *store.AppointmentRow) { a.CalendarID = " " }),
			wantRefusal: []string{"calendar_id is empty"},
		},
		{
			name:        "blank patient refused",
			row:         row(func(a *store.AppointmentRow) { a.PatientExternalID = "\t" }),
			wantRefusal: []string{"patient_external_id is empty"},
		},

		// Times: the forms store.ParseTime reads, sent as whole seconds in
		// UTC.
		{
			name: "offsets taken to UTC",
			row:  row(times("2024-05-01T12:00:00+02:00", "2024-05-01T06:30:00-04:00")),
			want: want(nil),
		},
		{
			name: "SQLite datetime, no offset, is UTC",
			row:  row(times("2024-05-01 10:00:00", "2024-05-01 10:30:00")),
			want: want(nil),
		},
		{
			name: "minutes",
			row:  row(times("2024-05-01 10:00", "2024-05-01T10:30")),
			want: want(nil),
		},
		{
			name: "Unix seconds",
			row:  row(times("1714557600", "1714559400")),
			want: want(nil),
		},
		{
			name: "fractions of a second dropped",
			row:  row(times("2024-05-01T10:00:00.999Z", "2024-05-01 10:30:00.5")),
			want: want(nil),
		},
		{
			name: "dates are midnight UTC",
			row:  row(times("2024-05-01", "2024-05-02")),
			want: want(ghlTimes("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z")),
		},
		{
			name: "spaces around times",
			row:  row(times(" 2024-05-01T10:00:00Z ", "\t2024-05-01T10:30:00Z\n")),
			want: want(nil),
		},
		{
			name:        "missing starts_at refused",
			row:         row(times("", "2024-05-01T10:30:00Z")),
			wantRefusal: []string{`starts_at "" is not a time`},
		},
		{
			name:        "missing ends_at refused",
			row:         row(times("2024-05-01T10:00:00Z", "")),
			wantRefusal: []string{`ends_at "" is not a time`},
		},
		{
			name:        "unreadable starts_at refused",
			row:         row(times("01/05/2024 10:00", "2024-05-01T10:30:00Z")),
			wantRefusal: []string{`starts_at "01/05/2024 10:00" is not a time`},
		},
		{
			name:        "unreadable ends_at refused",
			row:         row(times("2024-05-01T10:00:00Z", "half past ten")),
			wantRefusal: []string{`ends_at "half past ten" is not a time`},
		},
		{
			name:        "reversed window refused",
			row:         row(times("2024-05-01T10:30:00Z", "2024-05-01T10:00:00Z")),
			wantRefusal: []string{"ends_at 2024-05-01T10:00:00Z is not after starts_at 2024-05-01T10:30:00Z"},
		},
		{
			name:        "empty window refused",
			row:         row(times("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z")),
			wantRefusal: []string{"ends_at 2024-05-01T10:00:00Z is not after starts_at 2024-05-01T10:00:00Z"},
		},
		{
			// The window is checked on the whole seconds sent.
			name:        "window within one second refused",
			row:         row(times("2024-05-01T10:00:00.1Z", "2024-05-01T10:00:00.9Z")),
			wantRefusal: []string{"is not after starts_at 2024-05-01T10:00:00Z"},
		},
		{
			// The reason is given in UTC, as the times would be sent.
			name:        "reversed window reported in UTC",
			row:         row(times("2024-05-01T12:30:00+02:00", "2024-05-01T12:00:00+02:00")),
			wantRefusal: []string{"ends_at 2024-05-01T10:00:00Z is not after starts_at 2024-05-01T10:30:00Z"},
		},
		{
			name:        "NUL in the title refused",
			row:         row(func(a *store.AppointmentRow) { a.Title = "Check\x00up" }),
			wantRefusal: []string{"title", "U+0000"},
		},
		{
			name:        "1 MB title refused",
			row:         row(func(a *store.AppointmentRow) { a.Title = strings.Repeat("t", 1<<20) }),
			wantRefusal: []string{"title", "1048576 characters", "at most 255"},
		},
		{
			name:        "invalid UTF-8 in the title refused",
			row:         row(func(a *store.AppointmentRow) { a.Title = "R\xe9sum\xe9" }),
			wantRefusal: []string{"title", "not valid UTF-8"},
		},
		{
			name:        "control character in the calendar id refused",
			row:         row(func(a *store.AppointmentRow) { a.CalendarID = "cal\x01" }),
			wantRefusal: []string{"calendar_id", "U+0001"},
		},
		{
			name:        "calendar id over 255 refused",
			row:         row(func(a *store.AppointmentRow) { a.CalendarID = strings.Repeat("c", 256) }),
			wantRefusal: []string{"calendar_id", "at most 255"},
		},
		{
			name: "title of 255 characters accepted",
			row:  row(func(a *store.AppointmentRow) { a.Title = strings.Repeat("t", 255) }),
			want: want(func(g *ghl.Appointment) { g.Title = strings.Repeat("t", 255) }),
		},
		{
			// The status is checked first: its reason is the one given.
			name:        "status before times",
			row:         row(func(a *store.AppointmentRow) { a.Status, a.StartsAt = "pending", "" }),
			wantRefusal: []string{`status "pending"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := tc.row
			got, err := appointmentFor(testLoc, &row)
			if tc.wantRefusal != nil {
				wantRefusal(t, err, tc.wantRefusal)
				if got != nil {
					t.Errorf("appointmentFor() = %+v with the refusal, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("appointmentFor() error = %v", err)
			}
			// cmp compares times with Equal; the zone and the fraction are
			// checked below, since the hash sees them.
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("appointmentFor() mismatch (-want +got):\n%s", diff)
			}
			for name, v := range map[string]time.Time{"StartTime": got.StartTime, "EndTime": got.EndTime} {
				if v.Location() != time.UTC || v.Nanosecond() != 0 {
					t.Errorf("%s = %s, want whole seconds in UTC", name, v.Format(time.RFC3339Nano+" MST"))
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Unix(0, 0))
	t.Cleanup(cancelExpired)

	status := func(code int) error {
		return &ghl.ErrorResponse{StatusCode: code, Message: "m", Endpoint: "contacts.upsert"}
	}
	wrap := func(err error) error { return fmt.Errorf("syncing a1: %w", err) }

	tests := []struct {
		name string
		// ctx is the context the error came under; nil for a live one.
		ctx                context.Context
		err                error
		refused, temporary bool
	}{
		// Refused: the record is reported and not sent again until it
		// changes.
		{name: "refusal: the record cannot be sent", err: &refusal{reason: "calendar_id is empty"}, refused: true},
		{name: "wrapped refusal: still the record's", err: wrap(&refusal{reason: "patient p1: no contact"}), refused: true},
		{name: "duplicate event: GHL's id is another appointment's", err: store.ErrDuplicateEvent, refused: true},
		{name: "wrapped duplicate event, as appointmentSent returns it", err: fmt.Errorf("recording GHL appointment e1: %w", store.ErrDuplicateEvent), refused: true},
		{name: "400: GHL refused the record", err: status(400), refused: true},
		// pushPatient and pushAppointment handle the 404 of an update; one
		// that reaches classify (a create into a missing calendar, say) is
		// the record's.
		{name: "404: GHL refused the record", err: status(404), refused: true},
		{name: "409: GHL refused the record", err: status(409), refused: true},
		{name: "422: GHL refused the record", err: status(422), refused: true},
		{name: "wrapped 422: GHL refused the record", err: wrap(status(422)), refused: true},
		// "Location is not active" is the location's state, not the
		// record's: the run stops (as inactive) and no record is refused.
		{
			name: "400 location inactive: stops the run, the record is not refused",
			err:  &ghl.ErrorResponse{StatusCode: 400, Message: "Location is not active", Err: ghl.ErrLocationInactive},
		},

		// Temporary: the record is tried again.
		{name: "408: GHL timed out, temporary", err: status(408), temporary: true},
		{name: "500: GHL failed, temporary", err: status(500), temporary: true},
		{name: "502: GHL's gateway failed, temporary", err: status(502), temporary: true},
		{name: "503: GHL unavailable, temporary", err: status(503), temporary: true},
		{name: "wrapped 503: temporary", err: wrap(status(503)), temporary: true},
		{name: "unanswered: the answer was cut short, temporary", err: &unanswered{err: io.ErrUnexpectedEOF}, temporary: true},
		{name: "wrapped unanswered: temporary", err: wrap(&unanswered{err: io.ErrUnexpectedEOF}), temporary: true},
		// session.call wraps every failed call that got no GHL status; why
		// it failed does not matter.
		{name: "unanswered for any reason: temporary", err: &unanswered{err: errors.New("tls: bad record MAC")}, temporary: true},

		// Neither: the location, not the record, so the run stops.
		// ghl.Temporary calls a 429 temporary; classify stops the run so
		// that the task waits what GHL asked.
		{name: "429: the location's rate limit stops the run", err: &ghl.RateLimitError{RetryAfter: 10 * time.Second}},
		{name: "wrapped 429: stops the run", err: wrap(&ghl.RateLimitError{RetryAfter: time.Minute})},
		// session.call refreshed the token and retried once already.
		{name: "401 unauthorized after the retry: the token, stops the run", err: &ghl.ErrorResponse{StatusCode: 401, Err: ghl.ErrUnauthorized}},
		{name: "401 of another kind: the caller, stops the run", err: status(401)},
		{name: "401 invalid grant: the caller, stops the run", err: &ghl.ErrorResponse{StatusCode: 401, Err: ghl.ErrInvalidGrant}},
		{name: "403: no access to the location, stops the run", err: status(403)},
		{name: "database error stops the run", err: errors.New("pq: could not serialize access")},
		// Not wrapped in *unanswered, so not from a GHL call.
		{name: "bare EOF (the database's) stops the run", err: io.ErrUnexpectedEOF},
		{name: "deadline of another operation stops the run", err: wrap(context.DeadlineExceeded)},
		{name: "lost lock stops the run", err: wrap(context.Canceled)},
		{name: "nil is neither", err: nil},

		// Under a context already done, nothing is the record's: the run
		// is stopping (its deadline, a lost lock, shutdown).
		{name: "canceled context: refusal stops the run", ctx: canceled, err: &refusal{reason: "x"}},
		{name: "canceled context: duplicate event stops the run", ctx: canceled, err: store.ErrDuplicateEvent},
		{name: "canceled context: 422 stops the run", ctx: canceled, err: status(422)},
		{name: "canceled context: 503 stops the run", ctx: canceled, err: status(503)},
		{name: "canceled context: unanswered stops the run", ctx: canceled, err: &unanswered{err: context.Canceled}},
		{name: "canceled context: database error stops the run", ctx: canceled, err: errors.New("pq: canceling statement")},
		{name: "expired deadline: 500 stops the run", ctx: expired, err: status(500)},
		{name: "expired deadline: unanswered stops the run", ctx: expired, err: &unanswered{err: context.DeadlineExceeded}},
		{name: "expired deadline: refusal stops the run", ctx: expired, err: &refusal{reason: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx
			}
			refused, temporary := classify(ctx, tc.err)
			if refused != tc.refused || temporary != tc.temporary {
				t.Errorf("classify(%v) = (refused %t, temporary %t), want (%t, %t)",
					tc.err, refused, temporary, tc.refused, tc.temporary)
			}
		})
	}
}

func TestNotSyncable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   store.Status
		userType string
		// syncable: the reason is "". Else it starts with prefix and holds
		// store.ConnectPath exactly when connect.
		syncable bool
		prefix   string
		connect  bool
	}{
		{name: "active location synced", status: store.StatusActive, userType: store.UserTypeLocation, syncable: true},
		{name: "active, user type unset, synced", status: store.StatusActive, syncable: true},
		{name: "needs_reauth: connect it again", status: store.StatusNeedsReauth, userType: store.UserTypeLocation, prefix: "needs_reauth: ", connect: true},
		// Reconnecting does not help an inactive location: it is synced
		// again once GHL reactivates it.
		{name: "inactive: wait", status: store.StatusInactive, userType: store.UserTypeLocation, prefix: "inactive: "},
		{name: "uninstalled: connect it again", status: store.StatusUninstalled, userType: store.UserTypeLocation, prefix: "uninstalled: ", connect: true},
		{name: "unknown status not synced", status: "suspended", userType: store.UserTypeLocation, prefix: "suspended: "},
		{name: "agency token not synced", status: store.StatusActive, userType: store.UserTypeCompany, prefix: "agency (Company) token"},
		// The token's type is checked first: reconnecting an agency token
		// would not make it a location's.
		{name: "agency token needing reauth: the type is the reason", status: store.StatusNeedsReauth, userType: store.UserTypeCompany, prefix: "agency (Company) token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &store.Credential{LocationID: testLoc, UserType: tc.userType, Status: tc.status}
			got := NotSyncable(c)
			if tc.syncable {
				if got != "" {
					t.Errorf("NotSyncable() = %q, want \"\"", got)
				}
				return
			}
			if got == "" || !strings.HasPrefix(got, tc.prefix) {
				t.Errorf("NotSyncable() = %q, want a reason starting with %q", got, tc.prefix)
			}
			if has := strings.Contains(got, store.ConnectPath); has != tc.connect {
				t.Errorf("NotSyncable() = %q: contains %s = %t, want %t", got, store.ConnectPath, has, tc.connect)
			}
		})
	}
}

func TestContentHash(t *testing.T) {
	t.Parallel()
	patient := store.PatientRow{ExternalID: "p1", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", DateOfBirth: "1815-12-10"}
	// contact maps patient with edit applied.
	contact := func(edit func(p *store.PatientRow)) *ghl.Contact {
		t.Helper()
		p := patient
		if edit != nil {
			edit(&p)
		}
		c, err := contactFor(testLoc, &p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// appointment is what an appointment's hash covers, with edit applied
	// to the row.
	appointment := func(edit func(a *store.AppointmentRow)) appointmentContent {
		t.Helper()
		a := store.AppointmentRow{ExternalID: "a1", PatientExternalID: "p1", CalendarID: "cal1",
			StartsAt: "2024-05-01T10:00:00Z", EndsAt: "2024-05-01T10:30:00Z", Title: "Check-up", Status: store.AppointmentBooked}
		if edit != nil {
			edit(&a)
		}
		ga, err := appointmentFor(testLoc, &a)
		if err != nil {
			t.Fatal(err)
		}
		return contentOf(ga, &a)
	}

	type hashed struct {
		mapping string
		v       any
	}
	tests := []struct {
		name string
		a, b hashed
		same bool
	}{
		{
			name: "same contact, mapped twice: unchanged",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{contactMapping, contact(nil)},
			same: true,
		},
		{
			// Only what is sent counts.
			name: "same contact from a row with other spacing: unchanged",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{contactMapping, contact(func(p *store.PatientRow) { p.FirstName, p.DateOfBirth = " Ada ", "1815-12-10 00:00:00" })},
			same: true,
		},
		{
			name: "changed phone: changed",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{contactMapping, contact(func(p *store.PatientRow) { p.Phone = "+44 20 7946 0000" })},
		},
		{
			name: "changed date of birth: changed",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{contactMapping, contact(func(p *store.PatientRow) { p.DateOfBirth = "1815-12-11" })},
		},
		{
			name: "cleared email: changed",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{contactMapping, contact(func(p *store.PatientRow) { p.Email = "" })},
		},
		{
			// A new mapping version sends every record again.
			name: "changed mapping version: changed",
			a:    hashed{contactMapping, contact(nil)},
			b:    hashed{"contact/3", contact(nil)},
		},
		{
			name: "same appointment: unchanged",
			a:    hashed{appointmentMapping, appointment(nil)},
			b:    hashed{appointmentMapping, appointment(nil)},
			same: true,
		},
		{
			// appointmentFor sends UTC whole seconds, so the hash does not
			// see how the clinic wrote the instant.
			name: "same appointment at another offset: unchanged",
			a:    hashed{appointmentMapping, appointment(nil)},
			b: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.StartsAt, a.EndsAt = "2024-05-01T12:00:00.250+02:00", "2024-05-01 10:30:00"
			})},
			same: true,
		},
		{
			name: "moved start: changed",
			a:    hashed{appointmentMapping, appointment(nil)},
			b:    hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) { a.StartsAt = "2024-05-01T09:45:00Z" })},
		},
		{
			name: "changed status: changed",
			a:    hashed{appointmentMapping, appointment(nil)},
			b:    hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) { a.Status = store.AppointmentCancelled })},
		},
		{
			// appointmentFor leaves the patient out; the hash covers it so
			// that a change of patient moves the appointment.
			name: "changed patient: changed",
			a:    hashed{appointmentMapping, appointment(nil)},
			b:    hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) { a.PatientExternalID = "p2" })},
		},
		{
			// Mapping a practitioner, or giving the calendar a default
			// user, sends the appointment again, with its owner.
			name: "practitioner mapped to a GHL user: changed",
			a: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.PractitionerExternalID, a.Practitioner = "pr1", &store.PractitionerRow{Name: "Dr Ada", Email: "ada@example.com"}
			})},
			b: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.PractitionerExternalID, a.Practitioner = "pr1", &store.PractitionerRow{Name: "Dr Ada", Email: "ada@example.com", GHLUserID: "u1"}
			})},
		},
		{
			name: "calendar given a default user: changed",
			a:    hashed{appointmentMapping, appointment(nil)},
			b:    hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) { a.DefaultUserID = "u9" })},
		},
		{
			name: "practitioner added to the practitioners table: changed",
			a:    hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) { a.PractitionerExternalID = "pr1" })},
			b: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.PractitionerExternalID, a.Practitioner = "pr1", &store.PractitionerRow{}
			})},
		},
		{
			// The name only words reasons; the email is matched as GHL does,
			// whatever its case.
			name: "practitioner renamed, email recased: unchanged",
			a: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.PractitionerExternalID, a.Practitioner = "pr1", &store.PractitionerRow{Name: "Dr Ada", Email: "ada@example.com"}
			})},
			b: hashed{appointmentMapping, appointment(func(a *store.AppointmentRow) {
				a.PractitionerExternalID, a.Practitioner = "pr1", &store.PractitionerRow{Name: "Ada L.", Email: " Ada@Example.com"}
			})},
			same: true,
		},
		{
			name: "appointment/2 against the current version: changed",
			a:    hashed{"appointment/2", appointment(nil)},
			b:    hashed{appointmentMapping, appointment(nil)},
		},
		{
			name: "appointment/1 against the current version: changed",
			a:    hashed{"appointment/1", appointment(nil)},
			b:    hashed{appointmentMapping, appointment(nil)},
		},
	}
	hexHash := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := contentHash(tc.a.mapping, tc.a.v), contentHash(tc.b.mapping, tc.b.v)
			for _, h := range []string{a, b} {
				if !hexHash.MatchString(h) {
					t.Errorf("contentHash() = %q, want 64 lower-case hex digits (SHA-256)", h)
				}
			}
			if same := a == b; same != tc.same {
				t.Errorf("contentHash(%q, %+v) = %s\ncontentHash(%q, %+v) = %s\nsame = %t, want %t",
					tc.a.mapping, tc.a.v, a, tc.b.mapping, tc.b.v, b, same, tc.same)
			}
		})
	}

	// The hash is stored: one that changed between releases would send
	// every record again. It is SHA-256 of the mapping, a NUL and the JSON.
	t.Run("stable across releases", func(t *testing.T) {
		t.Parallel()
		const want = "3c55b2bdb4f11ac2ee034a44c30b14d9c222155c49dff22251d20c8ca8334691"
		if got := contentHash("contact/1", &ghl.Contact{LocationID: "loc1", FirstName: "Ada"}); got != want {
			t.Errorf("contentHash() = %s, want %s", got, want)
		}
	})

	// Only the package's own plain structs are hashed; anything else is a
	// programming error.
	t.Run("unhashable value panics", func(t *testing.T) {
		t.Parallel()
		defer func() {
			if recover() == nil {
				t.Error("contentHash(a channel) did not panic")
			}
		}()
		contentHash(contactMapping, make(chan int))
	})
}

// TestStopOutcome: the error that stopped a run decides its outcome, and
// whether the run is worth retrying (ErrFinal) or waits what GHL asked.
func TestStopOutcome(t *testing.T) {
	t.Parallel()
	db := errors.New("database is down")
	tests := []struct {
		name      string
		err       error
		outcome   string
		final     bool
		rateLimit bool
	}{
		{name: "status needs_reauth", err: &statusError{status: store.StatusNeedsReauth, reason: "needs_reauth: …"}, outcome: OutcomeNeedsReauth, final: true},
		{name: "agency token: an error, not a state", err: &statusError{status: store.StatusActive, reason: "agency"}, outcome: OutcomeError, final: true},
		{name: "429 waits", err: fmt.Errorf("call: %w", &ghl.RateLimitError{RetryAfter: 7 * time.Second}), outcome: OutcomeRateLimited, rateLimit: true},
		{name: "refresh refused for good", err: fmt.Errorf("x: %w", refresh.ErrNeedsReauth), outcome: OutcomeNeedsReauth, final: true},
		{name: "refresh says inactive", err: fmt.Errorf("x: %w", refresh.ErrInactive), outcome: OutcomeInactive, final: true},
		{name: "an API call says inactive", err: &ghl.ErrorResponse{StatusCode: 400, Message: "Location is not active", Err: ghl.ErrLocationInactive}, outcome: OutcomeInactive, final: true},
		{name: "anything else is retried", err: db, outcome: OutcomeError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			outcome, msg, err := stopOutcome(tc.err)
			if outcome != tc.outcome || msg == "" {
				t.Errorf("outcome %q (message %q), want %q", outcome, msg, tc.outcome)
			}
			if got := errors.Is(err, ErrFinal); got != tc.final {
				t.Errorf("final = %t, want %t (err %v)", got, tc.final, err)
			}
			if got := ghl.IsRateLimited(err); got != tc.rateLimit {
				t.Errorf("rate limited = %t, want %t", got, tc.rateLimit)
			}
		})
	}
}
