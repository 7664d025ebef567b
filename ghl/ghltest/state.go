package ghltest

import (
	"fmt"
	"slices"
	"time"
)

// refreshTokenLife is GHL's documented refresh token life when unused.
const refreshTokenLife = 365 * 24 * time.Hour

// codeLife is how long an authorization code can be exchanged.
const codeLife = 10 * time.Minute

// state is everything Save persists. It is guarded by Server.mu.
type state struct {
	companies map[string]*company
	locations map[string]*location
	locOrder  []string // locations in the order they were added

	access  map[string]*accessToken
	refresh map[string]*refreshToken
	current map[string]string // subject -> newest refresh token
	codes   map[string]*authCode

	contacts map[string]*Contact
	// searchableAt is when a contact created under Options.SearchLag shows
	// in searches; not saved, as the lag is long past on a load.
	searchableAt map[string]time.Time
	contactsByLo map[string][]string // location -> contact IDs, oldest first
	byEmail      map[string][]string // location+"\x00"+lower(email) -> contact IDs
	byPhone      map[string][]string // location+"\x00"+digits(phone) -> contact IDs

	calendars map[string]*Calendar
	calOrder  []string

	appointments map[string]*Appointment
	apptsByLo    map[string][]string // location -> appointment IDs, oldest first
	notes        map[string][]*Note  // appointment ID -> its notes, oldest first

	users     map[string]*User
	usersByLo map[string][]string // location -> user IDs, oldest first
}

func newState() *state {
	return &state{
		companies:    make(map[string]*company),
		locations:    make(map[string]*location),
		access:       make(map[string]*accessToken),
		refresh:      make(map[string]*refreshToken),
		current:      make(map[string]string),
		codes:        make(map[string]*authCode),
		contacts:     make(map[string]*Contact),
		contactsByLo: make(map[string][]string),
		byEmail:      make(map[string][]string),
		byPhone:      make(map[string][]string),
		calendars:    make(map[string]*Calendar),
		appointments: make(map[string]*Appointment),
		apptsByLo:    make(map[string][]string),
		notes:        make(map[string][]*Note),
		users:        make(map[string]*User),
		usersByLo:    make(map[string][]string),
	}
}

type company struct {
	ID        string   `json:"id"`
	Locations []string `json:"locations,omitempty"`
	// InstallToFuture installs the app on every location added later.
	InstallToFuture bool `json:"installToFuture,omitempty"`
}

type location struct {
	ID        string `json:"id"`
	CompanyID string `json:"companyId,omitempty"`
	Inactive  bool   `json:"inactive,omitempty"`
	// Name and Timezone are what GET /locations/{id} answers; a location
	// added without them is named after its id and keeps DefaultTimezone.
	Name     string `json:"name,omitempty"`
	Timezone string `json:"timezone,omitempty"`
	// AppInstalled: the app is installed on the location (a consent,
	// InstallApp, or the agency's InstallToFuture); Revoke uninstalls it.
	AppInstalled bool `json:"appInstalled,omitempty"`
	// AllowDuplicates and PhoneFirst are the location's duplicate contact
	// settings (ContactSettings); Fields its custom fields, appended to
	// only, so a snapshot's copy of the slice stays valid.
	AllowDuplicates bool             `json:"allowDuplicates,omitempty"`
	PhoneFirst      bool             `json:"phoneFirst,omitempty"`
	Fields          []CustomFieldDef `json:"customFields,omitempty"`
}

// DefaultTimezone is the time zone of a location added without one. It is
// not UTC on purpose: GHL writes some times without an offset, in the
// location's zone, and a fake in UTC would hide code that forgets it.
const DefaultTimezone = "America/Chicago"

// name is the location's name as GHL shows it.
func (l *location) name() string {
	if l.Name != "" {
		return l.Name
	}
	return "Location " + l.ID
}

// timezone is the location's IANA time zone.
func (l *location) timezone() string {
	if l.Timezone != "" {
		return l.Timezone
	}
	return DefaultTimezone
}

// grant is what a token (or code) stands for. Values are never modified once
// a token holds them, so copies may share Approved.
type grant struct {
	UserType   string   `json:"userType"`
	LocationID string   `json:"locationId,omitempty"`
	CompanyID  string   `json:"companyId,omitempty"`
	Approved   []string `json:"approvedLocations,omitempty"`
	Scope      string   `json:"scope"`
	UserID     string   `json:"userId"`
	PlanID     string   `json:"planId,omitempty"`
}

// subject is the key counters, limits and admin methods use for the grant.
func (g *grant) subject() string {
	if g.UserType == UserTypeCompany {
		return g.CompanyID
	}
	return g.LocationID
}

