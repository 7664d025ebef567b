package ghltest

import (
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Contact is a GHL contact as the fake stores and answers it.
type Contact struct {
	ID           string        `json:"id"`
	LocationID   string        `json:"locationId"`
	FirstName    string        `json:"firstName,omitempty"`
	LastName     string        `json:"lastName,omitempty"`
	Name         string        `json:"name,omitempty"`
	Email        string        `json:"email,omitempty"`
	Phone        string        `json:"phone,omitempty"`
	Gender       string        `json:"gender,omitempty"`
	Address1     string        `json:"address1,omitempty"`
	City         string        `json:"city,omitempty"`
	State        string        `json:"state,omitempty"`
	PostalCode   string        `json:"postalCode,omitempty"`
	Country      string        `json:"country,omitempty"`
	Timezone     string        `json:"timezone,omitempty"`
	DateOfBirth  string        `json:"dateOfBirth,omitempty"`
	Source       string        `json:"source,omitempty"`
	CompanyName  string        `json:"companyName,omitempty"`
	DND          bool          `json:"dnd"`
	Tags         []string      `json:"tags"`
	CustomFields []CustomField `json:"customFields,omitempty"`
	DateAdded    time.Time     `json:"dateAdded"`
	DateUpdated  time.Time     `json:"dateUpdated"`
}

// CustomField is one custom field value as written by an upsert.
type CustomField struct {
	ID         string `json:"id,omitempty"`
	Key        string `json:"key,omitempty"`
	FieldValue any    `json:"field_value,omitempty"`
}

func (c *Contact) clone() Contact {
	cc := *c
	cc.Tags = slices.Clone(c.Tags)
	if cc.Tags == nil {
		cc.Tags = []string{}
	}
	cc.CustomFields = slices.Clone(c.CustomFields)
	return cc
}

// contactInput is an upsert or update body; nil fields were absent.
type contactInput struct {
	LocationID   *string        `json:"locationId"`
	FirstName    *string        `json:"firstName"`
	LastName     *string        `json:"lastName"`
	Name         *string        `json:"name"`
	Email        *string        `json:"email"`
	Phone        *string        `json:"phone"`
	Gender       *string        `json:"gender"`
	Address1     *string        `json:"address1"`
	City         *string        `json:"city"`
	State        *string        `json:"state"`
	PostalCode   *string        `json:"postalCode"`
	Country      *string        `json:"country"`
	Timezone     *string        `json:"timezone"`
	DateOfBirth  *string        `json:"dateOfBirth"`
	Source       *string        `json:"source"`
	CompanyName  *string        `json:"companyName"`
	DND          *bool          `json:"dnd"`
	Tags         *[]string      `json:"tags"`
	CustomFields *[]CustomField `json:"customFields"`
}

var (
	upsertKeys = jsonKeys(reflect.TypeFor[contactInput]())
	updateKeys = jsonKeys(reflect.TypeFor[contactInput](), "locationId")
)

var emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// validate returns the 422 messages of a body. An empty email is invalid
// too: GHL's validator only skips absent or null fields.
func (in *contactInput) validate() []string {
	if in.Email != nil && !emailRE.MatchString(*in.Email) {
		return []string{"email must be an email"}
	}
	return nil
}

// apply writes the present fields into c; skipPhone drops the phone, as an
// upsert whose email and phone match two contacts does.
func (in *contactInput) apply(c *Contact, skipPhone bool) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.FirstName, in.FirstName)
	set(&c.LastName, in.LastName)
	set(&c.Email, in.Email)
	if !skipPhone {
		set(&c.Phone, in.Phone)
	}
	set(&c.Gender, in.Gender)
	set(&c.Address1, in.Address1)
	set(&c.City, in.City)
	set(&c.State, in.State)
	set(&c.PostalCode, in.PostalCode)
	set(&c.Country, in.Country)
	set(&c.Timezone, in.Timezone)
	set(&c.DateOfBirth, in.DateOfBirth)
	set(&c.Source, in.Source)
	set(&c.CompanyName, in.CompanyName)
	if in.DND != nil {
		c.DND = *in.DND
	}
	if in.Tags != nil {
		c.Tags = slices.Clone(*in.Tags) // GHL: tags replace all tags
	}
	if in.CustomFields != nil {
		c.CustomFields = slices.Clone(*in.CustomFields)
	}
	switch {
	case in.Name != nil:
		c.Name = *in.Name
	case in.FirstName != nil || in.LastName != nil:
		c.Name = strings.TrimSpace(c.FirstName + " " + c.LastName)
	}
}

