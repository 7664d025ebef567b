package ghltest

import (
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Contact is a GHL contact as the fake stores it. Answers add the side
// fields of GHL's answers (contactJSON).
type Contact struct {
	ID         string `json:"id"`
	LocationID string `json:"locationId"`
	FirstName  string `json:"firstName,omitempty"`
	LastName   string `json:"lastName,omitempty"`
	Name       string `json:"name,omitempty"`
	Email      string `json:"email,omitempty"`
	Phone      string `json:"phone,omitempty"`
	Gender     string `json:"gender,omitempty"`
	Address1   string `json:"address1,omitempty"`
	City       string `json:"city,omitempty"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postalCode,omitempty"`
	Country    string `json:"country,omitempty"`
	Timezone   string `json:"timezone,omitempty"`
	// DateOfBirth is stored as YYYY-MM-DD; each endpoint answers it in its
	// own form (see dobForm).
	DateOfBirth string `json:"dateOfBirth,omitempty"`
	Source      string `json:"source,omitempty"`
	CompanyName string `json:"companyName,omitempty"`
	DND         bool   `json:"dnd"`
	// DNDSettings is the do not disturb of each channel a write set.
	DNDSettings  map[string]DNDSetting `json:"dndSettings,omitempty"`
	Tags         []string              `json:"tags"`
	CustomFields []CustomField         `json:"customFields,omitempty"`
	DateAdded    time.Time             `json:"dateAdded"`
	DateUpdated  time.Time             `json:"dateUpdated"`
}

// CustomField is one custom field value of a contact, as GHL answers it:
// the location's field id and the value.
type CustomField struct {
	ID    string `json:"id"`
	Value any    `json:"value"`
}

func (c *Contact) clone() Contact {
	cc := *c
	cc.Tags = slices.Clone(c.Tags)
	if cc.Tags == nil {
		cc.Tags = []string{}
	}
	cc.CustomFields = slices.Clone(c.CustomFields)
	cc.DNDSettings = maps.Clone(c.DNDSettings)
	if cc.DNDSettings == nil {
		cc.DNDSettings = map[string]DNDSetting{} // as GHL answers it
	}
	return cc
}

// DNDSetting is one channel's do not disturb (GHL's DndSettingSchema).
type DNDSetting struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	Code    string `json:"code,omitempty"`
}

// dndChannels and dndStatuses are what GHL's DndSettingsSchema and
// DndSettingSchema take.
var (
	dndChannels = []string{"Call", "Email", "SMS", "WhatsApp", "GMB", "FB"}
	dndStatuses = []string{"active", "inactive", "permanent"}
)

// customFieldInput is one custom field value of a write, named by the
// field's id or key, as GHL takes it.
type customFieldInput struct {
	ID         string `json:"id"`
	Key        string `json:"key"`
	FieldValue any    `json:"field_value"`
}

// contactInput is an upsert, create or update body; nil fields were absent.
type contactInput struct {
	LocationID   *string                      `json:"locationId"`
	FirstName    *string                      `json:"firstName"`
	LastName     *string                      `json:"lastName"`
	Name         *string                      `json:"name"`
	Email        *string                      `json:"email"`
	Phone        *string                      `json:"phone"`
	Gender       *string                      `json:"gender"`
	Address1     *string                      `json:"address1"`
	City         *string                      `json:"city"`
	State        *string                      `json:"state"`
	PostalCode   *string                      `json:"postalCode"`
	Country      *string                      `json:"country"`
	Timezone     *string                      `json:"timezone"`
	DateOfBirth  *string                      `json:"dateOfBirth"`
	Source       *string                      `json:"source"`
	CompanyName  *string                      `json:"companyName"`
	DND          *bool                        `json:"dnd"`
	DNDSettings  *map[string]*dndSettingInput `json:"dndSettings"`
	Tags         *[]string                    `json:"tags"`
	CustomFields *[]customFieldInput          `json:"customFields"`
	// CreateNewIfDuplicateAllowed is the upsert's alone.
	CreateNewIfDuplicateAllowed *bool `json:"createNewIfDuplicateAllowed"`
}

// dndSettingInput is one channel of a write's dndSettings.
type dndSettingInput struct {
	Status  *string `json:"status"`
	Message *string `json:"message"`
	Code    *string `json:"code"`
}

// The keys each write takes. GHL's update DTO has no locationId, gender
// or companyName: PUT answers 422 "property X should not exist" for them
// (#313).
var (
	upsertKeys = jsonKeys(reflect.TypeFor[contactInput]())
	createKeys = jsonKeys(reflect.TypeFor[contactInput](), "createNewIfDuplicateAllowed")
	updateKeys = jsonKeys(reflect.TypeFor[contactInput](), "locationId", "gender", "companyName", "createNewIfDuplicateAllowed")
)

