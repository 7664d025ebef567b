package ghltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// snapshotVersion is bumped when the state file format changes
// incompatibly; Load refuses other versions.
const snapshotVersion = 1

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
	Users         []User            `json:"users,omitempty"`
}

// Save writes the whole state (locations, companies, tokens with their
// rotation history, pending codes, contacts, calendars with their teams,
// appointments, users) as JSON. Counters and faults are not saved.
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
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	snap := &snapshot{Version: snapshotVersion, Current: maps.Clone(st.current)}
	for _, id := range slices.Sorted(maps.Keys(st.companies)) {
		c := *st.companies[id]
		c.Locations = slices.Clone(c.Locations)
		snap.Companies = append(snap.Companies, c)
	}
	for _, id := range st.locOrder {
		snap.Locations = append(snap.Locations, *st.locations[id])
	}
	for _, tok := range slices.Sorted(maps.Keys(st.access)) {
		snap.AccessTokens = append(snap.AccessTokens, *st.access[tok])
	}
	for _, tok := range slices.Sorted(maps.Keys(st.refresh)) {
		snap.RefreshTokens = append(snap.RefreshTokens, *st.refresh[tok])
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
	for _, u := range snap.Users {
		if _, dup := st.users[u.ID]; !dup {
			st.usersByLo[u.LocationID] = append(st.usersByLo[u.LocationID], u.ID)
		}
		st.users[u.ID] = &u
	}
	s.mu.Lock()
	s.st = st
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
// same directory, synced, then renamed), mode 0600: it holds live tokens.
func (s *Server) SaveFile(path string) (err error) {
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
	if err := s.Save(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
