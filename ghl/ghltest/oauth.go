package ghltest

import (
	"crypto/subtle"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"time"
)

// Error messages of the OAuth endpoints, as GHL words them (GHL.md).
const (
	msgInvalidRefresh = "Invalid grant: refresh token is invalid"
	msgInvalidCode    = "Invalid grant: authorization code is invalid"
	msgInactive       = "Location is not active"
	msgInvalidClient  = "Invalid client credentials"
)

// tokenResponse is the JSON answer of /oauth/token and /oauth/locationToken.
type tokenResponse struct {
	AccessToken        string   `json:"access_token"`
	TokenType          string   `json:"token_type"`
	ExpiresIn          int64    `json:"expires_in"`
	RefreshToken       string   `json:"refresh_token"`
	Scope              string   `json:"scope"`
	UserType           string   `json:"userType"`
	LocationID         string   `json:"locationId,omitempty"`
	CompanyID          string   `json:"companyId,omitempty"`
	ApprovedLocations  []string `json:"approvedLocations,omitempty"`
	UserID             string   `json:"userId"`
	PlanID             string   `json:"planId,omitempty"`
	IsBulkInstallation bool     `json:"isBulkInstallation"`
	RefreshTokenID     string   `json:"refreshTokenId"`
	TraceID            string   `json:"traceId"`
}

func tokenResp(at *accessToken, rt *refreshToken, now time.Time) tokenResponse {
	g := at.Grant
	return tokenResponse{
		AccessToken:        at.Token,
		TokenType:          "Bearer",
		ExpiresIn:          int64(max(at.Expiry.Sub(now), 0) / time.Second),
		RefreshToken:       rt.Token,
		Scope:              g.Scope,
		UserType:           g.UserType,
		LocationID:         g.LocationID,
		CompanyID:          g.CompanyID,
		ApprovedLocations:  g.Approved,
		UserID:             g.UserID,
		PlanID:             g.PlanID,
		IsBulkInstallation: g.UserType == UserTypeCompany,
		RefreshTokenID:     rt.ID,
		TraceID:            newTraceID(),
	}
}

func (s *Server) clientOK(id, secret string) bool {
	if s.opts.ClientID == "" {
		return true
	}
	okID := subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID))
	okSecret := subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret))
	return okID&okSecret == 1
}

// handleToken serves POST /oauth/token: form body, no Version header.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid parameter: body")
		return
	}
	f := r.PostForm
	for _, p := range []string{"client_id", "client_secret", "grant_type"} {
		if f.Get(p) == "" {
			writeError(w, http.StatusBadRequest, "Missing parameter: "+p)
			return
		}
	}
	clientID := f.Get("client_id")
	if !s.clientOK(clientID, f.Get("client_secret")) {
		writeError(w, http.StatusUnauthorized, msgInvalidClient)
		return
	}
	if ut := f.Get("user_type"); ut != "" && ut != UserTypeLocation && ut != UserTypeCompany {
		writeError(w, http.StatusBadRequest, "Invalid parameter: user_type")
		return
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		if f.Get("code") == "" {
			writeError(w, http.StatusBadRequest, "Missing parameter: code")
			return
		}
		s.exchangeCode(w, f.Get("code"), f.Get("redirect_uri"))
	case "refresh_token":
		if f.Get("refresh_token") == "" {
			writeError(w, http.StatusBadRequest, "Missing parameter: refresh_token")
			return
		}
		s.refreshGrant(w, f.Get("refresh_token"), clientID)
	default:
		writeError(w, http.StatusBadRequest, "Invalid parameter: grant_type")
	}
}

func (s *Server) exchangeCode(w http.ResponseWriter, code, redirectURI string) {
	now := s.opts.Now()
	s.mu.Lock()
	c := s.st.codes[code]
	if c == nil || c.Used || !now.Before(c.Expiry) {
		subj := ""
		if c != nil {
			subj = c.Grant.subject()
		}
		s.stats.invalidGrants[subj]++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, msgInvalidCode)
		return
	}
	if c.RedirectURI != "" && c.RedirectURI != redirectURI {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Invalid parameter: redirect_uri")
		return
	}
	c.Used = true
	subj := c.Grant.subject()
	s.stats.codeExchanges[subj]++
	at, rt := s.issueLocked(c.Grant, now)
	resp := tokenResp(at, rt, now)
	s.mu.Unlock()

	s.tokenIssued(subj)
	s.writeToken(w, resp)
}

