package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/store"
)

// scheduler settings: set stores a value and get and list show it; a bad
// key or value, a bad command or a wrong number of arguments is one line
// on stderr, exit 2, and changes nothing.
func TestSettings(t *testing.T) {
	t.Parallel()
	c, st := setup(t)
	ctx := context.Background()

	if code, stdout, stderr := c.run(t, "settings", "get", "loc1"); code != 0 ||
		stdout != "notify=off\nphone_region=US\nfields=all\ntitle_template=\ndeletion_action=tag_dnd\ndeletion_cap=0\nconflict_policy=clinic\ncreate_custom_fields=on\n" {
		t.Errorf("get of a location without settings: exit %d, %q %q; want the defaults", code, stdout, stderr)
	}
	for _, kv := range [][3]string{
		{"fields", "appointment.title, patient.email,patient.first_name", "fields=appointment.title,patient.email,patient.first_name\n"},
		{"title_template", "{{practitioner}}: session", "title_template={{practitioner}}: session\n"},
		{"notify", "on", "notify=on\n"},
		{"phone_region", "gb", "phone_region=GB\n"},
	} {
		if code, stdout, stderr := c.run(t, "settings", "set", "loc1", kv[0], kv[1]); code != 0 || stdout != kv[2] {
			t.Errorf("set %s %q: exit %d, %q %q; want 0, %q", kv[0], kv[1], code, stdout, stderr, kv[2])
		}
	}
	want := store.LocationSettings{LocationID: "loc1", Notify: true, PhoneRegion: "GB",
		Fields: "appointment.title,patient.email,patient.first_name", TitleTemplate: "{{practitioner}}: session"}
	got, err := st.Settings(ctx, "loc1")
	if err != nil {
		t.Fatal(err)
	}
	got.UpdatedAt = want.UpdatedAt
	if got != want {
		t.Errorf("stored %+v, want %+v", got, want)
	}
	code, stdout, _ := c.run(t, "settings", "list")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); code != 0 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "LOCATION") || !strings.Contains(lines[1], "{{practitioner}}: session") ||
		!strings.Contains(lines[1], "GB") {
		t.Errorf("list: exit %d:\n%s", code, stdout)
	}

	refused := func(args ...string) {
		t.Helper()
		before, _ := st.Settings(ctx, "loc1")
		code, stdout, stderr := c.run(t, args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "scheduler settings -h") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line pointing to -h", args, code, stdout, stderr)
		}
		if after, _ := st.Settings(ctx, "loc1"); after != before {
			t.Errorf("%q changed the settings: %+v, was %+v", args, after, before)
		}
	}
	for _, args := range [][]string{
		{"settings", "set", "loc1", "colour", "red"},
		{"settings", "set", "loc1", "fields", "patient.dob"},
		{"settings", "set", "loc1", "title_template", "{{practitioner"},
		{"settings", "set", "loc1", "title_template", "{{.Title}}"},
		{"settings", "set", "loc1", "title_template", "{{nope}}"},
		{"settings", "set", "loc1", "notify", "maybe"},
		{"settings", "set", "loc1", "phone_region", "GBR"},
		{"settings", "set", "loc1", "fields"},
		{"settings", "set", "", "notify", "on"},
		{"settings", "get"},
		{"settings", "list", "extra"},
		{"settings", "frob"},
		{"settings"},
	} {
		refused(args...)
	}
	// The clinic's title where the allow-list keeps titles out, from
	// either side.
	if code, _, stderr := c.run(t, "settings", "set", "loc1", "title_template", "{{title}} with {{practitioner}}"); code != 0 {
		t.Fatalf("set title_template: %s", stderr)
	}
	refused("settings", "set", "loc1", "fields", "patient.email")
	if code, _, stderr := c.run(t, "settings", "set", "loc1", "title_template", ""); code != 0 {
		t.Fatalf("clear title_template: %s", stderr)
	}
	if code, _, stderr := c.run(t, "settings", "set", "loc1", "fields", "patient.email"); code != 0 {
		t.Fatalf("set fields: %s", stderr)
	}
	refused("settings", "set", "loc1", "title_template", "{{title}}")
}
