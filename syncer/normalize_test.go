package syncer

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl"
)

func TestNormalizeContact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		phone, country string
		region         string
		wantPhone      string
		wantCountry    string
		// wantRefusal, when set, are parts of the refusal's text.
		wantRefusal []string
	}{
		// Phones, sent in E.164.
		{name: "E.164 kept", phone: "+442079460018", region: "US", wantPhone: "+442079460018"},
		{name: "international with spaces", phone: "+44 20 7946 0018", region: "US", wantPhone: "+442079460018"},
		{name: "international with 00", phone: "0044 20 7946 0018", region: "GB", wantPhone: "+442079460018"},
		{name: "national number read in the region", phone: "020 7946 0018", region: "GB", wantPhone: "+442079460018"},
		{name: "US national with punctuation", phone: "(415) 555-0100", region: "US", wantPhone: "+14155550100"},
		{name: "a country code wins over the region", phone: "+1 415 555 0100", region: "DE", wantPhone: "+14155550100"},
		{name: "German number in DE", phone: "030 1234567", region: "DE", wantPhone: "+49301234567"},
		{name: "letters refused", phone: "call reception", region: "US", wantRefusal: []string{`phone "call reception"`, "region US"}},
		{name: "too short refused", phone: "12", region: "GB", wantRefusal: []string{`phone "12"`, "too short"}},
		{name: "too long refused", phone: "+44 20 7946 0018 0018 0018", region: "GB", wantRefusal: []string{"too long"}},
		{name: "local number without area code refused", phone: "555-0100", region: "US", wantRefusal: []string{"lacks an area code"}},
		{name: "unknown country code refused", phone: "+999 1234 5678", region: "US", wantRefusal: []string{`phone "+999 1234 5678"`}},

		// Countries, sent as ISO 3166 alpha-2.
		{name: "alpha-2", country: "GB", wantCountry: "GB"},
		{name: "alpha-2 lower case", country: "de", wantCountry: "DE"},
		{name: "alpha-3", country: "GBR", wantCountry: "GB"},
		{name: "alpha-3 lower case", country: "usa", wantCountry: "US"},
		{name: "name", country: "United Kingdom", wantCountry: "GB"},
		{name: "name, case and dots", country: "U.S.A.", wantCountry: "US"},
		{name: "name with the", country: "The Netherlands", wantCountry: "NL"},
		{name: "name with an accent", country: "Côte d'Ivoire", wantCountry: "CI"},
		{name: "UK is GB", country: "UK", wantCountry: "GB"},
		{name: "England is GB", country: "england", wantCountry: "GB"},
		{name: "Kosovo's code", country: "XK", wantCountry: "XK"},
		{name: "a country GHL's list lacks", country: "CW", wantCountry: "CW"},
		{name: "grouping refused", country: "EU", wantRefusal: []string{`country "EU"`, "two-letter code"}},
		{name: "numeric code refused", country: "826", wantRefusal: []string{`country "826"`}},
		{name: "unassigned code refused", country: "ZZ", wantRefusal: []string{`country "ZZ"`}},
		{name: "unknown name refused", country: "Atlantis", wantRefusal: []string{`country "Atlantis"`}},
		{name: "a region of a country refused", country: "Bavaria", wantRefusal: []string{`country "Bavaria"`}},

		// Empty stays empty: a value cleared in the clinic stays in GHL.
		{name: "nothing to normalise", region: "US"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &ghl.Contact{LocationID: testLoc, FirstName: "Ada", Phone: tc.phone, Country: tc.country}
			region := tc.region
			if region == "" {
				region = "US"
			}
			err := normalizeContact(c, region)
			if tc.wantRefusal != nil {
				wantRefusal(t, err, tc.wantRefusal)
				return
			}
			if err != nil {
				t.Fatalf("normalizeContact() error = %v", err)
			}
			want := &ghl.Contact{LocationID: testLoc, FirstName: "Ada", Phone: tc.wantPhone, Country: tc.wantCountry}
			if diff := cmp.Diff(want, c); diff != "" {
				t.Errorf("normalizeContact() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The hash covers the region only for a phone read in it: a location that
// changes its region sends again only its patients with national numbers.
func TestPatientContentRegion(t *testing.T) {
	t.Parallel()
	hash := func(phone, region string) string {
		return contentHash(contactMapping, patientContentOf(&ghl.Contact{LocationID: testLoc, Phone: phone}, region))
	}
	if hash("+442079460018", "GB") != hash("+442079460018", "US") {
		t.Error("an international number's hash depends on the region")
	}
	if hash("", "GB") != hash("", "US") {
		t.Error("a patient without phone's hash depends on the region")
	}
	if hash("020 7946 0018", "GB") == hash("020 7946 0018", "US") {
		t.Error("a national number's hash does not depend on the region it is read in")
	}
}
