package ghltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// snapshotVersion is bumped when the state file format changes
// incompatibly; Load refuses other versions.
const snapshotVersion = 1

// pruneAfter is how long after its death (expiry, or spending) a token
// is still written with SaveOnChange: far past the 30 s grace, so every
// answer a pruned token could get is the refusal it gets unknown.
const pruneAfter = 24 * time.Hour

// snapshot is the JSON form of the state. Counters, rate limit windows and
// faults are not part of it.
type snapshot struct {
	Version       int               `json:"version"`
	Companies     []company         `json:"companies"`
	Locations     []location        `json:"locations"`
	AccessTokens  []accessToken     `json:"accessTokens"`
	RefreshTokens []refreshToken    `json:"refreshTokens"`
	Current       map[string]string `json:"currentRefreshTokens"`
	Codes         []authCode        `json:"codes"`
	Contacts      []Contact         `json:"contacts"`
	Calendars     []Calendar        `json:"calendars"`
	Appointments  []Appointment     `json:"appointments"`
	Notes         map[string][]Note `json:"notes,omitempty"` // appointment ID -> its notes
	Users         []User            `json:"users,omitempty"`

	// changes is the change count the snapshot holds.
	changes uint64
}

// Save writes the whole state (locations, companies, tokens with their
// rotation history, pending codes, contacts, calendars with their teams,
// appointments and their notes, users) as JSON. Counters and faults are not saved.
func (s *Server) Save(w io.Writer) error {
	snap := s.snapshot()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snap); err != nil {
		return fmt.Errorf("ghltest.Save: %w", err)
	}
	return nil
}

// snapshot copies the state; the copies share only never-modified slices
// (grant.Approved).
func (s *Server) snapshot() *snapshot {
	now := s.opts.Now()
	dead := now.Add(-pruneAfter)
	prune := s.opts.SaveOnChange
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	snap := &snapshot{Version: snapshotVersion, Current: maps.Clone(st.current), changes: s.changes}
	for _, id := range slices.Sorted(maps.Keys(st.companies)) {
		c := *st.companies[id]
		c.Locations = slices.Clone(c.Locations)
		snap.Companies = append(snap.Companies, c)
	}
	for _, id := range st.locOrder {
		snap.Locations = append(snap.Locations, *st.locations[id])
	}
	for _, tok := range slices.Sorted(maps.Keys(st.access)) {
		if at := st.access[tok]; !prune || !at.Expiry.Before(dead) {
			snap.AccessTokens = append(snap.AccessTokens, *at)
		}
	}
	for _, tok := range slices.Sorted(maps.Keys(st.refresh)) {
		rt := st.refresh[tok]
		if gone := rt.Expiry.Before(dead) || (rt.spent() && rt.SpentAt.Before(dead)); !prune || !gone {
			snap.RefreshTokens = append(snap.RefreshTokens, *rt)
		}
	}
	for _, code := range slices.Sorted(maps.Keys(st.codes)) {
		if c := st.codes[code]; !c.Used && now.Before(c.Expiry) {
			snap.Codes = append(snap.Codes, *c)
		}
	}
	for _, loc := range slices.Sorted(maps.Keys(st.contactsByLo)) {
		for _, id := range st.contactsByLo[loc] {
			snap.Contacts = append(snap.Contacts, st.contacts[id].clone())
		}
	}
	for _, id := range st.calOrder {
		snap.Calendars = append(snap.Calendars, st.calendars[id].clone())
	}
	for _, loc := range slices.Sorted(maps.Keys(st.apptsByLo)) {
		for _, id := range st.apptsByLo[loc] {
			snap.Appointments = append(snap.Appointments, *st.appointments[id])
			for _, n := range st.notes[id] {
				if snap.Notes == nil {
					snap.Notes = map[string][]Note{}
				}
				snap.Notes[id] = append(snap.Notes[id], *n)
			}
		}
	}
	for _, loc := range slices.Sorted(maps.Keys(st.usersByLo)) {
		for _, id := range st.usersByLo[loc] {
			snap.Users = append(snap.Users, *st.users[id])
		}
	}
	return snap
}

