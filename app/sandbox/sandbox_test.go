package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store/storetest"
)

func start(t *testing.T, path string) *Server {
	t.Helper()
	s, err := Start(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The page shows what the fake holds per demo location: a contact by
// name, an appointment with its contact's name, the counts.
func TestPage(t *testing.T) {
	t.Parallel()
	s := start(t, filepath.Join(t.TempDir(), "ghlsync-sandbox.json"))
	north := Locations[0].ID
	c := s.Fake.AddContact(ghltest.Contact{LocationID: north, FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"})
	access, _, _ := s.Fake.IssueToken(north)
	body, _ := json.Marshal(map[string]any{"calendarId": north + "-cal", "locationId": north, "contactId": c.ID,
		"startTime": "2026-03-03T10:00:00+01:00", "title": "Knee, follow-up"})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/calendars/events/appointments", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Version", ghltest.VersionCalendars)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create appointment: %d", resp.StatusCode)
	}

	rec := httptest.NewRecorder()
	s.Page().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PagePath, nil))
	page, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`<td><a href="#` + north + `">` + north + `</a></td><td>North Clinic</td><td>1</td><td>1</td>`,
		`<td>Ada Lovelace</td><td>ada@example.com</td>`,
		`<td>2026-03-03 10:00</td>`, `<td>Knee, follow-up</td>`, `<td>confirmed</td><td>Ada Lovelace</td>`,
		`<td>South Clinic</td><td>0</td><td>0</td>`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(string(page), access) {
		t.Error("the page shows an access token")
	}
}

// A first start writes the demo locations to the file at once, so a
// process killed before any answer starts again with the same GHL; a
// later start keeps what the file holds.
func TestStartKeepsTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ghlsync-sandbox.json")
	first := start(t, path)
	c := first.Fake.AddContact(ghltest.Contact{LocationID: Locations[1].ID, Email: "x@example.com"})
	// No Close: what a SIGKILL leaves. The Go method's change is not an
	// answer, so the file has only the seeded locations.
	second := start(t, path)
	if got := second.Fake.Locations(); len(got) != len(Locations) || len(second.Fake.Contacts(Locations[1].ID)) != 0 {
		t.Fatalf("locations %v, contacts %v; want the %d demo locations, no contact", got, second.Fake.Contacts(Locations[1].ID), len(Locations))
	}
	if err := first.Fake.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	third := start(t, path)
	if got := third.Fake.Contacts(Locations[1].ID); len(got) != 1 || got[0].ID != c.ID {
		t.Fatalf("contacts %v after a restart, want the saved one", got)
	}
}

// Seed fills each table only while it is empty: after a start killed
// between the two inserts (patients there, appointments not), the next
// start adds the appointments and leaves the patients as they are.
func TestSeedFillsWhatIsEmpty(t *testing.T) {
	t.Parallel()
	st, dbURL := storetest.Open(t, "")
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if err := Seed(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	want := func(wantP, wantA int64) {
		t.Helper()
		p, err := st.CountPatients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, err := st.CountAppointments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p != wantP || a != wantA {
			t.Fatalf("%d patients and %d appointments, want %d and %d", p, a, wantP, wantA)
		}
	}
	all := int64(len(Locations))
	want(all*sandboxPatients, all*sandboxAppointments)
	if err := storetest.DB(t, dbURL).Exec("DELETE FROM appointments").Error; err != nil {
		t.Fatal(err)
	}
	if err := Seed(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	want(all*sandboxPatients, all*sandboxAppointments)
}
