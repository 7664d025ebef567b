package ghl

import (
	"context"
	"net/http"
	"net/url"
)

// UsersService reads a location's GHL users (staff), to whom appointments
// are assigned.
type UsersService struct {
	client *Client
}

// User is what ghlsync uses of a GHL user: the id an appointment's
// AssignedUserID names, and the name and email it is matched by. Other
// fields of GHL's answer (permissions, roles, ...) are not decoded, so none
// of an unexpected type can fail the call.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// List returns the users of locationID (GET /users/?locationId=, scope
// users.readonly).
func (s *UsersService) List(ctx context.Context, accessToken, locationID string) ([]User, *Response, error) {
	r := &request{
		endpoint: "users.list",
		method:   http.MethodGet,
		path:     "/users/",
		query:    url.Values{"locationId": {locationID}},
		// The users API shares the contacts API's version.
		version: versionContacts,
		token:   accessToken,
	}
	if err := r.require("access token", accessToken, "location id", locationID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Users []User `json:"users"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	return out.Users, resp, nil
}
