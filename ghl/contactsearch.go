package ghl

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// SearchFilter is one filter of a contact search: Field compared to Value
// by Operator (eq, not_eq, contains, exists, …).
type SearchFilter struct {
	Field    string `json:"field"`
	Operator string `json:"operator"`
	Value    any    `json:"value,omitempty"`
}

// CustomFieldIs is the filter of contacts whose custom field id holds
// value.
func CustomFieldIs(id, value string) SearchFilter {
	return SearchFilter{Field: "customFields." + id, Operator: "eq", Value: value}
}

// maxSearchResults is the most contacts Search returns: one page.
const maxSearchResults = 100

// Search returns the contacts of locationID that every filter matches, at
// most 100 (one page). GHL's search index may lag a write by seconds.
func (s *ContactsService) Search(ctx context.Context, accessToken, locationID string, filters ...SearchFilter) ([]Contact, *Response, error) {
	r := &request{
		endpoint: "contacts.search",
		method:   http.MethodPost,
		path:     "/contacts/search",
		version:  versionContacts,
		token:    accessToken,
		json: map[string]any{"locationId": locationID, "page": 1, "pageLimit": maxSearchResults,
			"filters": append([]SearchFilter{}, filters...)},
	}
	if err := r.require("access token", accessToken, "location id", locationID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Contacts []json.RawMessage `json:"contacts"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	// A result that is not a contact with an id is skipped, not a failure
	// of the whole search.
	contacts := make([]Contact, 0, len(out.Contacts))
	for _, raw := range out.Contacts {
		var c Contact
		if json.Unmarshal(raw, &c) == nil && c.ID != "" {
			contacts = append(contacts, c)
		}
	}
	return contacts, resp, nil
}

// AddTags adds tags to the contact contactID, keeping its others, and
// returns the contact's tags.
func (s *ContactsService) AddTags(ctx context.Context, accessToken, contactID string, tags []string) ([]string, *Response, error) {
	return s.tags(ctx, &request{
		endpoint: "contacts.addTags",
		method:   http.MethodPost,
		path:     "/contacts/" + url.PathEscape(contactID) + "/tags",
	}, accessToken, contactID, tags)
}

// RemoveTags removes tags from the contact contactID, keeping its others,
// and returns the contact's tags.
func (s *ContactsService) RemoveTags(ctx context.Context, accessToken, contactID string, tags []string) ([]string, *Response, error) {
	return s.tags(ctx, &request{
		endpoint: "contacts.removeTags",
		method:   http.MethodDelete,
		path:     "/contacts/" + url.PathEscape(contactID) + "/tags",
	}, accessToken, contactID, tags)
}

// tags completes r, a call of a contact's tags endpoint, and makes it.
func (s *ContactsService) tags(ctx context.Context, r *request, accessToken, contactID string, tags []string) ([]string, *Response, error) {
	r.version = versionContacts
	r.token = accessToken
	r.json = map[string][]string{"tags": append([]string{}, tags...)}
	if err := r.require("access token", accessToken, "contact id", contactID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Tags []string `json:"tags"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Tags, resp, nil
}

// FieldDef is one of a location's custom fields. Of GHL's answer only
// these are decoded.
type FieldDef struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	FieldKey string `json:"fieldKey"` // "contact." and the name, as GHL made it
	DataType string `json:"dataType"` // TEXT, NUMERICAL, DATE, …
	Model    string `json:"model"`    // contact or opportunity
}

// CustomFields returns the contact custom fields of locationID
// (GET /locations/{id}/customFields, scope locations/customFields.readonly).
func (s *ContactsService) CustomFields(ctx context.Context, accessToken, locationID string) ([]FieldDef, *Response, error) {
	r := &request{
		endpoint: "locations.customFields",
		method:   http.MethodGet,
		path:     "/locations/" + url.PathEscape(locationID) + "/customFields",
		query:    url.Values{"model": {"contact"}},
		version:  versionContacts,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "location id", locationID); err != nil {
		return nil, nil, err
	}
	var out struct {
		CustomFields []FieldDef `json:"customFields"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.CustomFields, resp, nil
}

// CreateCustomField creates a contact custom field named name of dataType
// on locationID (scope locations/customFields.write) and returns it.
func (s *ContactsService) CreateCustomField(ctx context.Context, accessToken, locationID, name, dataType string) (*FieldDef, *Response, error) {
	r := &request{
		endpoint: "locations.createCustomField",
		method:   http.MethodPost,
		path:     "/locations/" + url.PathEscape(locationID) + "/customFields",
		version:  versionContacts,
		token:    accessToken,
		json:     map[string]string{"name": name, "dataType": dataType, "model": "contact"},
	}
	if err := r.require("access token", accessToken, "location id", locationID, "name", name, "data type", dataType); err != nil {
		return nil, nil, err
	}
	var out struct {
		CustomField FieldDef `json:"customField"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.CustomField.ID == "" {
		return nil, resp, r.errorf("response has no custom field id")
	}
	return &out.CustomField, resp, nil
}