var (
	emailRE   = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
)

// dobLayouts are the forms GHL's DTOs list for dateOfBirth.
var dobLayouts = []string{"2006-01-02", "2006/01/02", "01/02/2006", "01-02-2006", "2006.01.02", "01.02.2006",
	"2006_01_02", "01_02_2006"}

// validate returns the 422 messages of a body, and normalises its date of
// birth to YYYY-MM-DD. An empty email is invalid too: GHL's validator only
// skips absent or null fields. country must be an ISO 3166 alpha-2 code,
// as GHL.md says GHL takes it.
func (in *contactInput) validate() []string {
	var msgs []string
	if in.Email != nil && !emailRE.MatchString(*in.Email) {
		msgs = append(msgs, "email must be an email")
	}
	if in.Country != nil && *in.Country != "" && !countryRE.MatchString(*in.Country) {
		msgs = append(msgs, "country must be a valid ISO 3166-1 alpha-2 country code")
	}
	if in.DNDSettings != nil {
		for _, ch := range slices.Sorted(maps.Keys(*in.DNDSettings)) {
			ds := (*in.DNDSettings)[ch]
			switch {
			case !slices.Contains(dndChannels, ch):
				msgs = append(msgs, "dndSettings.property "+ch+" should not exist")
			case ds == nil || ds.Status == nil:
				msgs = append(msgs, "dndSettings."+ch+".status should not be empty")
			case !slices.Contains(dndStatuses, *ds.Status):
				msgs = append(msgs, "dndSettings."+ch+".status must be one of the following values: "+strings.Join(dndStatuses, ", "))
			}
		}
	}
	if in.DateOfBirth != nil && *in.DateOfBirth != "" {
		ok := false
		for _, layout := range dobLayouts {
			if t, err := time.Parse(layout, *in.DateOfBirth); err == nil {
				day := t.Format("2006-01-02")
				in.DateOfBirth, ok = &day, true
				break
			}
		}
		if !ok {
			msgs = append(msgs, "dateOfBirth must be a valid date")
		}
	}
	return msgs
}

