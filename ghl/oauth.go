package ghl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
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

// DefaultTokenLife is the access token life assumed when a token answer
// has no usable expires_in: GHL documents a day, and its SDK assumes 24 h
// too.
const DefaultTokenLife = 24 * time.Hour

// Token is a GHL OAuth token. AccessToken and RefreshToken are never
// marshalled to JSON, and String, GoString and LogValue mask them, so a Token
// may be printed or logged as a whole.
type Token struct {
	AccessToken  string `json:"-"`
	RefreshToken string `json:"-"`
	TokenType    string `json:"tokenType,omitempty"`
	// ExpiresIn is the token's life in seconds: GHL's expires_in, or
	// DefaultTokenLife when the answer had none that reads as a number.
	ExpiresIn int `json:"expiresIn,omitempty"`
	// Expiry is Config.Now() when the token was received plus ExpiresIn.
	Expiry time.Time `json:"expiry,omitzero"`
	Scope  string    `json:"scope,omitempty"` // space separated
	// UserType is UserTypeLocation or UserTypeCompany.
	UserType          string   `json:"userType,omitempty"`
	LocationID        string   `json:"locationId,omitempty"`
	CompanyID         string   `json:"companyId,omitempty"`
	UserID            string   `json:"userId,omitempty"`
	ApprovedLocations []string `json:"approvedLocations,omitempty"`
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

// decodeToken reads a token endpoint's answer. Only the tokens must be of
// the right type: the answer of a refresh carries a rotated refresh token
// that must never be lost to a side field of another type than expected
// (GHL's spec types isBulkInstallation a boolean with "Bearer" as its
// example, requires only userId, and its answers vary: planId, traceId,
// approveAllLocations, installToFutureLocations). Every other field is read
// when it has the expected type and left empty when not; unknown fields are
// ignored.
func decodeToken(body []byte, now time.Time) (*Token, error) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("decoding response: %w", err)
	}
	t := &Token{}
	for name, dst := range map[string]*string{"access_token": &t.AccessToken, "refresh_token": &t.RefreshToken} {
		if raw, ok := f[name]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, fmt.Errorf("decoding response: %s is not a string", name)
			}
		}
	}
	for name, dst := range map[string]*string{"token_type": &t.TokenType, "scope": &t.Scope, "userType": &t.UserType,
		"locationId": &t.LocationID, "companyId": &t.CompanyID, "userId": &t.UserID} {
		*dst = lenientString(f[name])
	}
	if raw, ok := f["approvedLocations"]; ok {
		var ids []string
		if json.Unmarshal(raw, &ids) == nil {
			t.ApprovedLocations = ids
		}
	}
	t.ExpiresIn = int(DefaultTokenLife / time.Second)
	if secs, ok := lenientSeconds(f["expires_in"]); ok {
		t.ExpiresIn = secs
	}
	t.Expiry = now.Add(time.Duration(t.ExpiresIn) * time.Second)
	return t, nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// lenientString reads a JSON string, or a number as its text (some GHL
// answers type ids as numbers); anything else is "".
func lenientString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// lenientSeconds reads a duration in seconds given as a JSON number or a
// numeric string; ok is false for anything else, or for a value out of
// range.
func lenientSeconds(raw json.RawMessage) (int, bool) {
	text := lenientString(raw)
	if text == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil || v < 0 || v > float64(366*24*time.Hour/time.Second) {
		return 0, false
	}
	return int(v), true
}

// AuthorizeURL returns the consent page to send a user to; GHL then
// redirects to Config.RedirectURI with ?code=…&state=…. marketplaceURL is
// DefaultMarketplaceURL when empty. state, which should be unguessable and
// checked on the callback, is left out when empty. Config.AppVersionID and
// Config.LoginWindowOpenMode add version_id and loginWindowOpenMode.
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
	if cfg.AppVersionID != "" {
		q = append(q, "version_id="+queryEscape(cfg.AppVersionID))
	}
	if cfg.LoginWindowOpenMode != "" {
		q = append(q, "loginWindowOpenMode="+queryEscape(cfg.LoginWindowOpenMode))
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
	var body json.RawMessage
	resp, err := s.client.do(ctx, r, &body)
	if err != nil {
		return nil, resp, err
	}
	tok, err := decodeToken(body, s.client.clock.Now())
	if err != nil {
		return nil, resp, r.errorf("%v", err)
	}
	if tok.AccessToken == "" {
		return nil, resp, r.errorf("response has no access_token")
	}
	return tok, resp, nil
}

