package ghltest_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// DELETE /contacts/{id} as GHL's spec has it: 200 {"succeded":true} (sic),
// the contact gone; then, like GET and PUT, 400 "not found" for the id and
// 500 for a malformed one. Only the 200 is counted as a delete.
func TestDeleteContact(t *testing.T) {
	t.Parallel()
	s, do := contactsSetup(t)
	c := s.AddContact(ghltest.Contact{LocationID: "loc1", Email: "gone@example.com"})
	var out map[string]any
	do("DELETE", "/contacts/"+c.ID, nil, 200).decode(t, &out)
	if len(out) != 1 || out["succeded"] != true {
		t.Errorf("answer %v, want {succeded: true}", out)
	}
	if len(s.Contacts("loc1")) != 0 {
		t.Error("the contact is still there")
	}
	checkError(t, do("DELETE", "/contacts/"+c.ID, nil, 400), 400,
		`{"statusCode":400,"message":"Contact with id `+c.ID+` not found"}`)
	do("DELETE", "/contacts/short", nil, 500)
	if st := s.Stats(); st.ContactDeletes["loc1"] != 1 {
		t.Errorf("contact deletes %d, want 1", st.ContactDeletes["loc1"])
	}
}
