package ghl

import (
	"context"
	"encoding/json"
	"net/http"
)

// MaxSearchPage is the most contacts one page of POST /contacts/search
// holds (GHL's pageLimit).
const MaxSearchPage = 500

// ContactPage is one page of a location's contacts: each as GHL answered
// it (for the fields a caller compares) with its id, and GHL's total.
type ContactPage struct {
	Contacts []json.RawMessage
	IDs      []string
	Total    int
}

// SearchPage returns page (from 1) of the contacts of locationID, limit
// (at most MaxSearchPage) a page, in GHL's order.
func (s *ContactsService) SearchPage(ctx context.Context, accessToken, locationID string, page, limit int) (*ContactPage, *Response, error) {
	r := &request{
		endpoint: "contacts.search",
		method:   http.MethodPost,
		path:     "/contacts/search",
		version:  versionContacts,
		token:    accessToken,
		json:     map[string]any{"locationId": locationID, "page": page, "pageLimit": min(max(limit, 1), MaxSearchPage)},
	}
	if err := r.require("access token", accessToken, "location id", locationID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Contacts []json.RawMessage `json:"contacts"`
		Total    int               `json:"total"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	p := &ContactPage{Total: out.Total}
	for _, raw := range out.Contacts {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(raw, &id) == nil && id.ID != "" {
			p.Contacts = append(p.Contacts, raw)
			p.IDs = append(p.IDs, id.ID)
		}
	}
	return p, resp, nil
}
