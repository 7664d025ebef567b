package ghltest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dobForm is how an endpoint answers a date of birth: GET, PUT and upsert
// as YYYY-MM-DD (GetContectByIdSchema), create as an ISO timestamp
// (CreateContactSchema), search as epoch milliseconds (GHL issue #314).
type dobForm int

const (
	dobDate dobForm = iota
	dobISO
	dobMillis
)

// contactJSON is a contact as GHL answers it: the stored fields, the date
// of birth in the endpoint's form, and side fields ghlsync does not read,
// of the types GHL's spec gives them, so that a client that decodes more
// than it uses is caught.
type contactJSON struct {
	Contact
	DateOfBirth       any              `json:"dateOfBirth,omitempty"`
	EmailLowerCase    string           `json:"emailLowerCase,omitempty"`
	FirstNameLower    string           `json:"firstNameLowerCase,omitempty"`
	BirthMonth        *int             `json:"birthMonth,omitempty"`
	Type              string           `json:"type"`
	DndSettings       map[string]any   `json:"dndSettings"`
	Attributions      []map[string]any `json:"attributions"`
	Followers         []string         `json:"followers"`
	AdditionalEmails  []string         `json:"additionalEmails"`
	LastActivity      int64            `json:"lastActivity"`
	AttributionSource map[string]any   `json:"attributionSource"`
}

func (c *Contact) answer(form dobForm) contactJSON {
	out := contactJSON{Contact: c.clone(), EmailLowerCase: strings.ToLower(c.Email),
		FirstNameLower: strings.ToLower(c.FirstName), Type: "lead", DndSettings: map[string]any{},
		Attributions: []map[string]any{}, Followers: []string{}, AdditionalEmails: []string{},
		LastActivity: c.DateUpdated.UnixMilli(), AttributionSource: map[string]any{"sessionSource": "API"}}
	if out.CustomFields == nil {
		out.CustomFields = []CustomField{}
	}
	for ch, ds := range c.DNDSettings {
		out.DndSettings[ch] = ds
	}
	if day, err := time.Parse("2006-01-02", c.DateOfBirth); err == nil {
		month := int(day.Month())
		out.BirthMonth = &month
		switch form {
		case dobDate:
			out.DateOfBirth = c.DateOfBirth
		case dobISO:
			out.DateOfBirth = day.Format("2006-01-02T15:04:05.000Z")
		case dobMillis:
			out.DateOfBirth = day.UnixMilli()
		}
	}
	return out
}

// searchFilter is one filter of POST /contacts/search. The fake supports
// the operator eq on id, email, phone, firstNameLowerCase and
// customFields.{fieldId}; groups and other operators are answered 422, so
// a client that needs more learns it from the fake rather than from GHL.
type searchFilter struct {
	Field    string          `json:"field"`
	Operator string          `json:"operator"`
	Value    json.RawMessage `json:"value"`
	Group    string          `json:"group"`
}

type searchInput struct {
	LocationID  *string         `json:"locationId"`
	Page        *int            `json:"page"`
	PageLimit   *int            `json:"pageLimit"`
	Filters     *[]searchFilter `json:"filters"`
	Sort        json.RawMessage `json:"sort"`
	Query       *string         `json:"query"`
	SearchAfter json.RawMessage `json:"searchAfter"`
}

var searchKeys = []string{"locationId", "page", "pageLimit", "filters", "sort", "query", "searchAfter"}

// maxSearchPage is GHL's most results per search page.
const maxSearchPage = 500

