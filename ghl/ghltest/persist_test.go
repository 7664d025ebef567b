package ghltest_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// reopen starts a fake from the state file as a process started after a
// SIGKILL would: whatever the file holds, nothing else.
func reopen(t *testing.T, path string, clk *clock) *ghltest.Server {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := ghltest.NewServer(ghltest.Options{ClientID: clientID, ClientSecret: clientSecret, Now: clk.Now})
	t.Cleanup(s.Close)
	if err := s.Load(f); err != nil {
		t.Fatal(err)
	}
	return s
}

// With SaveOnChange every answer that reports a change is sent once the
// state file holds it, without Close: a fake started from the file after
// a kill knows the rotated token (and still serves the spent one within
// the grace, for a client whose answer was lost), the contact and the
// appointment.
func TestSaveOnChange(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ghl.json")
	s, clk := setup(t, ghltest.Options{StatePath: path, SaveOnChange: true})
	s.AddCalendar("loc1", "cal1", "Physio")
	_, rt, _ := s.IssueToken("loc1")
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the Go methods wrote the file; only answers should")
	}

	tok := okToken(t, refresh(t, s, rt))
	after := reopen(t, path, clk)
	if after.CurrentRefreshToken("loc1") != tok.RefreshToken || !after.Valid("loc1", tok.AccessToken) {
		t.Fatal("the file lacks the rotation the answer reported")
	}
	if again := okToken(t, refresh(t, after, rt)); again.RefreshToken != tok.RefreshToken {
		t.Errorf("the spent token within the grace after a restart: got %s, want the same new token", again.RefreshToken)
	}

	var u upsertJSON
	call(t, s, "POST", "/contacts/upsert", tok.AccessToken, ghltest.VersionContacts,
		map[string]any{"locationId": "loc1", "email": "pat@example.com"}).decode(t, &u)
	r := call(t, s, "POST", "/calendars/events/appointments", tok.AccessToken, ghltest.VersionCalendars,
		map[string]any{"calendarId": "cal1", "locationId": "loc1", "contactId": u.Contact.ID, "startTime": "2025-03-03T10:00:00Z"})
	if r.status != http.StatusOK {
		t.Fatalf("create appointment: %d %s", r.status, r.body)
	}
	after = reopen(t, path, clk)
	if cs, as := after.Contacts("loc1"), after.Appointments("loc1"); len(cs) != 1 || cs[0].ID != u.Contact.ID || len(as) != 1 {
		t.Fatalf("the file holds contacts %+v and appointments %+v, want the one created of each", cs, as)
	}

	// Two days on (the access tokens expired after one), a change leaves
	// the tokens dead for a day out of the file; the spent one is refused
	// as before.
	clk.Advance(49 * time.Hour)
	tok2 := okToken(t, refresh(t, s, tok.RefreshToken))
	var file struct {
		RefreshTokens []json.RawMessage `json:"refreshTokens"`
		AccessTokens  []json.RawMessage `json:"accessTokens"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	// Left: tok (spent just now, in its grace), tok2 and tok2's access
	// token.
	if len(file.RefreshTokens) != 2 || len(file.AccessTokens) != 1 {
		t.Errorf("the file holds %d refresh and %d access tokens, want 2 and 1", len(file.RefreshTokens), len(file.AccessTokens))
	}
	after = reopen(t, path, clk)
	checkError(t, refresh(t, after, rt), http.StatusBadRequest, invalidGrant)
	if after.CurrentRefreshToken("loc1") != tok2.RefreshToken {
		t.Error("the current token is not the last rotation")
	}
}

// A save that fails answers 503, not the change; the change stays, so the
// client's retry (within the grace) gets the rotated token once the file
// can be written.
func TestSaveOnChangeFailure(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "ghl.json")
	var logged []string
	s, clk := setup(t, ghltest.Options{StatePath: path, SaveOnChange: true,
		Logf: func(format string, args ...any) { logged = append(logged, format) }})
	_, rt, _ := s.IssueToken("loc1")
	r := refresh(t, s, rt)
	if r.status != http.StatusServiceUnavailable || len(logged) == 0 {
		t.Fatalf("refresh with no directory for the file: %d %s (logged %q), want 503", r.status, r.body, logged)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tok := okToken(t, refresh(t, s, rt))
	if after := reopen(t, path, clk); after.CurrentRefreshToken("loc1") != tok.RefreshToken {
		t.Error("the retried answer's token is not in the file")
	}
}