func emailKey(loc, email string) string {
	if email == "" {
		return ""
	}
	return loc + "\x00" + strings.ToLower(strings.TrimSpace(email))
}

// phoneKey compares phones by their digits, so formatting differences match.
func phoneKey(loc, phone string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	if digits == "" {
		return ""
	}
	return loc + "\x00" + digits
}

func (st *state) indexContact(c *Contact) {
	if k := emailKey(c.LocationID, c.Email); k != "" {
		st.byEmail[k] = append(st.byEmail[k], c.ID)
	}
	if k := phoneKey(c.LocationID, c.Phone); k != "" {
		st.byPhone[k] = append(st.byPhone[k], c.ID)
	}
}

func (st *state) unindexContact(c *Contact) {
	del := func(m map[string][]string, k string) {
		if k == "" {
			return
		}
		m[k] = slices.DeleteFunc(m[k], func(id string) bool { return id == c.ID })
		if len(m[k]) == 0 {
			delete(m, k)
		}
	}
	del(st.byEmail, emailKey(c.LocationID, c.Email))
	del(st.byPhone, phoneKey(c.LocationID, c.Phone))
}

// firstMatch returns the oldest contact indexed under k.
func (st *state) firstMatch(m map[string][]string, k string) *Contact {
	if k == "" || len(m[k]) == 0 {
		return nil
	}
	return st.contacts[m[k][0]]
}

func (st *state) insertContact(c *Contact) {
	st.contacts[c.ID] = c
	st.contactsByLo[c.LocationID] = append(st.contactsByLo[c.LocationID], c.ID)
	st.indexContact(c)
}

const msgNoLocationAccess = "The token does not have access to this location"

// handleUpsertContact serves POST /contacts/upsert: match the location's
// contact by email (case-insensitive), else by phone; update it or create.
func (s *Server) handleUpsertContact(w http.ResponseWriter, r *http.Request, g *grant) {
	var in contactInput
	if !decodeBody(w, r, &in, upsertKeys) {
		return
	}
	loc := str(in.LocationID)
	if loc == "" {
		writeValidation(w, "locationId should not be empty")
		return
	}
	if msgs := in.validate(); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	match := s.st.firstMatch(s.st.byEmail, emailKey(loc, str(in.Email)))
	skipPhone := false
	if byPhone := s.st.firstMatch(s.st.byPhone, phoneKey(loc, str(in.Phone))); byPhone != nil {
		if match == nil {
			match = byPhone
		} else {
			// Email and phone match two contacts: GHL updates the email's
			// and silently drops the phone.
			skipPhone = byPhone != match
		}
	}
	created := match == nil
	if created {
		match = &Contact{ID: newID(), LocationID: loc, Tags: []string{}, DateAdded: now, DateUpdated: now}
		in.apply(match, false)
		s.st.insertContact(match)
		s.stats.contactCreates[loc]++
	} else {
		s.st.unindexContact(match)
		in.apply(match, skipPhone)
		match.DateUpdated = now
		s.st.indexContact(match)
		s.stats.contactUpdates[loc]++
	}
	s.changedLocked()
	c := match.clone()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		New     bool    `json:"new"`
		Contact Contact `json:"contact"`
		TraceID string  `json:"traceId"`
	}{created, c, newTraceID()})
}

