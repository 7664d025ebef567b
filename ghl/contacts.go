package ghl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ContactsService manages a location's contacts. Its calls take that
// location's access token.
type ContactsService struct {
	client *Client
}

// Contact is a GHL contact. Empty fields are not sent, so an update leaves
// them as they are in GHL; a non-empty Tags replaces all of the contact's
// tags (AddTags and RemoveTags change some and keep the others).
//
// Decoding an answer reads only these fields, and leniently: a field of
// another type than expected is left empty and dateOfBirth may come as
// text or as epoch milliseconds (GHL's search answers so), so that no side
// field of GHL's answer can turn a successful write into a failure. Only
// the id must be a string.
type Contact struct {
	ID         string `json:"id,omitempty"`
	LocationID string `json:"locationId,omitempty"`
	FirstName  string `json:"firstName,omitempty"`
	LastName   string `json:"lastName,omitempty"`
	Name       string `json:"name,omitempty"`
	Email      string `json:"email,omitempty"`
	Phone      string `json:"phone,omitempty"`
	Address1   string `json:"address1,omitempty"`
	City       string `json:"city,omitempty"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postalCode,omitempty"`
	// Country is an ISO 3166 alpha-2 code.
	Country string `json:"country,omitempty"`
	// DateOfBirth is YYYY-MM-DD when sent; decoded from GHL's text or
	// epoch milliseconds as YYYY-MM-DD.
	DateOfBirth string `json:"dateOfBirth,omitempty"`
	// Timezone is an IANA time zone name.
	Timezone string `json:"timezone,omitempty"`
	// DND, when set, turns do not disturb on or off for every channel.
	DND *bool `json:"dnd,omitempty"`
	// DNDSettings sets do not disturb per channel (DNDChannels), keeping
	// the channels it leaves out as they are.
	DNDSettings  map[string]DNDSetting `json:"dndSettings,omitempty"`
	Source       string                `json:"source,omitempty"`
	Tags         []string              `json:"tags,omitempty"`
	CustomFields []CustomField         `json:"customFields,omitempty"`
}

// DNDSetting is a channel's do not disturb (GHL's DndSettingSchema).
type DNDSetting struct {
	// Status is DNDActive, DNDInactive or DNDPermanent.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	Code    string `json:"code,omitempty"`
}

// DND statuses: active (no messages on the channel), inactive, permanent.
const (
	DNDActive    = "active"
	DNDInactive  = "inactive"
	DNDPermanent = "permanent"
)

// DNDChannels are the channels of a contact's dndSettings, as GHL spells
// them.
var DNDChannels = []string{"SMS", "Email", "Call", "WhatsApp", "GMB", "FB"}

// UnmarshalJSON decodes GHL's answer leniently; see Contact.
func (c *Contact) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = Contact{}
	if id, ok := raw["id"]; ok {
		if err := json.Unmarshal(id, &c.ID); err != nil {
			return fmt.Errorf("contact id: %w", err)
		}
	}
	for key, dst := range map[string]*string{"locationId": &c.LocationID, "firstName": &c.FirstName,
		"lastName": &c.LastName, "name": &c.Name, "email": &c.Email, "phone": &c.Phone, "address1": &c.Address1,
		"city": &c.City, "state": &c.State, "postalCode": &c.PostalCode, "country": &c.Country, "source": &c.Source,
		"timezone": &c.Timezone} {
		_ = json.Unmarshal(raw[key], dst) // absent, null or another type: left empty
	}
	c.DateOfBirth = dateOfBirth(raw["dateOfBirth"])
	var dnd bool
	if json.Unmarshal(raw["dnd"], &dnd) == nil {
		c.DND = &dnd
	}
	var settings map[string]json.RawMessage
	_ = json.Unmarshal(raw["dndSettings"], &settings)
	for ch, v := range settings {
		var ds DNDSetting
		if json.Unmarshal(v, &ds) == nil && ds.Status != "" {
			if c.DNDSettings == nil {
				c.DNDSettings = make(map[string]DNDSetting)
			}
			c.DNDSettings[ch] = ds
		}
	}
	_ = json.Unmarshal(raw["tags"], &c.Tags)
	var fields []json.RawMessage
	_ = json.Unmarshal(raw["customFields"], &fields)
	for _, f := range fields {
		var cf CustomField
		if json.Unmarshal(f, &cf) == nil {
			c.CustomFields = append(c.CustomFields, cf)
		}
	}
	return nil
}