// apply writes the present fields into c; skip drops the email or phone
// ("email", "phone"), as an upsert whose email and phone match two
// contacts does. Custom fields are resolved against the location's fields
// (fieldID); values of unknown fields are dropped, as GHL drops them, and
// counted in *unknown.
func (in *contactInput) apply(c *Contact, skip string, fieldID func(id, key string) string, unknown *int) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.FirstName, in.FirstName)
	set(&c.LastName, in.LastName)
	if skip != "email" {
		set(&c.Email, in.Email)
	}
	if skip != "phone" {
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
	if in.DNDSettings != nil {
		// A write sets the channels it names and keeps the others.
		for ch, ds := range *in.DNDSettings {
			if c.DNDSettings == nil {
				c.DNDSettings = make(map[string]DNDSetting)
			}
			c.DNDSettings[ch] = DNDSetting{Status: *ds.Status, Message: str(ds.Message), Code: str(ds.Code)}
		}
	}
	if in.Tags != nil {
		c.Tags = slices.Clone(*in.Tags) // GHL: tags replace all tags
	}
	if in.CustomFields != nil {
		// A write sets the fields it names and keeps the others.
		for _, f := range *in.CustomFields {
			id := fieldID(f.ID, f.Key)
			if id == "" {
				*unknown++
				continue
			}
			i := slices.IndexFunc(c.CustomFields, func(v CustomField) bool { return v.ID == id })
			if i < 0 {
				c.CustomFields = append(c.CustomFields, CustomField{ID: id, Value: f.FieldValue})
			} else {
				c.CustomFields[i].Value = f.FieldValue
			}
		}
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

// firstMatch returns the oldest contact indexed under k other than the
// contact except.
func (st *state) firstMatch(m map[string][]string, k, except string) *Contact {
	if k == "" {
		return nil
	}
	for _, id := range m[k] {
		if id != except {
			return st.contacts[id]
		}
	}
	return nil
}

// match returns the location's contact that value of field ("email" or
// "phone") matches, other than except.
func (st *state) match(loc, field, value, except string) *Contact {
	if field == "email" {
		return st.firstMatch(st.byEmail, emailKey(loc, value), except)
	}
	return st.firstMatch(st.byPhone, phoneKey(loc, value), except)
}

func (st *state) insertContact(c *Contact) {
	st.contacts[c.ID] = c
	delete(st.searchableAt, c.ID)
	st.contactsByLo[c.LocationID] = append(st.contactsByLo[c.LocationID], c.ID)
	st.indexContact(c)
}

// duplicateLocked returns the contact, other than except, that the
// location's duplicate rule finds for the email and phone of in, and the
// field that matched, when the location does not allow duplicates.
func (s *Server) duplicateLocked(loc string, in *contactInput, except string) (*Contact, string) {
	l := s.st.locations[loc]
	if l == nil || l.AllowDuplicates {
		return nil, ""
	}
	for _, field := range l.matchOrder() {
		v := in.Email
		if field == "phone" {
			v = in.Phone
		}
		if c := s.st.match(loc, field, str(v), except); c != nil {
			return c, field
		}
	}
	return nil, ""
}

// writeDuplicate answers GHL's refusal of a duplicate contact, which names
// the contact that holds the value.
func writeDuplicate(w http.ResponseWriter, contactID, field string) {
	writeJSON(w, http.StatusBadRequest, struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
		Meta       any    `json:"meta"`
	}{http.StatusBadRequest, "This location does not allow duplicated contacts.", struct {
		ContactID     string `json:"contactId"`
		MatchingField string `json:"matchingField"`
	}{contactID, field}})
}

const (
	msgNoLocationAccess = "The token does not have access to this location"
	// msgUpsertNeedsKey is the upsert's refusal of a body with neither
	// email nor phone (GHL issues #59, #37; the exact wording is
	// unconfirmed).
	msgUpsertNeedsKey = "Either email or phone is required to upsert a contact"
)

// decodeContactWrite reads the body of an upsert or create, with the keys
// that call takes, and checks it as GHL does: a valid body naming a
// location the token may write. ok is false when it has answered.
func (s *Server) decodeContactWrite(w http.ResponseWriter, r *http.Request, g *grant, keys []string) (in contactInput, loc string, ok bool) {
	if !decodeBody(w, r, &in, keys) {
		return in, "", false
	}
	loc = str(in.LocationID)
	if loc == "" {
		writeValidation(w, "locationId should not be empty")
		return in, "", false
	}
	if msgs := in.validate(); msgs != nil {
		writeValidation(w, msgs...)
		return in, "", false
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return in, "", false
	}
	return in, loc, true
}

// handleUpsertContact serves POST /contacts/upsert: it needs an email or a
// phone, matches the location's contact by them in the order of the
// location's duplicate setting (email first unless PhoneFirst), updates it
// or creates one. When the two fields match two contacts, the first one's
// contact is updated and the other field silently ignored, as GHL does.
func (s *Server) handleUpsertContact(w http.ResponseWriter, r *http.Request, g *grant) {
	in, loc, ok := s.decodeContactWrite(w, r, g, upsertKeys)
	if !ok {
		return
	}
	if str(in.Email) == "" && str(in.Phone) == "" {
		s.mu.Lock()
		s.stats.upsertsWithoutKey[loc]++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, msgUpsertNeedsKey)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	l := s.st.addLocationLockedIfMissing(loc)
	var match *Contact
	skip := ""
	if !(l.AllowDuplicates && in.CreateNewIfDuplicateAllowed != nil && *in.CreateNewIfDuplicateAllowed) {
		order := l.matchOrder()
		values := map[string]string{"email": str(in.Email), "phone": str(in.Phone)}
		first := s.st.match(loc, order[0], values[order[0]], "")
		second := s.st.match(loc, order[1], values[order[1]], "")
		match = first
		switch {
		case first == nil:
			match = second
		case second != nil && second != first:
			skip = order[1]
			s.stats.ignoredFields[loc]++
		}
	}
	created := match == nil
	if created {
		match = &Contact{ID: newID(), LocationID: loc, Tags: []string{}, DateAdded: now, DateUpdated: now}
		in.apply(match, "", s.fieldIDLocked(loc), &s.stats.unknownCustomFields)
		s.st.insertContact(match)
		s.lagSearchLocked(match.ID, now)
		s.stats.contactCreates[loc]++
		s.emitContactLocked("ContactCreate", match)
	} else {
		s.st.unindexContact(match)
		in.apply(match, skip, s.fieldIDLocked(loc), &s.stats.unknownCustomFields)
		match.DateUpdated = now
		s.st.indexContact(match)
		s.stats.contactUpdates[loc]++
		s.emitContactLocked("ContactUpdate", match)
	}
	s.changedLocked()
	c := match.answer(dobDate)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		New     bool        `json:"new"`
		Contact contactJSON `json:"contact"`
		TraceID string      `json:"traceId"`
	}{created, c, newTraceID()})
}