// canAccess reports whether the grant may touch data of location loc:
// location endpoints take only that location's token, as GHL answers 403
// to a company token or another location's token.
func (g *grant) canAccess(loc string) bool {
	return g.UserType == UserTypeLocation && g.LocationID == loc
}

type accessToken struct {
	Token   string    `json:"token"`
	Grant   grant     `json:"grant"`
	Expiry  time.Time `json:"expiry"`
	Revoked bool      `json:"revoked,omitempty"`
}

type refreshToken struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`     // refreshTokenId in the response
	Access  string    `json:"access"` // the access token issued with it
	Grant   grant     `json:"grant"`
	Expiry  time.Time `json:"expiry"`
	Revoked bool      `json:"revoked,omitempty"`

	// Set when spent by a rotation: the grace serves Next (and its access
	// token) again to SpentBy until SpentAt+Grace.
	SpentAt time.Time `json:"spentAt,omitzero"`
	SpentBy string    `json:"spentBy,omitempty"`
	Next    string    `json:"next,omitempty"`
}

func (rt *refreshToken) spent() bool { return rt.Next != "" }

type authCode struct {
	Code        string    `json:"code"`
	Grant       grant     `json:"grant"`
	RedirectURI string    `json:"redirectUri,omitempty"`
	Expiry      time.Time `json:"expiry"`
	Used        bool      `json:"used,omitempty"`
}

// addLocationLocked registers (or re-parents) a location.
func (st *state) addLocationLocked(locationID, companyID string) *location {
	l := st.locations[locationID]
	if l == nil {
		l = &location{ID: locationID}
		st.locations[locationID] = l
		st.locOrder = append(st.locOrder, locationID)
	}
	if l.CompanyID != companyID && l.CompanyID != "" {
		if c := st.companies[l.CompanyID]; c != nil {
			c.Locations = slices.DeleteFunc(c.Locations, func(id string) bool { return id == locationID })
		}
	}
	l.CompanyID = companyID
	if companyID != "" {
		c := st.addCompanyLocked(companyID)
		if !slices.Contains(c.Locations, locationID) {
			c.Locations = append(c.Locations, locationID)
			if c.InstallToFuture {
				l.AppInstalled = true
			}
		}
	}
	return l
}

func (st *state) addCompanyLocked(companyID string) *company {
	c := st.companies[companyID]
	if c == nil {
		c = &company{ID: companyID}
		st.companies[companyID] = c
	}
	return c
}

// grantFor builds the grant of a consent (or a direct issue) for id: a
// location (Location) or a company (Company, with the approved locations, by
// default all of the company's). Unknown IDs are registered.
func (st *state) grantFor(userType, id string, approved []string, scope string) grant {
	if scope == "" {
		scope = DefaultScope
	}
	g := grant{UserType: userType, Scope: scope, UserID: newID()}
	switch userType {
	case UserTypeLocation:
		l := st.locations[id]
		if l == nil {
			l = st.addLocationLocked(id, "")
		}
		g.LocationID, g.CompanyID = id, l.CompanyID
		l.AppInstalled = true
	case UserTypeCompany:
		c := st.addCompanyLocked(id)
		g.CompanyID = id
		if len(approved) == 0 {
			approved = c.Locations
		}
		for _, loc := range approved {
			l := st.locations[loc]
			if l == nil || l.CompanyID != id {
				l = st.addLocationLocked(loc, id)
			}
			l.AppInstalled = true
		}
		g.Approved = slices.Clone(approved)
	default:
		panic(fmt.Sprintf("ghltest: user type %q is neither %q nor %q", userType, UserTypeLocation, UserTypeCompany))
	}
	return g
}

// issueLocked creates a new access + refresh token pair for g.
func (s *Server) issueLocked(g grant, now time.Time) (*accessToken, *refreshToken) {
	at := &accessToken{Token: "at-" + randHex(16), Grant: g, Expiry: now.Add(s.opts.TokenLifetime)}
	rt := &refreshToken{
		Token:  "rt-" + randHex(16),
		ID:     newID(),
		Access: at.Token,
		Grant:  g,
		Expiry: now.Add(refreshTokenLife),
	}
	s.st.access[at.Token] = at
	s.st.refresh[rt.Token] = rt
	s.st.current[g.subject()] = rt.Token
	s.changedLocked()
	return at, rt
}

// changedLocked records a change of the state, which the next answer then
// waits to be saved with SaveOnChange.
func (s *Server) changedLocked() { s.changes++ }

// AddCompany registers an agency (company).
func (s *Server) AddCompany(companyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addCompanyLocked(companyID)
	s.changedLocked()
}

// AddLocation registers a location (sub-account) of companyID ("" for none),
// registering the company too.
func (s *Server) AddLocation(locationID, companyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addLocationLocked(locationID, companyID)
	s.changedLocked()
}

// SetLocationInfo sets the name and IANA time zone GET /locations/{id}
// answers for a location, registering it when unknown. An empty value
// restores the default (the id-based name, DefaultTimezone).
func (s *Server) SetLocationInfo(locationID, name, timezone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.st.addLocationLockedIfMissing(locationID)
	l.Name, l.Timezone = name, timezone
	s.changedLocked()
}

// Locations returns the registered location IDs in the order they were
// added.
func (s *Server) Locations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.st.locOrder)
}

// AuthorizeCode simulates a user's consent and returns a one-time code, valid
// for 10 minutes, that POST /oauth/token exchanges. userType is "Location"
// (id is a location ID) or "Company" (id is a company ID; approvedLocations
// default to all of the company's locations). Unknown IDs are registered. It
// panics on any other userType.
func (s *Server) AuthorizeCode(userType, id string, approvedLocations ...string) (code string) {
	return s.newCode(userType, id, approvedLocations, "", "")
}

func (s *Server) newCode(userType, id string, approved []string, scope, redirectURI string) string {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &authCode{
		Code:        "code-" + randHex(16),
		Grant:       s.st.grantFor(userType, id, approved, scope),
		RedirectURI: redirectURI,
		Expiry:      now.Add(codeLife),
	}
	s.st.codes[c.Code] = c
	s.changedLocked()
	return c.Code
}

// IssueToken issues a token pair directly, as if a consent and code exchange
// had happened, for seeding. id is a location ID, or a registered company ID
// for a Company token; an unknown ID is registered as a location. It does
// not call OnTokenIssued.
func (s *Server) IssueToken(locationID string) (access, refresh string, expiry time.Time) {
	return s.IssueScopedToken(locationID, "")
}

// IssueScopedToken is IssueToken for a token granted only scope (space
// separated; DefaultScope when empty), as a consent for an app configured
// with fewer scopes gives. Its refreshes keep that scope.
func (s *Server) IssueScopedToken(locationID, scope string) (access, refresh string, expiry time.Time) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	userType := UserTypeLocation
	if _, isLoc := s.st.locations[locationID]; !isLoc && s.st.companies[locationID] != nil {
		userType = UserTypeCompany
	}
	at, rt := s.issueLocked(s.st.grantFor(userType, locationID, nil, scope), now)
	return at.Token, rt.Token, at.Expiry
}

// Revoke simulates an uninstall: every refresh token of the location (or
// company) then answers invalid grant, every access token 401, unused codes
// become invalid. A new consent or IssueToken works again.
func (s *Server) Revoke(locationID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.st.access {
		if at.Grant.subject() == locationID {
			at.Revoked = true
		}
	}
	for _, rt := range s.st.refresh {
		if rt.Grant.subject() == locationID {
			rt.Revoked = true
		}
	}
	for _, c := range s.st.codes {
		if c.Grant.subject() == locationID {
			c.Used = true
		}
	}
	delete(s.st.current, locationID)
	s.changedLocked()
	for _, l := range s.st.locations {
		if l.ID == locationID || (l.CompanyID == locationID && s.st.companies[locationID] != nil) {
			l.AppInstalled = false
		}
	}
}

// SetInactive marks a location inactive (or active again). Refreshing its
// tokens answers 400 "Location is not active" without spending them; its
// live access tokens keep working (GHL.md says nothing of them).
func (s *Server) SetInactive(locationID string, inactive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addLocationLockedIfMissing(locationID).Inactive = inactive
	s.changedLocked()
}

func (st *state) addLocationLockedIfMissing(id string) *location {
	if l := st.locations[id]; l != nil {
		return l
	}
	return st.addLocationLocked(id, "")
}

// ExpireAccessTokens makes every current access token of the location (or
// company) expire now, as if a day had passed for them: the next API call
// with one answers 401.
func (s *Server) ExpireAccessTokens(locationID string) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.st.access {
		if at.Grant.subject() == locationID && at.Expiry.After(now) {
			at.Expiry = now
		}
	}
	s.changedLocked()
}

// Valid reports whether accessToken is a live (known, unexpired, unrevoked)
// access token of the location (or company).
func (s *Server) Valid(locationID, accessToken string) bool {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.st.access[accessToken]
	return at != nil && at.Grant.subject() == locationID && !at.Revoked && now.Before(at.Expiry)
}

// CurrentRefreshToken returns the newest refresh token issued for the
// location (or company): the one the last rotation, exchange or IssueToken
// produced, "" if none since the last Revoke.
func (s *Server) CurrentRefreshToken(locationID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.current[locationID]
}
