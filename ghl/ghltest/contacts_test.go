package ghltest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// unknownID has the shape of the fake's ids but names nothing.
const unknownID = "AAAAAAAAAAAAAAAAAAAA"

// contactsSetup is a fake with location loc1, its token and a helper that
// makes a contact call and fails the test unless it answers want.
func contactsSetup(t *testing.T) (*ghltest.Server, func(method, path string, body any, want int) reply) {
	t.Helper()
	s, _ := setup(t, ghltest.Options{})
	access, _, _ := s.IssueToken("loc1")
	return s, func(method, path string, body any, want int) reply {
		t.Helper()
		r := call(t, s, method, path, access, ghltest.VersionContacts, body)
		if r.status != want {
			t.Fatalf("%s %s %v: %d %s, want %d", method, path, body, r.status, r.body, want)
		}
		return r
	}
}

type contactAnswer struct {
	Contact struct {
		ID           string                `json:"id"`
		Email        string                `json:"email"`
		Phone        string                `json:"phone"`
		DateOfBirth  any                   `json:"dateOfBirth"`
		Tags         []string              `json:"tags"`
		CustomFields []ghltest.CustomField `json:"customFields"`
	} `json:"contact"`
	New bool `json:"new"`
}

func decodeContact(t *testing.T, r reply) contactAnswer {
	t.Helper()
	var a contactAnswer
	r.decode(t, &a)
	return a
}

// GHL documents no 404 for a contact: an unknown id is a 400 whose message
// says not found, a malformed one a 500 (#6); both counted.
func TestContactNotFoundShapes(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	checkError(t, do("PUT", "/contacts/"+unknownID, map[string]any{"firstName": "X"}, 400), 400,
		`{"statusCode":400,"message":"Contact with id AAAAAAAAAAAAAAAAAAAA not found"}`)
	do("GET", "/contacts/"+unknownID, nil, 400)
	checkError(t, do("PUT", "/contacts/short", map[string]any{"firstName": "X"}, 500), 500,
		`{"statusCode":500,"message":"Internal server error"}`)
	do("GET", "/contacts/has-a-dash-and-20-ch", nil, 500)
	do("POST", "/contacts/"+unknownID+"/tags", map[string]any{"tags": []string{"a"}}, 400)
	if st := s.Stats(); st.NotFound["loc1"] != 3 || st.MalformedIDs["loc1"] != 2 {
		t.Errorf("not found %d, malformed %d; want 3, 2", st.NotFound["loc1"], st.MalformedIDs["loc1"])
	}
	if len(s.Contacts("loc1")) != 0 {
		t.Error("a contact appeared")
	}
}

// An upsert needs an email or a phone (#59, #37); a create does not.
func TestUpsertNeedsEmailOrPhone(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	checkError(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "firstName": "Nameless"}, 400), 400,
		`{"statusCode":400,"message":"Either email or phone is required to upsert a contact"}`)
	a := decodeContact(t, do("POST", "/contacts/", map[string]any{"locationId": "loc1", "firstName": "Nameless",
		"dateOfBirth": "1980-05-17"}, 201))
	if a.Contact.ID == "" || a.Contact.DateOfBirth != "1980-05-17T00:00:00.000Z" {
		t.Errorf("create: %+v, want an id and the date of birth as an ISO timestamp", a.Contact)
	}
	st := s.Stats()
	if st.UpsertsWithoutKey["loc1"] != 1 || st.ContactCreates["loc1"] != 1 || len(s.Contacts("loc1")) != 1 {
		t.Errorf("refused upserts %d, creates %d, contacts %d; want 1, 1, 1",
			st.UpsertsWithoutKey["loc1"], st.ContactCreates["loc1"], len(s.Contacts("loc1")))
	}
	do("POST", "/contacts/", map[string]any{"firstName": "X"}, 422)
	do("POST", "/contacts/", map[string]any{"locationId": "loc1", "createNewIfDuplicateAllowed": true}, 422)
	do("POST", "/contacts/", map[string]any{"locationId": "loc1", "country": "United Kingdom"}, 422)
	do("POST", "/contacts/", map[string]any{"locationId": "loc1", "dateOfBirth": "17th May"}, 422)
}