// dateOfBirth reads GHL's date of birth: YYYY-MM-DD, an ISO timestamp, or
// epoch milliseconds; anything else is "".
func dateOfBirth(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if len(s) >= 10 {
			if t, err := time.Parse("2006-01-02", s[:10]); err == nil {
				return t.Format("2006-01-02")
			}
		}
		return ""
	}
	var ms float64
	if json.Unmarshal(raw, &ms) == nil {
		return time.UnixMilli(int64(ms)).UTC().Format("2006-01-02")
	}
	return ""
}

// CustomField is the value of one of the location's custom fields, named by
// ID or Key.
type CustomField struct {
	ID  string `json:"id,omitempty"`
	Key string `json:"key,omitempty"`
	// Value is a string, a number or a list of strings, as the field's type
	// wants. GHL takes it as field_value and answers with value; both are
	// read.
	Value any `json:"field_value,omitempty"`
}

// UnmarshalJSON reads the value from field_value or value.
func (f *CustomField) UnmarshalJSON(b []byte) error {
	var w struct {
		ID         string `json:"id"`
		Key        string `json:"key"`
		FieldValue any    `json:"field_value"`
		Value      any    `json:"value"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	f.ID, f.Key, f.Value = w.ID, w.Key, w.FieldValue
	if f.Value == nil {
		f.Value = w.Value
	}
	return nil
}

// FieldValue returns the value c holds for the custom field id, as a
// string, and whether c holds one.
func (c *Contact) FieldValue(id string) (string, bool) {
	for _, f := range c.CustomFields {
		if f.ID == id {
			s, ok := f.Value.(string)
			return s, ok
		}
	}
	return "", false
}

// contactResponse is GHL's {"contact": {…}} answer, with the upsert's
// "new". Only a literal true is new: a side field of another type must not
// fail the write.
type contactResponse struct {
	New     json.RawMessage `json:"new"`
	Contact *Contact        `json:"contact"`
}

func (r *contactResponse) isNew() bool { return string(r.New) == "true" }

// Upsert creates c in c.LocationID, or updates the contact GHL finds by the
// location's duplicate rules (email, phone). It reports whether the contact
// is new. c.ID is not sent.
//
// GHL's upsert needs an email or a phone. When the two match two different
// contacts, GHL updates the one its duplicate setting puts first and
// silently ignores the other field: compare the answer with what was sent.
//
// After a 422 or a temporary error GHL may have created the contact anyway:
// look it up (Search, FindByEmail) before creating it again.
func (s *ContactsService) Upsert(ctx context.Context, accessToken string, c *Contact) (*Contact, bool, *Response, error) {
	body := Contact{}
	if c != nil {
		body = *c
	}
	body.ID = ""
	r := &request{
		endpoint: "contacts.upsert",
		method:   http.MethodPost,
		path:     "/contacts/upsert",
		version:  versionContacts,
		token:    accessToken,
		json:     &body,
	}
	if err := r.require("access token", accessToken, "locationId", body.LocationID); err != nil {
		return nil, false, nil, err
	}
	var out contactResponse
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, false, resp, err
	}
	if out.Contact == nil || out.Contact.ID == "" {
		return nil, false, resp, r.errorf("response has no contact id")
	}
	return out.Contact, out.isNew(), resp, nil
}

// Create creates c in c.LocationID without looking for a match (a contact
// needs neither email nor phone). A location that does not allow
// duplicates refuses an email or phone another contact has, with an error
// that errors.As turns into a *DuplicateContactError. c.ID is not sent.
func (s *ContactsService) Create(ctx context.Context, accessToken string, c *Contact) (*Contact, *Response, error) {
	body := Contact{}
	if c != nil {
		body = *c
	}
	body.ID = ""
	r := &request{
		endpoint: "contacts.create",
		method:   http.MethodPost,
		path:     "/contacts/",
		version:  versionContacts,
		token:    accessToken,
		json:     &body,
	}
	con, resp, err := s.do(ctx, r, "access token", accessToken, "locationId", body.LocationID)
	if err == nil && con.ID == "" {
		return nil, resp, r.errorf("response has no contact id")
	}
	return con, resp, err
}

// Get returns the contact contactID.
func (s *ContactsService) Get(ctx context.Context, accessToken, contactID string) (*Contact, *Response, error) {
	r := &request{
		endpoint: "contacts.get",
		method:   http.MethodGet,
		path:     "/contacts/" + url.PathEscape(contactID),
		version:  versionContacts,
		token:    accessToken,
	}
	return s.do(ctx, r, "access token", accessToken, "contact id", contactID)
}

// Update changes the contact contactID to c's non-empty fields. c.ID and
// c.LocationID are not sent: GHL refuses them on update. A contact GHL
// does not have fails with an error IsNotFound knows (GHL answers 400).
func (s *ContactsService) Update(ctx context.Context, accessToken, contactID string, c *Contact) (*Contact, *Response, error) {
	body := Contact{}
	if c != nil {
		body = *c
	}
	body.ID, body.LocationID = "", ""
	r := &request{
		endpoint: "contacts.update",
		method:   http.MethodPut,
		path:     "/contacts/" + url.PathEscape(contactID),
		version:  versionContacts,
		token:    accessToken,
		json:     &body,
	}
	return s.do(ctx, r, "access token", accessToken, "contact id", contactID)
}

// SetDND turns the contact contactID's do not disturb (every channel) on
// or off, leaving its other fields as they are.
func (s *ContactsService) SetDND(ctx context.Context, accessToken, contactID string, on bool) (*Response, error) {
	r := &request{
		endpoint: "contacts.update",
		method:   http.MethodPut,
		path:     "/contacts/" + url.PathEscape(contactID),
		version:  versionContacts,
		token:    accessToken,
		json:     map[string]bool{"dnd": on},
	}
	_, resp, err := s.do(ctx, r, "access token", accessToken, "contact id", contactID)
	return resp, err
}

// Delete deletes the contact contactID. A contact GHL does not have fails
// with an error IsNotFound knows (GHL answers 400 "Contact with id … not
// found").
func (s *ContactsService) Delete(ctx context.Context, accessToken, contactID string) (*Response, error) {
	r := &request{
		endpoint: "contacts.delete",
		method:   http.MethodDelete,
		path:     "/contacts/" + url.PathEscape(contactID),
		version:  versionContacts,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "contact id", contactID); err != nil {
		return nil, err
	}
	var out struct {
		Succeded bool `json:"succeded"` // sic, as GHL spells it
	}
	return s.client.do(ctx, r, &out)
}

// FindByEmail returns the contact of locationID that GHL's duplicate rules
// match to email, or nil (and no error) when there is none.
func (s *ContactsService) FindByEmail(ctx context.Context, accessToken, locationID, email string) (*Contact, *Response, error) {
	r := &request{
		endpoint: "contacts.searchDuplicate",
		method:   http.MethodGet,
		path:     "/contacts/search/duplicate",
		query:    url.Values{"locationId": {locationID}, "email": {email}},
		version:  versionContacts,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "location id", locationID, "email", email); err != nil {
		return nil, nil, err
	}
	var out contactResponse
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Contact, resp, nil
}

// Appointments returns the appointments booked for the contact contactID.
// After a create whose answer was lost, it is one way to find the
// appointment the create made: the contact's appointment in that calendar
// at that time. GHL writes these times without an offset, in the
// location's time zone (EventTime.In).
func (s *ContactsService) Appointments(ctx context.Context, accessToken, contactID string) ([]Event, *Response, error) {
	r := &request{
		endpoint: "contacts.appointments",
		method:   http.MethodGet,
		path:     "/contacts/" + url.PathEscape(contactID) + "/appointments",
		version:  versionContacts,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "contact id", contactID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Events []Event `json:"events"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Events, resp, nil
}

// do sends r, whose answer is {"contact":{…}}, after checking the required
// args (name, value pairs).
func (s *ContactsService) do(ctx context.Context, r *request, args ...string) (*Contact, *Response, error) {
	if err := r.require(args...); err != nil {
		return nil, nil, err
	}
	var out contactResponse
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.Contact == nil {
		return nil, resp, r.errorf("response has no contact")
	}
	return out.Contact, resp, nil
}