// handleSearchContacts serves POST /contacts/search: the location's
// contacts that every filter matches, oldest first, a page at a time, as
// {"contacts": [...], "total": n}. Dates of birth come as epoch ms.
func (s *Server) handleSearchContacts(w http.ResponseWriter, r *http.Request, g *grant) {
	var in searchInput
	if !decodeBody(w, r, &in, searchKeys) {
		return
	}
	loc := str(in.LocationID)
	var msgs []string
	if loc == "" {
		msgs = append(msgs, "locationId should not be empty")
	}
	if in.PageLimit == nil || *in.PageLimit < 1 || *in.PageLimit > maxSearchPage {
		msgs = append(msgs, "pageLimit must be a number between 1 and 500")
	}
	if in.Page != nil && *in.Page < 1 {
		msgs = append(msgs, "page must not be less than 1")
	}
	if len(in.SearchAfter) > 0 || in.Query != nil {
		msgs = append(msgs, "the fake supports neither searchAfter nor query")
	}
	type match func(c *Contact) bool
	var matches []match
	if in.Filters != nil {
		for _, f := range *in.Filters {
			var v string
			if f.Group != "" || f.Operator != "eq" || json.Unmarshal(f.Value, &v) != nil {
				msgs = append(msgs, "filter "+f.Field+": the fake supports only the operator eq with a string value, no groups")
				continue
			}
			switch field := f.Field; {
			case field == "id":
				matches = append(matches, func(c *Contact) bool { return c.ID == v })
			case field == "email":
				matches = append(matches, func(c *Contact) bool { return strings.EqualFold(c.Email, v) })
			case field == "phone":
				matches = append(matches, func(c *Contact) bool { return phoneKey("", c.Phone) == phoneKey("", v) })
			case field == "firstNameLowerCase":
				matches = append(matches, func(c *Contact) bool { return strings.ToLower(c.FirstName) == v })
			case strings.HasPrefix(field, "customFields."):
				id := strings.TrimPrefix(field, "customFields.")
				matches = append(matches, func(c *Contact) bool {
					return slices.ContainsFunc(c.CustomFields, func(f CustomField) bool {
						s, ok := f.Value.(string)
						return f.ID == id && ok && s == v
					})
				})
			default:
				msgs = append(msgs, "filter "+field+": not a field the fake searches")
			}
		}
	}
	if msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	page := 1
	if in.Page != nil {
		page = *in.Page
	}
	s.mu.Lock()
	s.stats.contactSearches[loc]++
	var found []*Contact
	now := s.opts.Now()
	for _, id := range s.st.contactsByLo[loc] {
		c := s.st.contacts[id]
		if at, lagging := s.st.searchableAt[id]; lagging && now.Before(at) {
			s.stats.searchLagged[loc]++
			continue
		}
		if !slices.ContainsFunc(matches, func(m match) bool { return !m(c) }) {
			found = append(found, c)
		}
	}
	out := []contactJSON{}
	for i := (page - 1) * *in.PageLimit; i < len(found) && len(out) < *in.PageLimit; i++ {
		out = append(out, found[i].answer(dobMillis))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Contacts []contactJSON `json:"contacts"`
		Total    int           `json:"total"`
		TraceID  string        `json:"traceId"`
	}{out, len(found), newTraceID()})
}

// lagSearchLocked keeps a contact created now out of searches for
// Options.SearchLag.
func (s *Server) lagSearchLocked(id string, now time.Time) {
	if s.opts.SearchLag <= 0 {
		return
	}
	if s.st.searchableAt == nil {
		s.st.searchableAt = make(map[string]time.Time)
	}
	s.st.searchableAt[id] = now.Add(s.opts.SearchLag)
}

type tagsInput struct {
	Tags *[]string `json:"tags"`
}