// Load replaces the whole state with one written by Save. On error the
// state is left as it was. Counters and faults are kept.
func (s *Server) Load(r io.Reader) error {
	var snap snapshot
	if err := json.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("ghltest.Load: %w", err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("ghltest.Load: state version %d, want %d", snap.Version, snapshotVersion)
	}
	st := newState()
	for _, c := range snap.Companies {
		st.companies[c.ID] = &c
	}
	for _, l := range snap.Locations {
		if _, dup := st.locations[l.ID]; !dup {
			st.locOrder = append(st.locOrder, l.ID)
		}
		st.locations[l.ID] = &l
	}
	for _, at := range snap.AccessTokens {
		st.access[at.Token] = &at
	}
	for _, rt := range snap.RefreshTokens {
		st.refresh[rt.Token] = &rt
	}
	if snap.Current != nil {
		st.current = snap.Current
	}
	for _, c := range snap.Codes {
		st.codes[c.Code] = &c
	}
	for _, c := range snap.Contacts {
		c := c.clone()
		st.insertContact(&c)
	}
	for _, c := range snap.Calendars {
		if _, dup := st.calendars[c.ID]; !dup {
			st.calOrder = append(st.calOrder, c.ID)
		}
		st.calendars[c.ID] = &c
	}
	for _, a := range snap.Appointments {
		st.appointments[a.ID] = &a
		st.apptsByLo[a.LocationID] = append(st.apptsByLo[a.LocationID], a.ID)
	}
	for id, notes := range snap.Notes {
		for _, n := range notes {
			n.AppointmentID = id
			st.notes[id] = append(st.notes[id], &n)
		}
	}
	for _, u := range snap.Users {
		if _, dup := st.users[u.ID]; !dup {
			st.usersByLo[u.LocationID] = append(st.usersByLo[u.LocationID], u.ID)
		}
		st.users[u.ID] = &u
	}
	s.mu.Lock()
	s.st = st
	s.changedLocked()
	s.mu.Unlock()
	return nil
}

// LoadFile loads the state SaveFile wrote to path. A missing file is no
// error: loaded is then false and the state is left as it was.
func (s *Server) LoadFile(path string) (loaded bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ghltest.LoadFile: %w", err)
	}
	defer f.Close()
	if err := s.Load(f); err != nil {
		return false, fmt.Errorf("ghltest.LoadFile %s: %w", path, err)
	}
	return true, nil
}

// SaveFile writes the state to path atomically (a temporary file in the
// same directory, synced, renamed, and the directory synced), mode 0600:
// it holds live tokens.
func (s *Server) SaveFile(path string) error {
	return writeFile(path, s.snapshot())
}

func writeFile(path string, snap *snapshot) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("ghltest.SaveFile %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("ghltest.SaveFile %s: %w", path, err)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snap); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename is durable once the directory is synced. Where a
	// directory cannot be opened or synced (Windows), the rename alone
	// stands: the file is never seen half written either way.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// durable reports whether answers wait for their changes to be saved.
func (s *Server) durable() bool { return s.opts.SaveOnChange && s.opts.StatePath != "" }

// serveHTTP serves a request; with SaveOnChange its answer is held back
// until the state file holds every change made so far, its own included.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.durable() {
		s.serve(w, r)
		return
	}
	bw := &bufferedWriter{header: make(http.Header)}
	defer func() {
		// A Drop fault aborts the handler by panicking, possibly after the
		// request was acted on (DropAfter): that act is saved too.
		if p := recover(); p != nil {
			if err := s.saveChanges(); err != nil {
				s.opts.Logf("ghltest: %v", err)
			}
			panic(p)
		}
	}()
	s.serve(bw, r)
	if err := s.saveChanges(); err != nil {
		s.opts.Logf("ghltest: %v", err)
		writeError(w, http.StatusServiceUnavailable, "The fake GHL could not save its state")
		return
	}
	bw.flush(w)
}

// saveChanges writes the state file unless it holds every change already.
// Saves take turns: a request whose change a save in progress missed
// waits for it and then saves, and one whose change it caught waits for
// it and is done, so concurrent answers share saves.
func (s *Server) saveChanges() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	pending := s.changes != s.saved
	s.mu.Unlock()
	if !pending {
		return nil
	}
	snap := s.snapshot()
	if err := writeFile(s.opts.StatePath, snap); err != nil {
		return err
	}
	s.saved = snap.changes
	return nil
}