func (s *Server) refreshGrant(w http.ResponseWriter, token, clientID string) {
	now := s.opts.Now()
	s.mu.Lock()
	resp, status, msg, rotated := s.refreshLocked(token, clientID, now)
	s.mu.Unlock()
	if status != 0 {
		writeError(w, status, msg)
		return
	}
	if rotated {
		s.tokenIssued(resp.subject())
	}
	s.writeToken(w, resp)
}

func (r *tokenResponse) subject() string {
	if r.UserType == UserTypeCompany {
		return r.CompanyID
	}
	return r.LocationID
}

// refreshLocked applies the refresh grant: rotation, grace reuse or refusal.
// rotated reports a new token pair (the hook is due).
func (s *Server) refreshLocked(token, clientID string, now time.Time) (resp tokenResponse, status int, msg string, rotated bool) {
	rt := s.st.refresh[token]
	if rt == nil {
		s.stats.tokenCalls[""]++
		s.stats.invalidGrants[""]++
		return resp, http.StatusBadRequest, msgInvalidRefresh, false
	}
	subj := rt.Grant.subject()
	s.stats.tokenCalls[subj]++
	if rt.Revoked || !now.Before(rt.Expiry) {
		s.stats.invalidGrants[subj]++
		return resp, http.StatusBadRequest, msgInvalidRefresh, false
	}
	if rt.Grant.UserType == UserTypeLocation {
		if l := s.st.locations[rt.Grant.LocationID]; l != nil && l.Inactive {
			s.stats.inactive[subj]++
			return resp, http.StatusBadRequest, msgInactive, false
		}
	}
	if rt.spent() {
		s.stats.spentReuses[subj]++
		if rt.SpentBy == clientID && now.Sub(rt.SpentAt) < s.opts.Grace {
			if next := s.st.refresh[rt.Next]; next != nil {
				if at := s.st.access[next.Access]; at != nil {
					s.stats.graceReuses[subj]++
					return tokenResp(at, next, now), 0, "", false
				}
			}
		}
		s.stats.invalidGrants[subj]++
		return resp, http.StatusBadRequest, msgInvalidRefresh, false
	}
	at, next := s.issueLocked(rt.Grant, now)
	rt.SpentAt, rt.SpentBy, rt.Next = now, clientID, next.Token
	s.stats.rotations[subj]++
	return tokenResp(at, next, now), 0, "", true
}

// handleLocationToken serves POST /oauth/locationToken: an agency token
// buys a location token for one of its approved locations.
func (s *Server) handleLocationToken(w http.ResponseWriter, r *http.Request, g *grant) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid parameter: body")
		return
	}
	companyID, locationID := r.PostForm.Get("companyId"), r.PostForm.Get("locationId")
	for _, p := range [][2]string{{"companyId", companyID}, {"locationId", locationID}} {
		if p[1] == "" {
			writeError(w, http.StatusBadRequest, "Missing parameter: "+p[0])
			return
		}
	}
	if g.UserType != UserTypeCompany || g.CompanyID != companyID {
		writeError(w, http.StatusForbidden, "The token does not have access to this company")
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	// GHL mints a token for any location of the agency the app is
	// installed on (approved at the agency's consent or installed since),
	// and for none it was uninstalled from.
	if l := s.st.locations[locationID]; l == nil || l.CompanyID != companyID || !l.AppInstalled {
		s.mu.Unlock()
		writeError(w, http.StatusForbidden, "The token does not have access to this location")
		return
	}
	if l := s.st.locations[locationID]; l != nil && l.Inactive {
		s.stats.inactive[locationID]++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, msgInactive)
		return
	}
	lg := grant{
		UserType:   UserTypeLocation,
		LocationID: locationID,
		CompanyID:  companyID,
		Scope:      g.Scope,
		UserID:     g.UserID,
		PlanID:     g.PlanID,
	}
	at, rt := s.issueLocked(lg, now)
	s.stats.locationTokens[locationID]++
	resp := tokenResp(at, rt, now)
	s.mu.Unlock()

	s.tokenIssued(locationID)
	s.writeToken(w, resp)
}

