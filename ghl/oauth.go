package ghl

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultMarketplaceURL hosts GHL's consent page. White-label apps use
// https://marketplace.leadconnectorhq.com.
const DefaultMarketplaceURL = "https://marketplace.gohighlevel.com"

// User types GHL issues tokens for (the user_type of a token request, the
// userType of a token).
const (
	UserTypeLocation = "Location"
	UserTypeCompany  = "Company"
)

// OAuthService gets and refreshes tokens.
//
// A refresh token is single use: Refresh spends it, and the Token returned
// carries its successor. Callers must serialise refreshes of one location and
// store the new refresh token before anything else; this package does
// neither.
type OAuthService struct {
	client *Client
}

// Token is a GHL OAuth token. AccessToken and RefreshToken are never
// marshalled to JSON, and String, GoString and LogValue mask them, so a Token
// may be printed or logged as a whole.
type Token struct {
	AccessToken  string `json:"-"`
	RefreshToken string `json:"-"`
	TokenType    string `json:"tokenType,omitempty"`
	ExpiresIn    int    `json:"expiresIn,omitempty"` // seconds, as GHL said
	// Expiry is Config.Now() when the token was received plus ExpiresIn.
	Expiry time.Time `json:"expiry,omitzero"`
	Scope  string    `json:"scope,omitempty"` // space separated
	// UserType is UserTypeLocation or UserTypeCompany.
	UserType           string   `json:"userType,omitempty"`
	LocationID         string   `json:"locationId,omitempty"`
	CompanyID          string   `json:"companyId,omitempty"`
	UserID             string   `json:"userId,omitempty"`
	ApprovedLocations  []string `json:"approvedLocations,omitempty"`
	IsBulkInstallation bool     `json:"isBulkInstallation,omitempty"`
}

// String describes the token with AccessToken and RefreshToken masked.
func (t Token) String() string {
	return fmt.Sprintf("ghl.Token{AccessToken:%q RefreshToken:%q TokenType:%q Expiry:%s Scope:%q UserType:%q LocationID:%q CompanyID:%q UserID:%q}",
		mask(t.AccessToken), mask(t.RefreshToken), t.TokenType, t.Expiry.Format(time.RFC3339),
		t.Scope, t.UserType, t.LocationID, t.CompanyID, t.UserID)
}

// GoString is String, so that %#v masks the tokens too.
func (t Token) GoString() string { return t.String() }

// LogValue implements slog.LogValuer with AccessToken and RefreshToken
// masked.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_token", mask(t.AccessToken)),
		slog.String("refresh_token", mask(t.RefreshToken)),
		slog.Time("expiry", t.Expiry),
		slog.String("scope", t.Scope),
		slog.String("user_type", t.UserType),
		slog.String("location_id", t.LocationID),
		slog.String("company_id", t.CompanyID),
		slog.String("user_id", t.UserID),
	)
}

// tokenJSON is the token endpoints' answer on the wire.
type tokenJSON struct {
	AccessToken        string   `json:"access_token"`
	TokenType          string   `json:"token_type"`
	ExpiresIn          int      `json:"expires_in"`
	RefreshToken       string   `json:"refresh_token"`
	Scope              string   `json:"scope"`
	UserType           string   `json:"userType"`
	LocationID         string   `json:"locationId"`
	CompanyID          string   `json:"companyId"`
	ApprovedLocations  []string `json:"approvedLocations"`
	UserID             string   `json:"userId"`
	IsBulkInstallation bool     `json:"isBulkInstallation"`
}

func (w *tokenJSON) token(now time.Time) *Token {
	return &Token{
		AccessToken:        w.AccessToken,
		RefreshToken:       w.RefreshToken,
		TokenType:          w.TokenType,
		ExpiresIn:          w.ExpiresIn,
		Expiry:             now.Add(time.Duration(w.ExpiresIn) * time.Second),
		Scope:              w.Scope,
		UserType:           w.UserType,
		LocationID:         w.LocationID,
		CompanyID:          w.CompanyID,
		UserID:             w.UserID,
		ApprovedLocations:  w.ApprovedLocations,
		IsBulkInstallation: w.IsBulkInstallation,
	}
}

