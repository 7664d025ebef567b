package ghl

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestContactsCreate(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /contacts/{$}", func(w http.ResponseWriter, r *http.Request) {
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		testJSON(t, r, `{"locationId":"loc-1","firstName":"Ada","customFields":[{"id":"cf-1","field_value":"P-1"}]}`)
		// The create answers its date of birth as a timestamp.
		writeJSON(w, http.StatusCreated, `{"contact":{"id":"con-1","locationId":"loc-1","firstName":"Ada",
			"dateOfBirth":"1815-12-10T00:00:00.000Z","customFields":[{"id":"cf-1","value":"P-1"}]}}`)
	})
	got, _, err := c.Contacts.Create(t.Context(), testAccessToken, &Contact{ID: "ignored", LocationID: "loc-1",
		FirstName: "Ada", CustomFields: []CustomField{{ID: "cf-1", Value: "P-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := &Contact{ID: "con-1", LocationID: "loc-1", FirstName: "Ada", DateOfBirth: "1815-12-10",
		CustomFields: []CustomField{{ID: "cf-1", Value: "P-1"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Create (-want +got):\n%s", diff)
	}
	if v, ok := got.FieldValue("cf-1"); !ok || v != "P-1" {
		t.Errorf("FieldValue = %q, %t", v, ok)
	}
	if _, _, err := c.Contacts.Create(t.Context(), testAccessToken, &Contact{}); err == nil {
		t.Error("Create without a location id was sent")
	}
}

// A duplicate refusal's meta is reachable with errors.As.
func TestContactsUpdate_Duplicate(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("PUT /contacts/con-1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, `{"statusCode":400,"message":"This location does not allow duplicated contacts.",
			"meta":{"contactId":"con-2","matchingField":"phone"}}`)
	})
	_, _, err := c.Contacts.Update(t.Context(), testAccessToken, "con-1", &Contact{Phone: "+15550100"})
	var dup *DuplicateContactError
	if !errors.As(err, &dup) || dup.ContactID != "con-2" || dup.MatchingField != "phone" {
		t.Fatalf("error = %v, want a *DuplicateContactError of con-2 by phone", err)
	}
}

func TestContactsSearch(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /contacts/search", func(w http.ResponseWriter, r *http.Request) {
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		testJSON(t, r, `{"locationId":"loc-1","page":1,"pageLimit":100,
			"filters":[{"field":"customFields.cf-1","operator":"eq","value":"P-1"}]}`)
		// Search answers dateOfBirth in epoch ms (#314).
		// A result of another shape is skipped.
		writeJSON(w, http.StatusOK, `{"contacts":[{"id":"con-1","dateOfBirth":-4861728000000,"attributions":[{}],
			"customFields":[{"id":"cf-1","value":"P-1"}]},"junk",{"id":9}],"total":"one"}`)
	})
	got, _, err := c.Contacts.Search(t.Context(), testAccessToken, "loc-1", CustomFieldIs("cf-1", "P-1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Contact{{ID: "con-1", DateOfBirth: "1815-12-10", CustomFields: []CustomField{{ID: "cf-1", Value: "P-1"}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Search (-want +got):\n%s", diff)
	}
}

func TestContactsTags(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /contacts/con-1/tags", func(w http.ResponseWriter, r *http.Request) {
		testJSON(t, r, `{"tags":["a","b"]}`)
		writeJSON(w, http.StatusCreated, `{"tags":["staff","a","b"]}`)
	})
	b.mux.HandleFunc("DELETE /contacts/con-1/tags", func(w http.ResponseWriter, r *http.Request) {
		testJSON(t, r, `{"tags":["a"]}`)
		writeJSON(w, http.StatusOK, `{"tags":["staff","b"]}`)
	})
	got, _, err := c.Contacts.AddTags(t.Context(), testAccessToken, "con-1", []string{"a", "b"})
	if err != nil || !cmp.Equal(got, []string{"staff", "a", "b"}) {
		t.Errorf("AddTags = %v, %v", got, err)
	}
	got, _, err = c.Contacts.RemoveTags(t.Context(), testAccessToken, "con-1", []string{"a"})
	if err != nil || !cmp.Equal(got, []string{"staff", "b"}) {
		t.Errorf("RemoveTags = %v, %v", got, err)
	}
	if diff := cmp.Diff([]observation{{"contacts.addTags", 201}, {"contacts.removeTags", 200}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls (-want +got):\n%s", diff)
	}
}

func TestContactsCustomFields(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("GET /locations/loc-1/customFields", func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query().Get("model"); got != "contact" {
			t.Errorf("model = %q", got)
		}
		writeJSON(w, http.StatusOK, `{"customFields":[{"id":"cf-1","name":"Clinic ID","fieldKey":"contact.clinic_id",
			"dataType":"TEXT","model":"contact","position":0,"picklistOptions":[]}]}`)
	})
	b.mux.HandleFunc("POST /locations/loc-1/customFields", func(w http.ResponseWriter, r *http.Request) {
		testJSON(t, r, `{"name":"Clinic ID","dataType":"TEXT","model":"contact"}`)
		writeJSON(w, http.StatusCreated, `{"customField":{"id":"cf-2","name":"Clinic ID","fieldKey":"contact.clinic_id","dataType":"TEXT","model":"contact"}}`)
	})
	list, _, err := c.Contacts.CustomFields(t.Context(), testAccessToken, "loc-1")
	want := []FieldDef{{ID: "cf-1", Name: "Clinic ID", FieldKey: "contact.clinic_id", DataType: "TEXT", Model: "contact"}}
	if diff := cmp.Diff(want, list); err != nil || diff != "" {
		t.Errorf("CustomFields: %v (-want +got):\n%s", err, diff)
	}
	f, _, err := c.Contacts.CreateCustomField(t.Context(), testAccessToken, "loc-1", "Clinic ID", "TEXT")
	if err != nil || f.ID != "cf-2" {
		t.Errorf("CreateCustomField = %+v, %v", f, err)
	}
}

// A successful upsert stays a success whatever GHL's answer carries beside
// the contact's id: a "new" that is not a boolean, a date of birth in
// epoch ms, side fields of odd types.
func TestContactsUpsert_OddAnswer(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /contacts/upsert", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"new":"yes","traceId":7,"contact":{"id":"con-1","dateOfBirth":327369600000,
			"phone":{"number":"+15550100"},"dnd":"no","birthDay":"17","customFields":{"a":1}}}`)
	})
	got, isNew, _, err := c.Contacts.Upsert(t.Context(), testAccessToken, &Contact{LocationID: "loc-1", Email: "a@b.test"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&Contact{ID: "con-1", DateOfBirth: "1980-05-17"}); !cmp.Equal(want, got) || isNew {
		t.Errorf("Upsert = %+v, new %t; want %+v, not new", got, isNew, want)
	}
	b.mux.HandleFunc("POST /contacts/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, `{"contact":{"id":["con-1"]}}`)
	})
	if _, _, err := c.Contacts.Create(t.Context(), testAccessToken, &Contact{LocationID: "loc-1"}); err == nil {
		t.Error("Create accepted an answer whose id is not a string")
	}
}
