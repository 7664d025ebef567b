package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// A location without a settings row has the defaults (GHL's automations
// off); saved settings are read back, replaced on a second save, and a bad
// region is refused with its name and nothing stored.
func TestLocationSettings(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()

	got, err := st.Settings(ctx, "loc-1")
	must(t, err)
	if got != store.DefaultSettings("loc-1") || got.Notify || got.Region() != "US" {
		t.Fatalf("settings without a row = %+v, want the defaults", got)
	}

	must(t, st.SaveSettings(ctx, store.LocationSettings{LocationID: "loc-1", Notify: true, PhoneRegion: "GB"}))
	got, err = st.Settings(ctx, "loc-1")
	must(t, err)
	if !got.Notify || got.Region() != "GB" {
		t.Fatalf("saved settings = %+v, want notify on, region GB", got)
	}
	must(t, st.SaveSettings(ctx, store.LocationSettings{LocationID: "loc-1"}))
	got, err = st.Settings(ctx, "loc-1")
	must(t, err)
	if got.Notify || got.Region() != "US" {
		t.Fatalf("settings saved back to defaults = %+v", got)
	}

	err = st.SaveSettings(ctx, store.LocationSettings{LocationID: "loc-1", Notify: true, PhoneRegion: "uk"})
	if err == nil || !strings.Contains(err.Error(), `phone region "uk"`) {
		t.Fatalf("bad region: err = %v, want one naming the phone region", err)
	}
	got, err = st.Settings(ctx, "loc-1")
	must(t, err)
	if got.Notify {
		t.Fatal("a refused save changed the settings")
	}
}

// A row the clinic's operator inserts with plain SQL, naming only the
// location, takes the column defaults.
func TestLocationSettingsSQLDefaults(t *testing.T) {
	t.Parallel()
	st, url := storetest.Open(t, "")
	db := storetest.DB(t, url)
	must(t, db.Exec("INSERT INTO location_settings (location_id) VALUES ('loc-sql')").Error)
	got, err := st.Settings(context.Background(), "loc-sql")
	must(t, err)
	if got.Notify || got.PhoneRegion != "" {
		t.Fatalf("settings inserted by SQL = %+v, want the defaults", got)
	}
}

// A location's name and time zone are recorded, go stale after
// InfoMaxAge, and an unknown location is ErrNotFound.
func TestSetLocationInfo(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	connect(t, st, "loc-1", "", store.UserTypeLocation, time.Now().Add(time.Hour))

	c, err := st.Credential(ctx, "loc-1")
	must(t, err)
	if !c.InfoStale(time.Now()) {
		t.Fatal("a location never read from GHL is not stale")
	}
	must(t, st.SetLocationInfo(ctx, "loc-1", "Downtown Physio", "America/Denver"))
	c, err = st.Credential(ctx, "loc-1")
	must(t, err)
	if c.Name != "Downtown Physio" || c.Timezone != "America/Denver" {
		t.Fatalf("info = %q %q", c.Name, c.Timezone)
	}
	if c.InfoStale(time.Now()) || !c.InfoStale(time.Now().Add(store.InfoMaxAge)) {
		t.Fatalf("InfoStale wrong around InfoAt %v", c.InfoAt)
	}
	if err := st.SetLocationInfo(ctx, "nope", "x", "UTC"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown location: err = %v, want ErrNotFound", err)
	}
}
