package ghl

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestContactsUpsert(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/contacts/upsert", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		testJSON(t, r, `{
			"locationId": "loc-1",
			"firstName": "Ada",
			"lastName": "Lovelace",
			"email": "ada@example.com",
			"phone": "+441234567890",
			"address1": "1 Main St",
			"city": "London",
			"postalCode": "N1",
			"country": "GB",
			"dateOfBirth": "1815-12-10",
			"source": "e-physio",
			"tags": ["patient"],
			"customFields": [{"key": "external_id", "field_value": "p-1"}]
		}`)
		writeJSON(w, http.StatusOK, `{"new":true,"contact":{"id":"con-1","locationId":"loc-1","firstName":"Ada",
			"email":"ada@example.com","tags":["patient"],"customFields":[{"id":"cf-1","value":"p-1"}]},"traceId":"t-1"}`)
	})

	in := &Contact{
		ID:           "ignored",
		LocationID:   "loc-1",
		FirstName:    "Ada",
		LastName:     "Lovelace",
		Email:        "ada@example.com",
		Phone:        "+441234567890",
		Address1:     "1 Main St",
		City:         "London",
		PostalCode:   "N1",
		Country:      "GB",
		DateOfBirth:  "1815-12-10",
		Source:       "e-physio",
		Tags:         []string{"patient"},
		CustomFields: []CustomField{{Key: "external_id", Value: "p-1"}},
	}
	got, isNew, resp, err := c.Contacts.Upsert(t.Context(), testAccessToken, in)
	if err != nil {
		t.Fatal(err)
	}
	want := &Contact{
		ID:           "con-1",
		LocationID:   "loc-1",
		FirstName:    "Ada",
		Email:        "ada@example.com",
		Tags:         []string{"patient"},
		CustomFields: []CustomField{{ID: "cf-1", Value: "p-1"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Contact mismatch (-want +got):\n%s", diff)
	}
	if !isNew {
		t.Error("new = false, want true")
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("StatusCode = %d", resp.StatusCode)
	}
	if in.ID != "ignored" {
		t.Errorf("Upsert changed its argument: ID = %q", in.ID)
	}
	if diff := cmp.Diff([]observation{{"contacts.upsert", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

func TestContactsUpsert_Errors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		errText string
		check   func(t *testing.T, err error)
	}{
		{
			name: "422 array message", status: 422,
			body:    `{"statusCode":422,"message":["email must be an email"],"error":"Unprocessable Entity"}`,
			errText: "ghl: POST /contacts/upsert: 422 Unprocessable Entity: email must be an email",
			check: func(t *testing.T, err error) {
				var er *ErrorResponse
				if !errors.As(err, &er) {
					t.Fatalf("error %v is no *ErrorResponse", err)
				}
				want := &ErrorResponse{StatusCode: 422, Message: "email must be an email", Endpoint: "contacts.upsert"}
				if diff := cmp.Diff(want, er); diff != "" {
					t.Errorf("ErrorResponse mismatch (-want +got):\n%s", diff)
				}
				if Temporary(err) {
					t.Error("Temporary = true, want false")
				}
			},
		},
		{
			name: "429 with Retry-After", status: 429,
			header: map[string]string{
				"Retry-After":                       "4",
				"X-RateLimit-Max":                   "100",
				"X-RateLimit-Remaining":             "0",
				"X-RateLimit-Interval-Milliseconds": "10000",
			},
			body:    `{"statusCode":429,"message":"Too many requests"}`,
			errText: "ghl: POST /contacts/upsert: 429 Too Many Requests: Too many requests (retry after 4s)",
			check: func(t *testing.T, err error) {
				var rl *RateLimitError
				if !errors.As(err, &rl) {
					t.Fatalf("error %v is no *RateLimitError", err)
				}
				want := &RateLimitError{RetryAfter: 4 * time.Second, Rate: Rate{Max: 100, Interval: 10 * time.Second}, Message: "Too many requests"}
				if diff := cmp.Diff(want, rl); diff != "" {
					t.Errorf("RateLimitError mismatch (-want +got):\n%s", diff)
				}
				if !Temporary(err) {
					t.Error("Temporary = false, want true")
				}
			},
		},
		{
			name: "429 without Retry-After", status: 429,
			header:  map[string]string{"X-RateLimit-Interval-Milliseconds": "10000"},
			errText: "ghl: POST /contacts/upsert: 429 Too Many Requests (retry after 10s)",
		},
		{
			name: "500", status: 500,
			body:    `{"statusCode":500,"message":"Internal Server Error"}`,
			errText: "ghl: POST /contacts/upsert: 500 Internal Server Error: Internal Server Error",
			check: func(t *testing.T, err error) {
				if !IsServerError(err) || !Temporary(err) {
					t.Errorf("IsServerError, Temporary = %t, %t, want true, true", IsServerError(err), Temporary(err))
				}
			},
		},
		{
			name: "401", status: 401,
			body:    `{"statusCode":401,"message":"Invalid JWT"}`,
			errText: "ghl: POST /contacts/upsert: 401 Unauthorized: Invalid JWT",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrInvalidGrant) {
					t.Errorf("error %v: want ErrUnauthorized only", err)
				}
			},
		},
		{
			name: "no contact", status: 200,
			body:    `{"new":true}`,
			errText: "ghl: POST /contacts/upsert: response has no contact id",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc("POST /contacts/upsert", func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tc.status, tc.body)
			})
			_, _, resp, err := c.Contacts.Upsert(t.Context(), testAccessToken, &Contact{LocationID: "loc-1", Email: "x"})
			if err == nil {
				t.Fatal("nil error, want one")
			}
			if got := err.Error(); got != tc.errText {
				t.Errorf("error = %q, want %q", got, tc.errText)
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Errorf("Response = %+v, want status %d", resp, tc.status)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

func TestContactsGet(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/contacts/con-1", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		// Side fields of odd types, and a city of the wrong type, fail
		// nothing: only the id is decoded strictly.
		writeJSON(w, http.StatusOK, `{"contact":{"id":"con-1","locationId":"loc-1","lastName":"Lovelace","state":"LDN",
			"city":{"name":"London"},"birthMonth":"twelve","dndSettings":[],"followers":"x","tags":"vip",
			"dateOfBirth":"1815-12-10T00:00:00.000Z","customFields":[{"id":"cf-1","value":["a","b"]},{"id":"cf-2","value":3},7]}}`)
	})
	got, _, err := c.Contacts.Get(t.Context(), testAccessToken, "con-1")
	if err != nil {
		t.Fatal(err)
	}
	want := &Contact{
		ID:          "con-1",
		LocationID:  "loc-1",
		LastName:    "Lovelace",
		State:       "LDN",
		DateOfBirth: "1815-12-10",
		CustomFields: []CustomField{
			{ID: "cf-1", Value: []any{"a", "b"}},
			{ID: "cf-2", Value: 3.0},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Contact mismatch (-want +got):\n%s", diff)
	}
}

// "Not found" comes in two shapes: a 404, or GHL's 400 whose message says
// not found; IsNotFound knows both, and no other 400.
func TestContactsGet_NotFound(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("GET /contacts/gone404", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, `{"statusCode":404,"message":"Contact not found"}`)
	})
	b.mux.HandleFunc("GET /contacts/gone400", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, `{"statusCode":400,"message":"Contact with id gone400 not found"}`)
	})
	b.mux.HandleFunc("GET /contacts/bad", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, `{"statusCode":400,"message":"Invalid parameter: contactId"}`)
	})
	for id, want := range map[string]bool{"gone404": true, "gone400": true, "bad": false} {
		_, _, err := c.Contacts.Get(t.Context(), testAccessToken, id)
		if err == nil || IsNotFound(err) != want || !IsRefused(err) {
			t.Errorf("%s: error = %v, IsNotFound = %t, want %t", id, err, IsNotFound(err), want)
		}
	}
}

func TestContactsUpdate(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/contacts/con-1", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPut)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		// No id, no locationId: GHL refuses them on update.
		testJSON(t, r, `{"firstName":"Ada","email":"ada@example.com"}`)
		writeJSON(w, http.StatusOK, `{"succeded":true,"contact":{"id":"con-1","firstName":"Ada","email":"ada@example.com"}}`)
	})
	in := &Contact{ID: "con-1", LocationID: "loc-1", FirstName: "Ada", Email: "ada@example.com"}
	got, _, err := c.Contacts.Update(t.Context(), testAccessToken, "con-1", in)
	if err != nil {
		t.Fatal(err)
	}
	want := &Contact{ID: "con-1", FirstName: "Ada", Email: "ada@example.com"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Contact mismatch (-want +got):\n%s", diff)
	}
	if in.LocationID != "loc-1" {
		t.Error("Update changed its argument")
	}
	if diff := cmp.Diff([]observation{{"contacts.update", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

func TestContactsFindByEmail(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/contacts/search/duplicate", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		q := r.URL.Query()
		if got := q.Get("locationId"); got != "loc-1" {
			t.Errorf("locationId = %q", got)
		}
		switch q.Get("email") {
		case "ada+1@example.com":
			writeJSON(w, http.StatusOK, `{"contact":{"id":"con-1","email":"ada+1@example.com"}}`)
		case "nobody@example.com":
			writeJSON(w, http.StatusOK, `{"contact":null}`)
		default:
			t.Errorf("email = %q", q.Get("email"))
		}
	})

	got, _, err := c.Contacts.FindByEmail(t.Context(), testAccessToken, "loc-1", "ada+1@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Contact{ID: "con-1", Email: "ada+1@example.com"}, got); diff != "" {
		t.Errorf("Contact mismatch (-want +got):\n%s", diff)
	}

	got, resp, err := c.Contacts.FindByEmail(t.Context(), testAccessToken, "loc-1", "nobody@example.com")
	if err != nil || got != nil || resp == nil {
		t.Errorf("FindByEmail(nobody) = %v, %v, %v, want nil contact, a response, no error", got, resp, err)
	}
}

func TestContactsAppointments(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/contacts/con-1/appointments", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		// GetEventSchema: times without an offset, in the location's zone.
		writeJSON(w, http.StatusOK, `{"events":[{"id":"ev-1","calendarId":"cal-1","locationId":"loc-1",
			"contactId":"con-1","startTime":"2025-03-03 10:00:00","endTime":"2025-03-03 10:30:00",
			"title":"Knee","status":"booked","appointmentStatus":"booked","users":[],"dateAdded":"2025-03-01 08:00:00"}]}`)
	})

	got, _, err := c.Contacts.Appointments(t.Context(), testAccessToken, "con-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{ID: "ev-1", CalendarID: "cal-1", ContactID: "con-1",
		StartTime: "2025-03-03 10:00:00", EndTime: "2025-03-03 10:30:00"}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Event{}, "Raw")); diff != "" {
		t.Errorf("Appointments mismatch (-want +got):\n%s", diff)
	}
	cet := time.FixedZone("", 3600)
	if start, err := got[0].StartTime.In(cet); err != nil || !start.Equal(time.Date(2025, 3, 3, 10, 0, 0, 0, cet)) {
		t.Errorf("start in the location's zone = %v, %v", start, err)
	}
	if diff := cmp.Diff([]observation{{"contacts.appointments", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
	if _, _, err := c.Contacts.Appointments(t.Context(), testAccessToken, ""); err == nil {
		t.Error("Appointments with no contact id: no error")
	}
}

func TestCustomField_JSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(CustomField{ID: "cf-1", Value: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"id":"cf-1","field_value":"x"}`; got != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
	var f CustomField
	if err := json.Unmarshal([]byte(`{"key":"k","field_value":"a","value":"b"}`), &f); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(CustomField{Key: "k", Value: "a"}, f); diff != "" {
		t.Errorf("Unmarshal mismatch (-want +got):\n%s", diff)
	}
}
