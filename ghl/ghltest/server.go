// Package ghltest is a fake GoHighLevel (GHL) API server for tests,
// benchmarks and the in-process sandbox, faithful to the project's GHL.md:
// OAuth code exchange, single-use rotating refresh tokens with the 30 s
// concurrency grace, agency-to-location tokens, access token expiry, contacts,
// calendars and appointments, the per-location burst and daily rate limits,
// and fault injection (latency, status codes, dropped connections).
//
// Everything the fake sees is counted so tests can assert on it (see
// [Server.Stats]). A Server is safe for concurrent use.
//
// Request bodies are validated like GHL's: a missing required field or a
// property GHL.md does not list is a 422 ("property x should not exist"), a
// wrong or missing Version header a 400. Location endpoints take only that
// location's token (403 otherwise). Every API route requires the scope GHL
// requires for it (scopes.go), and a token without it gets GHL's 401 "The
// token is not authorized for this scope."
//
// Contacts behave as GHL.md's "What real GHL does that a kind fake hides"
// says: an unknown contact id answers 400 "Contact with id … not found"
// (never 404) and a malformed one 500; the upsert needs an email or a
// phone and, when the two match two contacts, updates the one the
// location's priority puts first and ignores the other field; creates and
// updates of another contact's email or phone are refused with the
// duplicate 400 and its meta unless the location allows duplicates
// (SetContactSettings); PUT takes only the update DTO's fields; search
// answers dates of birth in epoch ms. Counters for each are in Stats.
//
// Counters, rate limits and faults are keyed by the subject of a token: the
// location ID for a Location token, the company ID for a Company (agency)
// token. The methods name that parameter locationID because almost every
// test deals in location tokens.
package ghltest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// API versions GHL expects in the Version header, per API area.
const (
	VersionContacts  = "2021-07-28" // contacts and /oauth/locationToken
	VersionCalendars = "2021-04-15" // calendars and appointments
)

// DefaultScope is the scope granted when a consent does not ask for one.
const DefaultScope = "contacts.readonly contacts.write calendars.readonly calendars.write " +
	"calendars/events.readonly calendars/events.write locations.readonly " +
	"locations/customFields.readonly locations/customFields.write users.readonly oauth.readonly oauth.write"

// User types of a token, as GHL spells them.
const (
	UserTypeLocation = "Location"
	UserTypeCompany  = "Company"
)

// Options configures a Server. The zero value is usable: any client
// credentials are accepted and GHL's documented limits apply.
type Options struct {
	// ClientID and ClientSecret are the app credentials /oauth/token checks.
	// When ClientID is empty any non-empty pair is accepted.
	ClientID, ClientSecret string

	// TokenLifetime is the access token life (expires_in); default 86399s.
	TokenLifetime time.Duration
	// Grace is how long after its rotation a spent refresh token, presented
	// again by the client that spent it, gets the same new token pair back
	// (expires_in then counts down); default 30s.
	Grace time.Duration
	// Now is the clock for token expiry, the grace and rate windows; default
	// time.Now. Injected latencies are real time regardless.
	Now func() time.Time

	// RateLimit is the number of API (non /oauth) requests allowed per
	// RateInterval per location; default 100 per 10s.
	RateLimit    int
	RateInterval time.Duration
	// DailyLimit is the number of API requests allowed per daily window
	// per location; default 200000.
	DailyLimit int
	// DailyReset is when, after UTC midnight, the daily window starts
	// again; default 6h. GHL does not document its reset time, and a fake
	// that reset at UTC midnight would hide code that assumes it does. The
	// headers do not tell it (GHL's do not); DailyWindowEnd does, for tests.
	// Use 24h for UTC midnight.
	DailyReset time.Duration
	// EnforceRateLimit answers 429 over the limits. Without it requests are
	// only counted and the X-RateLimit headers still sent.
	EnforceRateLimit bool

	// TokenAnswer shapes every token answer (see SetTokenAnswer).
	TokenAnswer TokenAnswer

	// OnTokenIssued, if set, is called with the subject (location or company
	// ID) after a code exchange, a refresh rotation or a location token has
	// changed the state and before the answer is written (and before any
	// LatencyAfter). A grace reuse does not call it. See SetOnTokenIssued.
	OnTokenIssued func(locationID string)

	// SearchLag is how long a new contact stays out of POST
	// /contacts/search answers, as GHL's search index shows a write
	// seconds after it; 0 shows it at once.
	SearchLag time.Duration

	// StatePath, if set, is a JSON state file: NewServer, New and Open load
	// it when it exists, Close writes it (atomically, mode 0600).
	StatePath string
	// SaveOnChange, with StatePath, writes the state file after every
	// request that changed the state and before its answer goes out
	// (atomically, synced to disk), so that a process killed at any moment
	// leaves a file holding all that its answers reported: no refresh token
	// is rotated, no contact or appointment created, in an answer the file
	// does not hold. A save that fails answers 503 instead; the change stays
	// in memory for the next save. Changes made through the Go methods
	// (AddLocation, Revoke, …) are written with the next answer, or by
	// SaveFile or Close. Access tokens expired and refresh tokens spent a
	// day ago are left out of the file, so that it does not grow with every
	// rotation; presented again, they are refused as before.
	SaveOnChange bool
	// Logf reports what Close cannot return (a failed state save); default
	// log.Printf.
	Logf func(format string, args ...any)
}

