package ghltest

import (
	"maps"
	"strings"
	"sync/atomic"
)

// Stats is a snapshot of what the server has counted since it started or
// since ResetCounters. Maps are keyed by subject: location ID, or company ID
// for Company tokens; "" collects calls whose token or code was unknown.
// The snapshot is the caller's to modify.
type Stats struct {
	TokenCalls     map[string]int // POST /oauth/token calls with the refresh_token grant
	CodeExchanges  map[string]int // successful authorization_code exchanges
	Rotations      map[string]int // refresh tokens spent for a new pair
	SpentReuses    map[string]int // spent refresh tokens presented again, grace or not
	GraceReuses    map[string]int // of those, answered by the grace with the same pair
	InvalidGrants  map[string]int // invalid grant answers (refresh tokens and codes)
	InactiveGrants map[string]int // "Location is not active" answers
	LocationTokens map[string]int // tokens issued by /oauth/locationToken
	RateLimited    map[string]int // 429 answers
	ScopeDenied    map[string]int // 401 "not authorized for this scope" answers
	UserMissing    map[string]int // 401 "The user does not exist." answers
	// InstalledLocationPages counts GET /oauth/installedLocations answers,
	// by company.
	InstalledLocationPages map[string]int
	MaxInWindow            map[string]int // most API requests accepted within one RateInterval
	Accepted               map[string]int // API requests accepted (not answered 429), counted in the rate limit

	ContactCreates map[string]int
	ContactUpdates map[string]int // by upsert or PUT
	ContactDeletes map[string]int // DELETE /contacts/{id} answered 200

	// What GHL refuses or does silently to contact writes, per location.
	UpsertsWithoutKey  map[string]int // upserts refused for want of email and phone
	DuplicateRefusals  map[string]int // creates and updates refused as duplicates
	IgnoredFields      map[string]int // upserts whose email and phone matched two contacts: one field ignored
	ContactSearches    map[string]int // POST /contacts/search calls answered
	SearchLagged       map[string]int // contacts left out of a search answer by Options.SearchLag
	CustomFieldCreates map[string]int
	TagAdds            map[string]int
	TagRemoves         map[string]int
	AppointmentCreates map[string]int
	AppointmentUpdates map[string]int
	AppointmentDeletes map[string]int
	NoteCreates        map[string]int // appointment notes created
	NoteUpdates        map[string]int
	NoteDeletes        map[string]int
	// Notifications counts the appointment creates and updates GHL took
	// without toNotify false: each would have run the calendar's
	// automations (confirmation SMS and email to the patient).
	Notifications map[string]int
	// OwnerRefusals counts creates and updates a calendar with team
	// members refused for want of an assignedUserId of its team.
	OwnerRefusals map[string]int
	// NotFound counts the 400 "… not found" answers for unknown contact,
	// event and calendar ids; MalformedIDs the 500s for ids of the wrong
	// shape.
	NotFound     map[string]int
	MalformedIDs map[string]int

	ExpiredTokenCalls int // API calls with an expired access token
	UnknownTokenCalls int // API calls with no or an unknown access token
	RevokedTokenCalls int // API calls with an access token revoked by Revoke
	Faults            int // requests a Fault applied to
	// MaxTokenCallsAtOnce is the most calls of /oauth/token and
	// /oauth/locationToken answered at once, injected latency included.
	MaxTokenCallsAtOnce int

	UnknownCustomFields int // custom field values dropped: no such field on the location
}

type reqKey struct{ path, subject string }

// gauge counts what is in progress and keeps the most at once.
type gauge struct{ now, max atomic.Int64 }

// enter counts one more in progress; the returned func counts it done.
func (g *gauge) enter() (leave func()) {
	n := g.now.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
	return func() { g.now.Add(-1) }
}

// counters is the live form of Stats, guarded by Server.mu.
type counters struct {
	tokenCalls, codeExchanges, rotations, spentReuses, graceReuses map[string]int
	invalidGrants, inactive, locationTokens, rateLimited           map[string]int
	scopeDenied, userMissing, installedLocationPages               map[string]int
	contactCreates, contactUpdates, contactDeletes                 map[string]int
	upsertsWithoutKey, duplicateRefusals, ignoredFields            map[string]int
	contactSearches, customFieldCreates, tagAdds, tagRemoves       map[string]int
	searchLagged                                                   map[string]int
	apptCreates, apptUpdates, apptDeletes                          map[string]int
	noteCreates, noteUpdates, noteDeletes                          map[string]int
	notifications, ownerRefusals, notFound, malformedIDs           map[string]int

	expiredTokenCalls, unknownTokenCalls, revokedTokenCalls, faults int
	unknownCustomFields                                             int

	requests map[reqKey]int
}

