package ghl_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// GET /locations/{id} against the fake: the location's own token and its
// agency's token read its name and time zone; the fake's answer carries
// fields the client does not use, which must not fail the call.
func TestLocationsGet(t *testing.T) {
	t.Parallel()
	fake := ghltest.NewServer(ghltest.Options{})
	t.Cleanup(fake.Close)
	fake.AddLocation("loc-1", "co-1")
	fake.SetLocationInfo("loc-1", "Downtown Physio", "Europe/London")
	fake.AddLocation("loc-2", "co-1")

	c, err := ghl.NewClient(ghl.Config{BaseURL: fake.URL, HTTPClient: fake.Client()})
	if err != nil {
		t.Fatal(err)
	}
	locTok, _, _ := fake.IssueToken("loc-1")
	coTok, _, _ := fake.IssueToken("co-1")
	for name, tok := range map[string]string{"location token": locTok, "agency token": coTok} {
		got, _, err := c.Locations.Get(t.Context(), tok, "loc-1")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if *got != (ghl.Location{ID: "loc-1", Name: "Downtown Physio", CompanyID: "co-1", Timezone: "Europe/London"}) {
			t.Errorf("%s: location = %+v", name, *got)
		}
	}

	got, _, err := c.Locations.Get(t.Context(), coTok, "loc-2")
	if err != nil {
		t.Fatal(err)
	}
	if got.Timezone != ghltest.DefaultTimezone || got.Name == "" {
		t.Errorf("a location added without info = %+v, want a name and the default zone", *got)
	}
	if _, _, err := c.Locations.Get(t.Context(), locTok, "loc-2"); err == nil {
		t.Error("a location token read another location")
	}
}