func (o *Options) setDefaults() {
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = 86399 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 100
	}
	if o.RateInterval <= 0 {
		o.RateInterval = 10 * time.Second
	}
	if o.DailyLimit <= 0 {
		o.DailyLimit = 200000
	}
	if o.DailyReset <= 0 {
		o.DailyReset = 6 * time.Hour
	}
	o.DailyReset %= 24 * time.Hour
	if o.Logf == nil {
		o.Logf = log.Printf
	}
}

// Server is the fake GHL. Create it with NewServer (listening on a local
// port) or New (not listening: mount Handler yourself).
type Server struct {
	// URL is the base URL of a listening server (http://127.0.0.1:port), ""
	// for one made by New. It serves both the API host and the marketplace
	// consent page.
	URL string

	opts Options
	ts   *httptest.Server
	mux  *http.ServeMux
	done chan struct{} // closed by Close: injected latencies stop waiting

	mu     sync.Mutex // guards st, stats, limits, userMissing, answers
	st     *state
	stats  *counters
	limits map[string]*window
	// userMissing: user ids that answer 401 "The user does not exist."
	// (SetUserMissing).
	userMissing map[string]bool
	// answers shapes the token answers per subject ("" for every other);
	// see SetTokenAnswer.
	answers map[string]TokenAnswer

	// hooks sends the data webhooks (webhooks.go).
	hooks webhookSender

	// tokenCallsInFlight counts the token calls being answered, latency
	// included, and the most at once (Stats().MaxTokenCallsAtOnce).
	tokenCallsInFlight gauge

	faultMu sync.Mutex
	faults  []*faultEntry
	nFaults atomic.Int32

	// changes counts the changes of st (guarded by mu); saved is the
	// count the state file holds (guarded by saveMu, which one save at a
	// time holds).
	changes uint64
	saveMu  sync.Mutex
	saved   uint64

	onTokenIssued atomic.Pointer[func(string)]
	closeOnce     sync.Once
}

// New returns a Server that does not listen: serve its Handler in process.
// It panics if Options.StatePath names a file that cannot be loaded, so a
// sandbox never silently starts over; Open returns that error instead.
func New(opts Options) *Server {
	s, err := Open(opts)
	if err != nil {
		panic(err.Error())
	}
	return s
}

// Open is New returning the error of a state file that cannot be loaded.
func Open(opts Options) (*Server, error) {
	opts.setDefaults()
	s := &Server{
		opts:   opts,
		done:   make(chan struct{}),
		st:     newState(),
		stats:  newCounters(),
		limits: make(map[string]*window),

		userMissing: make(map[string]bool),
		answers:     map[string]TokenAnswer{"": opts.TokenAnswer},
	}
	if opts.OnTokenIssued != nil {
		s.SetOnTokenIssued(opts.OnTokenIssued)
	}
	s.routes()
	if opts.StatePath != "" {
		if _, err := s.LoadFile(opts.StatePath); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// NewServer returns a Server listening on a local port (httptest.Server).
func NewServer(opts Options) *Server {
	s := New(opts)
	s.ts = httptest.NewServer(s.Handler())
	s.URL = s.ts.URL
	return s
}

// Handler serves the whole fake: API host, /oauth endpoints and the consent
// page. When Drop faults fire on a ResponseWriter that cannot be hijacked
// (HTTP/2, wrapped writers) the handler panics with http.ErrAbortHandler,
// which net/http turns into a reset.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Client returns an http.Client for a listening server (nil for New).
func (s *Server) Client() *http.Client {
	if s.ts == nil {
		return nil
	}
	return s.ts.Client()
}

// Close stops a listening server and, with Options.StatePath, writes the
// state file. Injected latencies in flight are cut short. Use SaveFile to see
// a save error; Close only logs it. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ts != nil {
			s.ts.Close()
		}
		if s.opts.StatePath != "" {
			if err := s.SaveFile(s.opts.StatePath); err != nil {
				s.opts.Logf("ghltest: %v", err)
			}
		}
	})
}