// handleCreateContact serves POST /contacts/: a new contact, without
// matching, but refused with the duplicate answer when the location does
// not allow duplicates and its email or phone is another contact's. It
// answers 201 with the contact, its date of birth as an ISO timestamp.
func (s *Server) handleCreateContact(w http.ResponseWriter, r *http.Request, g *grant) {
	in, loc, ok := s.decodeContactWrite(w, r, g, createKeys)
	if !ok {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	s.st.addLocationLockedIfMissing(loc)
	if dup, field := s.duplicateLocked(loc, &in, ""); dup != nil {
		s.stats.duplicateRefusals[loc]++
		s.mu.Unlock()
		writeDuplicate(w, dup.ID, field)
		return
	}
	c := &Contact{ID: newID(), LocationID: loc, Tags: []string{}, DateAdded: now, DateUpdated: now}
	in.apply(c, "", s.fieldIDLocked(loc), &s.stats.unknownCustomFields)
	s.st.insertContact(c)
	s.lagSearchLocked(c.ID, now)
	s.stats.contactCreates[loc]++
	s.emitContactLocked("ContactCreate", c)
	out := c.answer(dobISO)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, struct {
		Contact contactJSON `json:"contact"`
	}{out})
}

// wellFormedID reports whether id has the shape of the fake's ids: 20
// characters of idAlphabet. GHL answers 500 to a GET or PUT of an id that
// is not one of its ids' shape (#6); the fake calls that malformed.
func wellFormedID(id string) bool {
	if len(id) != 20 {
		return false
	}
	for i := range len(id) {
		if !strings.ContainsRune(idAlphabet, rune(id[i])) {
			return false
		}
	}
	return true
}

// contactFor returns a copy of contact id if g may read it, else answers:
// 500 for a malformed id, 400 "Contact with id … not found" for an unknown
// one (GHL documents no 404 for contacts), 403 for another location's.
func (s *Server) contactFor(w http.ResponseWriter, id string, g *grant) (Contact, bool) {
	s.mu.Lock()
	c := s.st.contacts[id]
	var cc Contact
	switch {
	case c != nil:
		cc = c.clone()
	case !wellFormedID(id):
		s.stats.malformedIDs[g.subject()]++
	default:
		s.stats.notFound[g.subject()]++
	}
	s.mu.Unlock()
	switch {
	case c == nil && !wellFormedID(id):
		writeError(w, http.StatusInternalServerError, "Internal server error")
		return cc, false
	case c == nil:
		writeError(w, http.StatusBadRequest, "Contact with id "+id+" not found")
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
		Contact contactJSON `json:"contact"`
	}{c.answer(dobDate)})
}

// handleUpdateContact serves PUT /contacts/{id}. When the location does
// not allow duplicates, an email or phone that another contact holds is
// refused with the duplicate answer.
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
	if c == nil { // deleted meanwhile
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Contact with id "+id+" not found")
		return
	}
	if dup, field := s.duplicateLocked(c.LocationID, &in, id); dup != nil {
		s.stats.duplicateRefusals[c.LocationID]++
		s.mu.Unlock()
		writeDuplicate(w, dup.ID, field)
		return
	}
	s.st.unindexContact(c)
	in.apply(c, "", s.fieldIDLocked(c.LocationID), &s.stats.unknownCustomFields)
	c.DateUpdated = now
	s.st.indexContact(c)
	s.stats.contactUpdates[c.LocationID]++
	s.changedLocked()
	s.emitContactLocked("ContactUpdate", c)
	out := c.answer(dobDate)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Succeded bool        `json:"succeded"` // sic, as GHL spells it
		Contact  contactJSON `json:"contact"`
	}{true, out})
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
	c := s.st.match(loc, "email", q.Get("email"), "")
	if c == nil {
		c = s.st.match(loc, "phone", q.Get("number"), "")
	}
	var out *contactJSON
	if c != nil {
		cc := c.answer(dobDate)
		out = &cc
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Contact *contactJSON `json:"contact"`
		TraceID string       `json:"traceId"`
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

// DeleteContact removes a contact, as a user deleting it in GHL would;
// its appointments stay. It reports whether the contact existed.
func (s *Server) DeleteContact(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.st.contacts[id]
	if c == nil {
		return false
	}
	s.st.unindexContact(c)
	delete(s.st.contacts, id)
	s.st.contactsByLo[c.LocationID] = slices.DeleteFunc(s.st.contactsByLo[c.LocationID],
		func(x string) bool { return x == id })
	return true
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