// contactFor returns a copy of contact id if g may read it, else answers.
func (s *Server) contactFor(w http.ResponseWriter, id string, g *grant) (Contact, bool) {
	s.mu.Lock()
	c := s.st.contacts[id]
	var cc Contact
	if c != nil {
		cc = c.clone()
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		writeError(w, http.StatusNotFound, "Contact not found")
		return cc, false
	case !g.canAccess(cc.LocationID):
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return cc, false
	}
	return cc, true
}

// handleGetContact serves GET /contacts/{id}.
func (s *Server) handleGetContact(w http.ResponseWriter, r *http.Request, g *grant) {
	c, ok := s.contactFor(w, r.PathValue("id"), g)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Contact Contact `json:"contact"`
	}{c})
}

// handleUpdateContact serves PUT /contacts/{id}.
func (s *Server) handleUpdateContact(w http.ResponseWriter, r *http.Request, g *grant) {
	id := r.PathValue("id")
	if _, ok := s.contactFor(w, id, g); !ok {
		return
	}
	var in contactInput
	if !decodeBody(w, r, &in, updateKeys) {
		return
	}
	if msgs := in.validate(); msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	c := s.st.contacts[id]
	s.st.unindexContact(c)
	in.apply(c, false)
	c.DateUpdated = now
	s.st.indexContact(c)
	s.stats.contactUpdates[c.LocationID]++
	s.changedLocked()
	cc := c.clone()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Succeded bool    `json:"succeded"` // sic, as GHL spells it
		Contact  Contact `json:"contact"`
	}{true, cc})
}

// handleDuplicateContact serves GET /contacts/search/duplicate: the
// location's contact with the email (or else the phone, "number"), or null.
func (s *Server) handleDuplicateContact(w http.ResponseWriter, r *http.Request, g *grant) {
	q := r.URL.Query()
	loc := q.Get("locationId")
	if loc == "" {
		writeValidation(w, "locationId should not be empty")
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	s.mu.Lock()
	c := s.st.firstMatch(s.st.byEmail, emailKey(loc, q.Get("email")))
	if c == nil {
		c = s.st.firstMatch(s.st.byPhone, phoneKey(loc, q.Get("number")))
	}
	var out *Contact
	if c != nil {
		cc := c.clone()
		out = &cc
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Contact *Contact `json:"contact"`
		TraceID string   `json:"traceId"`
	}{out, newTraceID()})
}

// Contacts returns copies of the location's contacts, oldest first.
func (s *Server) Contacts(locationID string) []Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.st.contactsByLo[locationID]
	out := make([]Contact, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.st.contacts[id].clone())
	}
	return out
}

// AddContact stores a contact directly, for seeding: it is not counted as
// a create. A missing ID or DateAdded is filled in; c.LocationID is
// registered if unknown. It returns the stored contact.
func (s *Server) AddContact(c Contact) Contact {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedLocked()
	s.st.addLocationLockedIfMissing(c.LocationID)
	if c.ID == "" {
		c.ID = newID()
	}
	if c.DateAdded.IsZero() {
		c.DateAdded = now
	}
	if c.DateUpdated.IsZero() {
		c.DateUpdated = c.DateAdded
	}
	stored := c.clone()
	if old := s.st.contacts[c.ID]; old != nil {
		s.st.unindexContact(old)
		if old.LocationID != stored.LocationID {
			s.st.contactsByLo[old.LocationID] = slices.DeleteFunc(s.st.contactsByLo[old.LocationID],
				func(id string) bool { return id == c.ID })
			s.st.contactsByLo[stored.LocationID] = append(s.st.contactsByLo[stored.LocationID], c.ID)
		}
		*old = stored
		s.st.indexContact(old)
		return old.clone()
	}
	s.st.insertContact(&stored)
	return stored.clone()
}