// SetOnTokenIssued replaces the OnTokenIssued hook (nil removes it). Safe
// for concurrent use with requests in flight.
func (s *Server) SetOnTokenIssued(f func(locationID string)) {
	if f == nil {
		s.onTokenIssued.Store(nil)
		return
	}
	s.onTokenIssued.Store(&f)
}

func (s *Server) tokenIssued(subject string) {
	if f := s.onTokenIssued.Load(); f != nil {
		(*f)(subject)
	}
}

func (s *Server) routes() {
	m := router{http.NewServeMux()}
	m.HandleFunc("POST /oauth/token", s.handleToken)
	m.Handle("POST /oauth/locationToken", s.api(VersionContacts, false, s.handleLocationToken))
	m.Handle("GET /oauth/installedLocations", s.api(VersionContacts, false, s.handleInstalledLocations))
	m.HandleFunc("GET /v2/oauth/chooselocation", s.handleChooseLocation)

	m.Handle("POST /contacts/upsert", s.api(VersionContacts, true, s.handleUpsertContact))
	m.Handle("POST /contacts/{$}", s.api(VersionContacts, true, s.handleCreateContact))
	m.Handle("POST /contacts/search", s.api(VersionContacts, true, s.handleSearchContacts))
	m.Handle("POST /contacts/{id}/tags", s.api(VersionContacts, true, s.handleTags(true)))
	m.Handle("DELETE /contacts/{id}/tags", s.api(VersionContacts, true, s.handleTags(false)))
	m.Handle("GET /locations/{id}/customFields", s.api(VersionContacts, true, s.handleListCustomFields))
	m.Handle("POST /locations/{id}/customFields", s.api(VersionContacts, true, s.handleCreateCustomField))
	m.Handle("GET /contacts/search/duplicate", s.api(VersionContacts, true, s.handleDuplicateContact))
	m.Handle("GET /contacts/{id}", s.api(VersionContacts, true, s.handleGetContact))
	m.Handle("PUT /contacts/{id}", s.api(VersionContacts, true, s.handleUpdateContact))
	m.Handle("DELETE /contacts/{id}", s.api(VersionContacts, true, s.handleDeleteContact))
	m.Handle("GET /contacts/{id}/appointments", s.api(VersionContacts, true, s.handleContactAppointments))

	m.Handle("GET /locations/{id}", s.api(VersionContacts, true, s.handleGetLocation))
	m.Handle("GET /users/{$}", s.api(VersionContacts, true, s.handleListUsers))

	m.Handle("GET /calendars/{$}", s.api(VersionCalendars, true, s.handleListCalendars))
	m.Handle("GET /calendars/{id}", s.api(VersionCalendars, true, s.handleGetCalendar))
	m.Handle("GET /calendars/events", s.api(VersionCalendars, true, s.handleCalendarEvents))
	m.Handle("POST /calendars/events/appointments", s.api(VersionCalendars, true, s.handleCreateAppointment))
	m.Handle("GET /calendars/events/appointments/{id}", s.api(VersionCalendars, true, s.handleGetAppointment))
	m.Handle("PUT /calendars/events/appointments/{id}", s.api(VersionCalendars, true, s.handleUpdateAppointment))
	m.Handle("DELETE /calendars/events/{id}", s.api(VersionCalendars, true, s.handleDeleteAppointment))
	m.Handle("GET /calendars/appointments/{id}/notes", s.api(VersionCalendars, true, s.handleListNotes))
	m.Handle("POST /calendars/appointments/{id}/notes", s.api(VersionCalendars, true, s.handleCreateNote))
	m.Handle("PUT /calendars/appointments/{id}/notes/{noteId}", s.api(VersionCalendars, true, s.handleUpdateNote))
	m.Handle("DELETE /calendars/appointments/{id}/notes/{noteId}", s.api(VersionCalendars, true, s.handleDeleteNote))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Cannot "+r.Method+" "+r.URL.Path)
	})
	s.mux = m.ServeMux
}

// errorBody is GHL's error shape; Message is a string, or a list of
// validation messages on a 422.
type errorBody struct {
	StatusCode int `json:"statusCode"`
	Message    any `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{StatusCode: status, Message: msg})
}

func writeValidation(w http.ResponseWriter, msgs ...string) {
	writeJSON(w, http.StatusUnprocessableEntity, errorBody{StatusCode: http.StatusUnprocessableEntity, Message: msgs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled: a failure is a bug here.
		panic("ghltest: marshal response: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// randHex returns n random bytes, hex encoded.
func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newID returns a 20 character alphanumeric ID shaped like GHL's.
func newID() string {
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// newTraceID returns a random UUID-shaped trace ID.
func newTraceID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