// PUT takes only the update DTO's fields (#313).
func TestUpdateBodyWhitelisted(t *testing.T) {
	t.Parallel()
	_, do := contactsSetup(t)
	id := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "a@x.test"}, 200)).Contact.ID
	for _, key := range []string{"locationId", "gender", "companyName"} {
		checkError(t, do("PUT", "/contacts/"+id, map[string]any{key: "x"}, 422), 422,
			`{"statusCode":422,"message":["property `+key+` should not exist"]}`)
	}
	do("PUT", "/contacts/"+id, map[string]any{"firstName": "A", "country": "GB", "dateOfBirth": "05/17/1980"}, 200)
}

// Without "allow duplicates" a create or update with another contact's
// email or phone is refused with that contact's id; with it, both go
// through.
func TestDuplicateContacts(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	ann := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "ann@x.test"}, 200)).Contact.ID
	bob := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "phone": "+15550000001"}, 200)).Contact.ID

	dup := func(r reply) (string, string) {
		t.Helper()
		var body struct {
			Message string `json:"message"`
			Meta    struct {
				ContactID     string `json:"contactId"`
				MatchingField string `json:"matchingField"`
			} `json:"meta"`
		}
		r.decode(t, &body)
		if body.Message != "This location does not allow duplicated contacts." {
			t.Errorf("message %q", body.Message)
		}
		return body.Meta.ContactID, body.Meta.MatchingField
	}
	if id, field := dup(do("POST", "/contacts/", map[string]any{"locationId": "loc1", "email": "ANN@x.test"}, 400)); id != ann || field != "email" {
		t.Errorf("create with ann's email: %s %s", id, field)
	}
	if id, field := dup(do("PUT", "/contacts/"+ann, map[string]any{"phone": "+1 555 000 0001"}, 400)); id != bob || field != "phone" {
		t.Errorf("update with bob's phone: %s %s", id, field)
	}
	// A contact's own values are no duplicate.
	do("PUT", "/contacts/"+ann, map[string]any{"email": "ann@x.test", "city": "Oslo"}, 200)

	s.SetContactSettings("loc1", ghltest.ContactSettings{AllowDuplicates: true})
	do("POST", "/contacts/", map[string]any{"locationId": "loc1", "email": "ann@x.test"}, 201)
	do("PUT", "/contacts/"+ann, map[string]any{"phone": "+15550000001"}, 200)
	if st := s.Stats(); st.DuplicateRefusals["loc1"] != 2 || len(s.Contacts("loc1")) != 3 {
		t.Errorf("refusals %d, contacts %d; want 2, 3", st.DuplicateRefusals["loc1"], len(s.Contacts("loc1")))
	}
	var loc struct {
		Location struct {
			Settings map[string]any `json:"settings"`
		} `json:"location"`
	}
	do("GET", "/locations/loc1", nil, 200).decode(t, &loc)
	if loc.Location.Settings["allowDuplicateContact"] != true {
		t.Errorf("location settings %v", loc.Location.Settings)
	}
}

// When email and phone match two contacts, the upsert updates the one the
// location's priority puts first and silently ignores the other field.
func TestUpsertEmailPhoneSplit(t *testing.T) {
	t.Parallel()
	for _, phoneFirst := range []bool{false, true} {
		s, do := contactsSetup(t)
		s.SetContactSettings("loc1", ghltest.ContactSettings{PhoneFirst: phoneFirst})
		byEmail := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "a@x.test"}, 200)).Contact.ID
		byPhone := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "phone": "+15550000002"}, 200)).Contact.ID
		got := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "a@x.test",
			"phone": "+15550000002", "city": "Bergen"}, 200))
		wantID, wantEmail, wantPhone := byEmail, "a@x.test", ""
		if phoneFirst {
			wantID, wantEmail, wantPhone = byPhone, "", "+15550000002"
		}
		if got.New || got.Contact.ID != wantID || got.Contact.Email != wantEmail || got.Contact.Phone != wantPhone {
			t.Errorf("phone first %t: %+v, want contact %s with email %q and phone %q", phoneFirst, got, wantID, wantEmail, wantPhone)
		}
		if n := s.Stats().IgnoredFields["loc1"]; n != 1 {
			t.Errorf("phone first %t: %d ignored fields, want 1", phoneFirst, n)
		}
	}
}