func newCounters() *counters {
	m := func() map[string]int { return make(map[string]int) }
	return &counters{
		tokenCalls: m(), codeExchanges: m(), rotations: m(), spentReuses: m(), graceReuses: m(),
		invalidGrants: m(), inactive: m(), locationTokens: m(), rateLimited: m(),
		scopeDenied: m(), userMissing: m(), installedLocationPages: m(),
		contactCreates: m(), contactUpdates: m(), contactDeletes: m(),
		upsertsWithoutKey: m(), duplicateRefusals: m(), ignoredFields: m(),
		contactSearches: m(), customFieldCreates: m(), tagAdds: m(), tagRemoves: m(),
		searchLagged: m(),
		apptCreates:  m(), apptUpdates: m(), apptDeletes: m(),
		noteCreates: m(), noteUpdates: m(), noteDeletes: m(),
		notifications: m(), ownerRefusals: m(), notFound: m(), malformedIDs: m(),
		requests: make(map[reqKey]int),
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.stats
	st := Stats{
		TokenCalls:             maps.Clone(c.tokenCalls),
		CodeExchanges:          maps.Clone(c.codeExchanges),
		Rotations:              maps.Clone(c.rotations),
		SpentReuses:            maps.Clone(c.spentReuses),
		GraceReuses:            maps.Clone(c.graceReuses),
		InvalidGrants:          maps.Clone(c.invalidGrants),
		InactiveGrants:         maps.Clone(c.inactive),
		LocationTokens:         maps.Clone(c.locationTokens),
		RateLimited:            maps.Clone(c.rateLimited),
		ScopeDenied:            maps.Clone(c.scopeDenied),
		UserMissing:            maps.Clone(c.userMissing),
		InstalledLocationPages: maps.Clone(c.installedLocationPages),
		MaxInWindow:            make(map[string]int, len(s.limits)),
		Accepted:               make(map[string]int, len(s.limits)),
		ContactCreates:         maps.Clone(c.contactCreates),
		ContactUpdates:         maps.Clone(c.contactUpdates),
		ContactDeletes:         maps.Clone(c.contactDeletes),
		UpsertsWithoutKey:      maps.Clone(c.upsertsWithoutKey),
		DuplicateRefusals:      maps.Clone(c.duplicateRefusals),
		IgnoredFields:          maps.Clone(c.ignoredFields),
		ContactSearches:        maps.Clone(c.contactSearches),
		SearchLagged:           maps.Clone(c.searchLagged),
		CustomFieldCreates:     maps.Clone(c.customFieldCreates),
		TagAdds:                maps.Clone(c.tagAdds),
		TagRemoves:             maps.Clone(c.tagRemoves),
		AppointmentCreates:     maps.Clone(c.apptCreates),
		AppointmentUpdates:     maps.Clone(c.apptUpdates),
		AppointmentDeletes:     maps.Clone(c.apptDeletes),
		NoteCreates:            maps.Clone(c.noteCreates),
		NoteUpdates:            maps.Clone(c.noteUpdates),
		NoteDeletes:            maps.Clone(c.noteDeletes),
		Notifications:          maps.Clone(c.notifications),
		OwnerRefusals:          maps.Clone(c.ownerRefusals),
		NotFound:               maps.Clone(c.notFound),
		MalformedIDs:           maps.Clone(c.malformedIDs),
		ExpiredTokenCalls:      c.expiredTokenCalls,
		UnknownTokenCalls:      c.unknownTokenCalls,
		RevokedTokenCalls:      c.revokedTokenCalls,
		Faults:                 c.faults,
		MaxTokenCallsAtOnce:    int(s.tokenCallsInFlight.max.Load()),
		UnknownCustomFields:    c.unknownCustomFields,
	}
	for subj, w := range s.limits {
		if w.max > 0 {
			st.MaxInWindow[subj] = w.max
		}
		if w.accepted > 0 {
			st.Accepted[subj] = w.accepted
		}
	}
	return st
}

// ResetCounters zeroes every counter, MaxInWindow and Accepted included.
// It leaves the state alone, the rate limit windows too.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newCounters()
	for _, w := range s.limits {
		w.max, w.accepted = 0, 0
	}
}

func (s *Server) count(m func(*counters) map[string]int, subj string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m(s.stats)[subj]
}

// TokenCalls returns the refresh_token grant calls for the location.
func (s *Server) TokenCalls(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.tokenCalls }, locationID)
}

// Rotations returns how many of the location's refresh tokens were spent.
func (s *Server) Rotations(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.rotations }, locationID)
}

// SpentReuses returns how often a spent refresh token of the location was
// presented again, whether the grace served it or not.
func (s *Server) SpentReuses(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.spentReuses }, locationID)
}

// GraceReuses returns how many spent refresh token reuses the grace served.
func (s *Server) GraceReuses(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.graceReuses }, locationID)
}

// InvalidGrants returns the invalid grant answers for the location.
func (s *Server) InvalidGrants(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.invalidGrants }, locationID)
}

// RateLimited returns the 429 answers for the location.
func (s *Server) RateLimited(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.rateLimited }, locationID)
}

// ScopeDenied returns the 401s for a missing scope the location got.
func (s *Server) ScopeDenied(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.scopeDenied }, locationID)
}

// MaxInWindow returns the largest number of the location's API requests
// accepted within one RateInterval (sliding): with EnforceRateLimit off, a
// value above RateLimit shows the client did not respect the limit.
func (s *Server) MaxInWindow(locationID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.limits[locationID]; w != nil {
		return w.max
	}
	return 0
}

// ExpiredTokenCalls returns the API calls made with an expired access token.
func (s *Server) ExpiredTokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.expiredTokenCalls
}

// UnknownTokenCalls returns the API calls made with no or an unknown access
// token.
func (s *Server) UnknownTokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.unknownTokenCalls
}

// Requests returns how many requests (of any outcome, faults included) had
// a URL path starting with pathPrefix and were about locationID (see
// Fault.Location); "" matches any path or location.
func (s *Server) Requests(pathPrefix, locationID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.stats.requests {
		if strings.HasPrefix(k.path, pathPrefix) && (locationID == "" || k.subject == locationID) {
			n += v
		}
	}
	return n
}

// Notifications returns how many of the location's appointment creates and
// updates GHL took without toNotify false, each one running the
// calendar's automations.
func (s *Server) Notifications(locationID string) int {
	return s.count(func(c *counters) map[string]int { return c.notifications }, locationID)
}
