package ghl

import (
	"context"
	"net/http"
	"net/url"
)

// LocationsService reads GHL locations (sub-accounts).
type LocationsService struct {
	client *Client
}

// Location is what ghlsync uses of a GHL location: its name for the
// operator and its time zone, in which GHL writes some times without an
// offset. Other fields of GHL's answer are not decoded, so no field of an
// unexpected type can fail the call.
type Location struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CompanyID string `json:"companyId"`
	// Timezone is an IANA name such as "America/Chicago"; it may be empty.
	Timezone string `json:"timezone"`
}

// Get returns location id. It takes the location's own token or its
// agency's (scope locations.readonly).
func (s *LocationsService) Get(ctx context.Context, accessToken, id string) (*Location, *Response, error) {
	r := &request{
		endpoint: "locations.get",
		method:   http.MethodGet,
		path:     "/locations/" + url.PathEscape(id),
		version:  versionContacts,
		token:    accessToken,
	}
	if err := r.require("access token", accessToken, "location id", id); err != nil {
		return nil, nil, err
	}
	var out struct {
		Location Location `json:"location"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	if out.Location.ID == "" {
		return nil, resp, r.errorf("response has no location id")
	}
	return &out.Location, resp, nil
}