// Custom fields: created on the location, written by id or key, answered
// as [{id, value}], found by search, whose answer carries the date of
// birth as epoch milliseconds (#314).
func TestCustomFieldsAndSearch(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	var created struct {
		CustomField ghltest.CustomFieldDef `json:"customField"`
	}
	do("POST", "/locations/loc1/customFields", map[string]any{"name": "Clinic ID", "dataType": "TEXT"}, 201).decode(t, &created)
	f := created.CustomField
	if f.ID == "" || f.FieldKey != "contact.clinic_id" || f.Model != "contact" {
		t.Fatalf("created field %+v", f)
	}
	do("POST", "/locations/loc1/customFields", map[string]any{"name": "clinic id", "dataType": "TEXT"}, 400)
	do("POST", "/locations/loc1/customFields", map[string]any{"name": "X", "dataType": "WORDS"}, 422)
	var list struct {
		CustomFields []ghltest.CustomFieldDef `json:"customFields"`
	}
	do("GET", "/locations/loc1/customFields?model=contact", nil, 200).decode(t, &list)
	if diff := cmp.Diff([]ghltest.CustomFieldDef{f}, list.CustomFields); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	p1 := decodeContact(t, do("POST", "/contacts/", map[string]any{"locationId": "loc1", "firstName": "One",
		"dateOfBirth": "1980-05-17", "customFields": []map[string]any{{"id": f.ID, "field_value": "P-1"}}}, 201)).Contact
	p2 := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "two@x.test",
		"customFields": []map[string]any{{"key": "clinic_id", "field_value": "P-2"}, {"id": unknownID, "field_value": "lost"}}}, 200)).Contact
	if diff := cmp.Diff([]ghltest.CustomField{{ID: f.ID, Value: "P-2"}}, p2.CustomFields); diff != "" {
		t.Errorf("custom fields of the upsert's answer (-want +got):\n%s", diff)
	}
	if n := s.Stats().UnknownCustomFields; n != 1 {
		t.Errorf("%d unknown custom fields dropped, want 1", n)
	}

	search := func(value string) (ids []string, dob []any) {
		t.Helper()
		var out struct {
			Contacts []struct {
				ID          string `json:"id"`
				DateOfBirth any    `json:"dateOfBirth"`
			} `json:"contacts"`
			Total int `json:"total"`
		}
		do("POST", "/contacts/search", map[string]any{"locationId": "loc1", "pageLimit": 10,
			"filters": []map[string]any{{"field": "customFields." + f.ID, "operator": "eq", "value": value}}}, 200).decode(t, &out)
		for _, c := range out.Contacts {
			ids, dob = append(ids, c.ID), append(dob, c.DateOfBirth)
		}
		if out.Total != len(ids) {
			t.Errorf("total %d for %d contacts", out.Total, len(ids))
		}
		return ids, dob
	}
	if ids, dob := search("P-1"); len(ids) != 1 || ids[0] != p1.ID || dob[0] != float64(327369600000) {
		t.Errorf("search P-1: %v %v, want %s born at epoch ms 327369600000", ids, dob, p1.ID)
	}
	if ids, _ := search("P-3"); len(ids) != 0 {
		t.Errorf("search P-3: %v", ids)
	}
	do("POST", "/contacts/search", map[string]any{"locationId": "loc1"}, 422)
	do("POST", "/contacts/search", map[string]any{"locationId": "loc1", "pageLimit": 10,
		"filters": []map[string]any{{"field": "city", "operator": "eq", "value": "Oslo"}}}, 422)
	if n := s.Stats().ContactSearches["loc1"]; n != 2 {
		t.Errorf("%d searches counted, want 2", n)
	}
}

// Tags: the tag endpoints add and remove, keeping the others; a tags
// field on a write replaces them all.
func TestContactTags(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	id := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "t@x.test",
		"tags": []string{"staff"}}, 200)).Contact.ID
	tags := func(r reply) []string {
		var out struct{ Tags []string }
		r.decode(t, &out)
		return out.Tags
	}
	if got := tags(do("POST", "/contacts/"+id+"/tags", map[string]any{"tags": []string{"a", "b", "staff"}}, 201)); !cmp.Equal(got, []string{"staff", "a", "b"}) {
		t.Errorf("after add: %v", got)
	}
	if got := tags(do("DELETE", "/contacts/"+id+"/tags", map[string]any{"tags": []string{"a"}}, 200)); !cmp.Equal(got, []string{"staff", "b"}) {
		t.Errorf("after remove: %v", got)
	}
	do("POST", "/contacts/"+id+"/tags", map[string]any{}, 422)
	do("PUT", "/contacts/"+id, map[string]any{"tags": []string{"only"}}, 200)
	if got := s.Contacts("loc1")[0].Tags; !cmp.Equal(got, []string{"only"}) {
		t.Errorf("after PUT with tags: %v", got)
	}
	if st := s.Stats(); st.TagAdds["loc1"] != 1 || st.TagRemoves["loc1"] != 1 {
		t.Errorf("tag adds %d, removes %d", st.TagAdds["loc1"], st.TagRemoves["loc1"])
	}
}