// handleChooseLocation serves the marketplace consent page. Without a
// choice it is GHL's chooser: a form listing the locations and agencies,
// each a button that submits the same request with location_id or
// company_id added (no JavaScript needed). With one it approves at once:
// it redirects to redirect_uri with a code for the location named by
// location_id, or for the company named by company_id (all its locations
// approved). state is passed through.
func (s *Server) handleChooseLocation(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, p := range []string{"client_id", "redirect_uri"} {
		if q.Get(p) == "" {
			writeError(w, http.StatusBadRequest, "Missing parameter: "+p)
			return
		}
	}
	if s.opts.ClientID != "" && q.Get("client_id") != s.opts.ClientID {
		writeError(w, http.StatusBadRequest, "Invalid parameter: client_id")
		return
	}
	if rt := q.Get("response_type"); rt != "" && rt != "code" {
		writeError(w, http.StatusBadRequest, "Invalid parameter: response_type")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || !u.IsAbs() {
		writeError(w, http.StatusBadRequest, "Invalid parameter: redirect_uri")
		return
	}
	userType, id := UserTypeLocation, q.Get("location_id")
	if c := q.Get("company_id"); c != "" {
		userType, id = UserTypeCompany, c
	}
	if id == "" {
		s.chooser(w, q)
		return
	}
	code := s.newCode(userType, id, nil, q.Get("scope"), redirect)
	cb := u.Query()
	cb.Set("code", code)
	if st := q.Get("state"); st != "" {
		cb.Set("state", st)
	}
	u.RawQuery = cb.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

var chooserPage = template.Must(template.New("chooser").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Choose an account · fake GoHighLevel</title>
<style>body{font-family:sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}
li{margin:.4rem 0}button{font-size:1rem;padding:.3rem .8rem}code{background:#eee;padding:0 .2rem}</style></head>
<body><h1>Choose an account</h1>
<p>This is the sandbox's fake GoHighLevel. An app (client id <code>{{.ClientID}}</code>) asks to connect to
one of your accounts{{with .Scope}}, with the scopes <code>{{.}}</code>{{end}}. You are sent back to
<code>{{.RedirectURI}}</code> afterwards.</p>
<form method="get" action="/v2/oauth/chooselocation">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<h2>Sub-accounts (locations)</h2>
{{with .Locations}}<ul>{{range .}}<li><button type="submit" name="location_id" value="{{.ID}}">{{.ID}}</button>
{{with .CompanyID}} of agency {{.}}{{end}}{{if .Inactive}} (not active){{end}}</li>
{{end}}</ul>{{else}}<p>None.</p>{{end}}
<h2>Agencies</h2>
{{with .Companies}}<ul>{{range .}}<li><button type="submit" name="company_id" value="{{.ID}}">{{.ID}}</button>
every one of its {{len .Locations}} locations</li>
{{end}}</ul>{{else}}<p>None.</p>{{end}}
</form></body></html>
`))

// chooser answers the consent page without a choice: the list of
// accounts to pick from, as a form that repeats the request's parameters.
func (s *Server) chooser(w http.ResponseWriter, q url.Values) {
	type field struct{ Name, Value string }
	data := struct {
		ClientID, Scope, RedirectURI string
		Hidden                       []field
		Locations                    []location
		Companies                    []company
	}{ClientID: q.Get("client_id"), Scope: q.Get("scope"), RedirectURI: q.Get("redirect_uri")}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k == "location_id" || k == "company_id" {
			continue
		}
		for _, v := range q[k] {
			data.Hidden = append(data.Hidden, field{k, v})
		}
	}
	s.mu.Lock()
	for _, id := range s.st.locOrder {
		data.Locations = append(data.Locations, *s.st.locations[id])
	}
	for _, id := range slices.Sorted(maps.Keys(s.st.companies)) {
		c := *s.st.companies[id]
		c.Locations = slices.Clone(c.Locations)
		data.Companies = append(data.Companies, c)
	}
	s.mu.Unlock()
	if len(data.Locations) == 0 && len(data.Companies) == 0 {
		writeError(w, http.StatusBadRequest, "No location to choose: add one first")
		return
	}
	var b strings.Builder
	if err := chooserPage.Execute(&b, data); err != nil {
		// Only our own data is rendered: a failure is a bug here.
		panic("ghltest: render the chooser: " + err.Error())
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(b.String()))
}