// AuthorizeURL returns the consent page to send a user to; GHL then
// redirects to Config.RedirectURI with ?code=…&state=…. marketplaceURL is
// DefaultMarketplaceURL when empty. state, which should be unguessable and
// checked on the callback, is left out when empty.
func (s *OAuthService) AuthorizeURL(marketplaceURL, state string, scopes []string) string {
	if marketplaceURL == "" {
		marketplaceURL = DefaultMarketplaceURL
	}
	cfg := s.client.cfg
	q := []string{
		"response_type=code",
		"redirect_uri=" + queryEscape(cfg.RedirectURI),
		"client_id=" + queryEscape(cfg.ClientID),
		"scope=" + queryEscape(strings.Join(scopes, " ")),
	}
	if state != "" {
		q = append(q, "state="+queryEscape(state))
	}
	return strings.TrimRight(marketplaceURL, "/") + "/v2/oauth/chooselocation?" + strings.Join(q, "&")
}

// queryEscape escapes a query value with spaces as %20, which every server
// reads as a space, rather than "+", which only form decoders do.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// ExchangeCode trades the code of an OAuth callback for a token. userType is
// UserTypeLocation or UserTypeCompany; GHL's default when empty.
func (s *OAuthService) ExchangeCode(ctx context.Context, code, userType string) (*Token, *Response, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
	return s.token(ctx, form, userType, "code", code)
}

// Refresh spends refreshToken for a new token, whose RefreshToken replaces
// it. errors.Is(err, ErrInvalidGrant) means the refresh token is dead for
// good and the location must be connected again.
func (s *OAuthService) Refresh(ctx context.Context, refreshToken, userType string) (*Token, *Response, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	return s.token(ctx, form, userType, "refresh token", refreshToken)
}

// token posts a grant to the token endpoint, which takes the client
// credentials in the form and no Version header.
func (s *OAuthService) token(ctx context.Context, form url.Values, userType, argName, arg string) (*Token, *Response, error) {
	c := s.client
	r := &request{endpoint: "oauth.token", method: http.MethodPost, path: "/oauth/token", form: form}
	if err := r.require(argName, arg, "Config.ClientID", c.cfg.ClientID, "Config.ClientSecret", c.cfg.ClientSecret); err != nil {
		return nil, nil, err
	}
	form.Set("client_id", c.cfg.ClientID)
	form.Set("client_secret", c.cfg.ClientSecret)
	if userType != "" {
		form.Set("user_type", userType)
	}
	if c.cfg.RedirectURI != "" {
		form.Set("redirect_uri", c.cfg.RedirectURI)
	}
	return s.do(ctx, r)
}

// LocationToken gets a location's token with an agency (Company) token.
func (s *OAuthService) LocationToken(ctx context.Context, agencyAccessToken, companyID, locationID string) (*Token, *Response, error) {
	r := &request{
		endpoint: "oauth.locationToken",
		method:   http.MethodPost,
		path:     "/oauth/locationToken",
		version:  versionContacts,
		token:    agencyAccessToken,
		form:     url.Values{"companyId": {companyID}, "locationId": {locationID}},
	}
	if err := r.require("agency access token", agencyAccessToken, "company id", companyID, "location id", locationID); err != nil {
		return nil, nil, err
	}
	return s.do(ctx, r)
}

func (s *OAuthService) do(ctx context.Context, r *request) (*Token, *Response, error) {
	var w tokenJSON
	resp, err := s.client.do(ctx, r, &w)
	if err != nil {
		return nil, resp, err
	}
	if w.AccessToken == "" {
		return nil, resp, r.errorf("response has no access_token")
	}
	return w.token(s.client.clock.Now()), resp, nil
}