// A lost answer: with DropAfter on the create's method and path only, the
// fake creates the contact and closes the connection; other calls on that
// path answer.
func TestLostContactCreate(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	access, _, _ := s.IssueToken("loc1")
	s.InjectFault(ghltest.Fault{Method: "POST", Path: "/contacts/{$}", DropAfter: true, Times: 1})
	do("GET", "/contacts/"+unknownID, nil, 400)                                                    // not a POST: served
	do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "u@x.test"}, 200) // another path: served
	body, _ := json.Marshal(map[string]any{"locationId": "loc1", "firstName": "Lost"})
	req, _ := http.NewRequest("POST", s.URL+"/contacts/", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Version", ghltest.VersionContacts)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the create was answered %d", resp.StatusCode)
	}
	if st := s.Stats(); st.ContactCreates["loc1"] != 2 || st.Faults != 1 || len(s.Contacts("loc1")) != 2 {
		t.Errorf("creates %d, faults %d, contacts %d; want 2, 1, 2", st.ContactCreates["loc1"], st.Faults, len(s.Contacts("loc1")))
	}
}

// dndSettings is GHL's DndSettingsSchema: the channels Call, Email, SMS,
// WhatsApp, GMB and FB, each with a status of active, inactive or
// permanent; anything else is a 422 and changes nothing. A write sets the
// channels it names and keeps the others; tags in a write's body replace
// every tag, while the tag endpoints add and remove some.
func TestContactDNDSettingsAndTags(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	a := decodeContact(t, do("POST", "/contacts/upsert", map[string]any{"locationId": "loc1", "email": "ada@example.com",
		"tags": []string{"staff"}, "dndSettings": map[string]any{"SMS": map[string]any{"status": "active"}}}, 200))
	id := a.Contact.ID
	do("PUT", "/contacts/"+id, map[string]any{"dndSettings": map[string]any{"Email": map[string]any{"status": "inactive", "message": "opted in"}}}, 200)
	for _, bad := range []map[string]any{
		{"Fax": map[string]any{"status": "active"}},
		{"SMS": map[string]any{"status": "off"}},
		{"SMS": map[string]any{"message": "no status"}},
	} {
		r := do("PUT", "/contacts/"+id, map[string]any{"dndSettings": bad}, 422)
		if !strings.Contains(string(r.body), "dndSettings") {
			t.Errorf("%v: %s; want the field named", bad, r.body)
		}
	}
	do("POST", "/contacts/"+id+"/tags", map[string]any{"tags": []string{"ghlsync"}}, 201)
	c := s.Contacts("loc1")[0]
	want := map[string]ghltest.DNDSetting{"SMS": {Status: "active"}, "Email": {Status: "inactive", Message: "opted in"}}
	if diff := cmp.Diff(want, c.DNDSettings); diff != "" {
		t.Errorf("dndSettings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"staff", "ghlsync"}, c.Tags); diff != "" {
		t.Errorf("tags after an add (-want +got):\n%s", diff)
	}
	var got struct {
		Contact struct {
			DndSettings map[string]ghltest.DNDSetting `json:"dndSettings"`
		} `json:"contact"`
	}
	do("GET", "/contacts/"+id, nil, 200).decode(t, &got)
	if diff := cmp.Diff(want, got.Contact.DndSettings); diff != "" {
		t.Errorf("GET's dndSettings (-want +got):\n%s", diff)
	}
	do("PUT", "/contacts/"+id, map[string]any{"tags": []string{"only"}}, 200)
	if tags := s.Contacts("loc1")[0].Tags; !cmp.Equal(tags, []string{"only"}) {
		t.Errorf("tags after a PUT with tags: %v; want the body's alone", tags)
	}
}
