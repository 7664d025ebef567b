package syncer

import (
	"testing"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// The JSON columns' defaults leave a patient's hash as it was before the
// columns existed (so adding them sends no patient again), on either
// database's form of false; any change of one of them changes the hash,
// and the columns do not run into each other.
func TestPatientExtrasHash(t *testing.T) {
	t.Parallel()
	pc := patientContentOf(&ghl.Contact{LocationID: testLoc, FirstName: "Ada", Email: "ada@example.com"}, "GB")
	before := contentHash(contactMapping, pc)
	for _, dnd := range []string{"", "0", "false", "f", "FALSE"} {
		p := &store.PatientRow{Tags: "[]", DND: dnd, Consent: "{}", CustomFields: "{}"}
		if x := patientExtras(p); contentHash(contactMapping, pc, x[:]...) != before {
			t.Errorf("defaults with dnd %q hash otherwise than no columns", dnd)
		}
	}
	seen := map[string]string{before: "defaults"}
	for name, p := range map[string]store.PatientRow{
		"tags":                  {Tags: `["vip"]`},
		"dnd":                   {DND: "1"},
		"consent":               {Consent: `{"sms": true}`},
		"timezone":              {Timezone: "Europe/London"},
		"custom_fields":         {CustomFields: `{"a": "1"}`},
		"consent as tags":       {Tags: `{"sms": true}`},
		"custom_fields, longer": {CustomFields: `{"a": "10"}`},
	} {
		x := patientExtras(&p)
		h := contentHash(contactMapping, pc, x[:]...)
		if other, dup := seen[h]; dup {
			t.Errorf("%s hashes as %s does", name, other)
		}
		seen[h] = name
	}
}