// InstalledLocation is a location of an agency as GET
// /oauth/installedLocations lists it; other fields are not decoded.
type InstalledLocation struct {
	ID          string `json:"_id"`
	Name        string `json:"name"`
	IsInstalled bool   `json:"isInstalled"`
}

// InstalledLocationsPage is one page of an agency's installed locations.
type InstalledLocationsPage struct {
	Locations []InstalledLocation
	// Count is GHL's total of matching locations, 0 when it said none.
	Count int
}

// InstalledLocationsPageSize is the page InstalledLocations asks for
// when limit is not positive: GHL's default.
const InstalledLocationsPageSize = 20

// InstalledLocations lists one page (skip, limit) of the locations of
// company companyID where the app appID is installed, with an agency
// (Company) token (scope oauth.readonly). limit is
// InstalledLocationsPageSize when not positive.
func (s *OAuthService) InstalledLocations(ctx context.Context, agencyAccessToken, companyID, appID string, skip, limit int) (*InstalledLocationsPage, *Response, error) {
	if limit <= 0 {
		limit = InstalledLocationsPageSize
	}
	r := &request{
		endpoint: "oauth.installedLocations",
		method:   http.MethodGet,
		path:     "/oauth/installedLocations",
		version:  versionContacts,
		token:    agencyAccessToken,
		query: url.Values{"companyId": {companyID}, "appId": {appID}, "isInstalled": {"true"},
			"skip": {strconv.Itoa(max(skip, 0))}, "limit": {strconv.Itoa(limit)}},
	}
	if err := r.require("agency access token", agencyAccessToken, "company id", companyID, "app id", appID); err != nil {
		return nil, nil, err
	}
	var out struct {
		Locations []json.RawMessage `json:"locations"`
		Count     json.RawMessage   `json:"count"`
	}
	resp, err := s.client.do(ctx, r, &out)
	if err != nil {
		return nil, resp, err
	}
	page := &InstalledLocationsPage{}
	if n, ok := lenientSeconds(out.Count); ok {
		page.Count = n
	}
	for _, raw := range out.Locations {
		var f map[string]json.RawMessage
		if json.Unmarshal(raw, &f) != nil {
			continue
		}
		l := InstalledLocation{ID: lenientString(f["_id"]), Name: lenientString(f["name"])}
		if l.ID == "" {
			l.ID = lenientString(f["id"])
		}
		_ = json.Unmarshal(f["isInstalled"], &l.IsInstalled)
		if l.ID != "" {
			page.Locations = append(page.Locations, l)
		}
	}
	return page, resp, nil
}

// AllInstalledLocations pages through InstalledLocations, pageSize at a
// time, and returns every installed location of the company. It stops at
// the first short or empty page, or once GHL's Count is reached; maxPages
// bounds a GHL that pages forever.
func (s *OAuthService) AllInstalledLocations(ctx context.Context, agencyAccessToken, companyID, appID string, pageSize int) ([]InstalledLocation, error) {
	if pageSize <= 0 {
		pageSize = InstalledLocationsPageSize
	}
	const maxPages = 1000
	var all []InstalledLocation
	seen := map[string]bool{}
	for page := 0; page < maxPages; page++ {
		p, _, err := s.InstalledLocations(ctx, agencyAccessToken, companyID, appID, page*pageSize, pageSize)
		if err != nil {
			return all, err
		}
		for _, l := range p.Locations {
			if !seen[l.ID] {
				seen[l.ID] = true
				all = append(all, l)
			}
		}
		if len(p.Locations) < pageSize || (p.Count > 0 && (page+1)*pageSize >= p.Count) {
			return all, nil
		}
	}
	return all, fmt.Errorf("ghl: GET /oauth/installedLocations: more than %d pages", maxPages)
}