// handleTags serves POST and DELETE /contacts/{id}/tags: add or remove
// the tags of the body, keeping the others; it answers the contact's tags
// (201 for an add, 200 for a removal, as GHL's spec says).
func (s *Server) handleTags(add bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, g *grant) {
		id := r.PathValue("id")
		if _, ok := s.contactFor(w, id, g); !ok {
			return
		}
		var in tagsInput
		if !decodeBody(w, r, &in, []string{"tags"}) {
			return
		}
		if in.Tags == nil {
			writeValidation(w, "tags must be an array")
			return
		}
		now := s.opts.Now()
		s.mu.Lock()
		c := s.st.contacts[id]
		if c == nil {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, "Contact with id "+id+" not found")
			return
		}
		for _, tag := range *in.Tags {
			i := slices.Index(c.Tags, tag)
			switch {
			case add && i < 0:
				c.Tags = append(c.Tags, tag)
			case !add && i >= 0:
				c.Tags = slices.Delete(c.Tags, i, i+1)
			}
		}
		c.DateUpdated = now
		status := http.StatusOK
		if add {
			s.stats.tagAdds[c.LocationID]++
			status = http.StatusCreated
		} else {
			s.stats.tagRemoves[c.LocationID]++
		}
		s.changedLocked()
		s.emitContactLocked("ContactTagUpdate", c)
		tags := slices.Clone(c.Tags)
		s.mu.Unlock()
		writeJSON(w, status, struct {
			Tags []string `json:"tags"`
		}{tags})
	}
}

// CustomFieldDef is one of a location's custom fields, as GHL answers it.
type CustomFieldDef struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	FieldKey    string `json:"fieldKey"`
	DataType    string `json:"dataType"`
	Placeholder string `json:"placeholder,omitempty"`
	Position    int    `json:"position"`
	Model       string `json:"model"`
	LocationID  string `json:"locationId"`
}

// customFieldJSON adds the side fields of GHL's answer.
type customFieldJSON struct {
	CustomFieldDef
	PicklistOptions       []string `json:"picklistOptions"`
	PicklistImageOptions  []string `json:"picklistImageOptions"`
	IsAllowedCustomOption bool     `json:"isAllowedCustomOption"`
	DocumentType          string   `json:"documentType"`
	StandardField         bool     `json:"standard"`
}

func (f CustomFieldDef) answer() customFieldJSON {
	return customFieldJSON{CustomFieldDef: f, PicklistOptions: []string{}, PicklistImageOptions: []string{},
		DocumentType: "field"}
}

// customFieldTypes are the dataType values GHL takes.
var customFieldTypes = []string{"TEXT", "LARGE_TEXT", "NUMERICAL", "PHONE", "MONETORY", "CHECKBOX",
	"SINGLE_OPTIONS", "MULTIPLE_OPTIONS", "FLOAT", "TIME", "DATE", "TEXTBOX_LIST", "FILE_UPLOAD", "SIGNATURE", "RADIO", "EMAIL"}

// fieldKeyOf is the key GHL gives a contact field named name:
// "contact." and the name in lower case, other characters as "_".
func fieldKeyOf(name string) string {
	return "contact." + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, strings.TrimSpace(name))
}

// fieldIDLocked returns how a write's custom field (by id, or by key with
// or without "contact.") is resolved to one of the location's fields: its
// id, or "" when the location has no such field.
func (s *Server) fieldIDLocked(loc string) func(id, key string) string {
	return func(id, key string) string {
		l := s.st.locations[loc]
		if l == nil {
			return ""
		}
		for _, f := range l.Fields {
			if id != "" && f.ID == id || id == "" && key != "" && (f.FieldKey == key || f.FieldKey == "contact."+key) {
				return f.ID
			}
		}
		return ""
	}
}

// handleListCustomFields serves GET /locations/{id}/customFields: the
// location's fields, of the model asked for (contact when none is).
func (s *Server) handleListCustomFields(w http.ResponseWriter, r *http.Request, g *grant) {
	loc := r.PathValue("id")
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	model := r.URL.Query().Get("model")
	if model == "" {
		model = "contact"
	}
	s.mu.Lock()
	out := []customFieldJSON{}
	if l := s.st.locations[loc]; l != nil {
		for _, f := range l.Fields {
			if model == "all" || f.Model == model {
				out = append(out, f.answer())
			}
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		CustomFields []customFieldJSON `json:"customFields"`
	}{out})
}

type createFieldInput struct {
	Name        *string `json:"name"`
	DataType    *string `json:"dataType"`
	Placeholder *string `json:"placeholder"`
	Position    *int    `json:"position"`
	Model       *string `json:"model"`
}

var customFieldKeys = []string{"name", "dataType", "placeholder", "position", "model", "acceptedFormat",
	"isMultipleFile", "maxNumberOfFiles", "textBoxListOptions"}

// handleCreateCustomField serves POST /locations/{id}/customFields: a new
// field, 201 {"customField": …}; a name the location's fields of that model
// have already is refused.
func (s *Server) handleCreateCustomField(w http.ResponseWriter, r *http.Request, g *grant) {
	loc := r.PathValue("id")
	var in createFieldInput
	if !decodeBody(w, r, &in, customFieldKeys) {
		return
	}
	var msgs []string
	if strings.TrimSpace(str(in.Name)) == "" {
		msgs = append(msgs, "name should not be empty")
	}
	if !slices.Contains(customFieldTypes, str(in.DataType)) {
		msgs = append(msgs, "dataType must be one of the following values: "+strings.Join(customFieldTypes, ", "))
	}
	model := "contact"
	if in.Model != nil {
		model = *in.Model
	}
	if model != "contact" && model != "opportunity" {
		msgs = append(msgs, "model must be one of the following values: contact, opportunity")
	}
	if msgs != nil {
		writeValidation(w, msgs...)
		return
	}
	if !g.canAccess(loc) {
		writeError(w, http.StatusForbidden, msgNoLocationAccess)
		return
	}
	s.mu.Lock()
	l := s.st.addLocationLockedIfMissing(loc)
	key := fieldKeyOf(*in.Name)
	if model == "opportunity" {
		key = "opportunity." + strings.TrimPrefix(key, "contact.")
	}
	if slices.ContainsFunc(l.Fields, func(f CustomFieldDef) bool { return f.FieldKey == key }) {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "A custom field with the name "+strconv.Quote(strings.TrimSpace(*in.Name))+" already exists")
		return
	}
	f := CustomFieldDef{ID: newID(), Name: strings.TrimSpace(*in.Name), FieldKey: key, DataType: *in.DataType,
		Placeholder: str(in.Placeholder), Position: len(l.Fields), Model: model, LocationID: loc}
	if in.Position != nil {
		f.Position = *in.Position
	}
	l.Fields = append(l.Fields, f)
	s.stats.customFieldCreates[loc]++
	s.changedLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, struct {
		CustomField customFieldJSON `json:"customField"`
	}{f.answer()})
}

// CustomFields returns the location's custom fields, in the order they
// were created.
func (s *Server) CustomFields(locationID string) []CustomFieldDef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.st.locations[locationID]; l != nil {
		return slices.Clone(l.Fields)
	}
	return nil
}

// ContactSettings are a location's "Allow Duplicate Contact" settings,
// which decide how its contact writes match and refuse.
type ContactSettings struct {
	// AllowDuplicates lets POST /contacts/ and PUT write an email or phone
	// another contact has. Off (GHL's default), they answer 400 "This
	// location does not allow duplicated contacts." with the other
	// contact's id.
	AllowDuplicates bool
	// PhoneFirst makes the upsert match by phone before email. When the
	// two match different contacts, the first field's contact is updated
	// and the other field ignored.
	PhoneFirst bool
}

// SetContactSettings sets the location's duplicate contact settings,
// registering the location when unknown.
func (s *Server) SetContactSettings(locationID string, cs ContactSettings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.st.addLocationLockedIfMissing(locationID)
	l.AllowDuplicates, l.PhoneFirst = cs.AllowDuplicates, cs.PhoneFirst
}

// matchOrder is the order the location's duplicate rule matches contacts
// by.
func (l *location) matchOrder() []string {
	if l.PhoneFirst {
		return []string{"phone", "email"}
	}
	return []string{"email", "phone"}
}
