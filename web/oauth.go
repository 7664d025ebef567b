// Package web serves ghlsync's HTTP side: the OAuth connect flow and its
// callback, GHL's INSTALL and UNINSTALL webhooks, the status page and its
// JSON at /api/locations, and asynqmon at /monitoring; Admin guards the
// status page and asynqmon.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/store"
)

// OAuth is what the connect flow needs of GHL; *ghl.OAuthService is one.
type OAuth interface {
	AuthorizeURL(marketplaceURL, state string, scopes []string) string
	ExchangeCode(ctx context.Context, code, userType string) (*ghl.Token, *ghl.Response, error)
	LocationToken(ctx context.Context, agencyAccessToken, companyID, locationID string) (*ghl.Token, *ghl.Response, error)
	AllInstalledLocations(ctx context.Context, agencyAccessToken, companyID, appID string, pageSize int) ([]ghl.InstalledLocation, error)
}

// LocationReader reads a location's name and time zone from GHL;
// *ghl.LocationsService is one.
type LocationReader interface {
	Get(ctx context.Context, accessToken, id string) (*ghl.Location, *ghl.Response, error)
}

// Connector stores connected locations; *store.Store is one.
type Connector interface {
	Connect(ctx context.Context, c store.Connection) error
	// Credential tells a kept connection that the database already holds
	// (or holds a newer one of) from one still to write.
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	// SetLocationInfo records the name and time zone GHL gave a location.
	SetLocationInfo(ctx context.Context, loc, name, timezone string) error
}

// AgencyScopes are the scopes an agency (Company) install needs beyond
// Scopes: listing the agency's installed locations and minting their
// tokens. GHL grants them to agency tokens only, so a location's consent
// does not ask for them.
var AgencyScopes = []string{"oauth.readonly", "oauth.write"}

// Server is the web side of ghlsync. Its fields are set once, before
// Handler is called.
type Server struct {
	OAuth          OAuth
	Store          Connector
	Redis          redis.UniversalClient
	MarketplaceURL string
	// Scopes are asked for on the consent page; an agency install adds
	// AgencyScopes.
	Scopes []string
	// AppUserType is the user type a code is exchanged with when GHL
	// initiated the install ("Add App" in its marketplace sends a code and
	// no state): the app's own, store.UserTypeLocation when empty.
	AppUserType string
	// AppID is the marketplace app's id, with which an agency install
	// lists the agency's installed locations; without it only the
	// locations the token approves are connected.
	AppID string
	// Locations, when set, reads each connected location's name and time
	// zone from GHL (best effort, InfoTimeout per location), for the
	// page and the store.
	Locations LocationReader
	// InfoTimeout bounds each Locations call. Default 5s.
	InfoTimeout time.Duration
	Log         *slog.Logger
	// StateTTL is how long a consent may take. Default 10 minutes.
	StateTTL time.Duration
	// Webhooks configures GHL's app webhooks (INSTALL, UNINSTALL).
	Webhooks Webhooks
	// ConnectLimit is how many connects one client address may start per
	// minute, and as many callbacks it may make; beyond, 429. Each connect
	// stores a state in Redis, each callback may cost a GHL call. Default 20.
	ConnectLimit int
	// Cipher seals the tokens of a connection kept in Redis while the
	// database does not take them (see PendingConnections).
	Cipher *tokencrypt.Cipher
	// SaveFor bounds how long the callback retries the database write of
	// a new connection before it answers that the connection completes by
	// itself. Default 15s.
	SaveFor time.Duration
	Clock   clock.Clock
}

const keyState = "ghlsync:oauth:state:"

// Handler returns the routes of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/auth/connect", s.perClient(s.connect))
	mux.Handle("GET /api/auth/callback", s.perClient(s.callback))
	mux.HandleFunc(WebhookRoute, s.webhook)
	return mux
}

// perClient limits h to ConnectLimit requests per minute per client
// address.
func (s *Server) perClient(h http.HandlerFunc) http.Handler {
	limit := s.ConnectLimit
	if limit <= 0 {
		limit = 20
	}
	t := newThrottle(limit, time.Minute, nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, ok := t.take(clientAddress(r)); !ok {
			tooMany(w, wait, "too many connection attempts from your address")
			return
		}
		h(w, r)
	})
}

// connect sends the user to GHL's consent page with a new single-use state.
// ?user_type=Company starts an agency install.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	userType := store.UserTypeLocation
	switch r.URL.Query().Get("user_type") {
	case "", store.UserTypeLocation:
	case store.UserTypeCompany:
		userType = store.UserTypeCompany
	default:
		http.Error(w, "user_type must be Location or Company", http.StatusBadRequest)
		return
	}
	b := make([]byte, 24)
	rand.Read(b)
	state := hex.EncodeToString(b)
	ttl := s.StateTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if err := s.Redis.Set(r.Context(), keyState+state, userType, ttl).Err(); err != nil {
		s.Log.Error("storing OAuth state", "err", err)
		http.Error(w, "cannot start the connection now; try again", http.StatusServiceUnavailable)
		return
	}
	scopes := s.Scopes
	if userType == store.UserTypeCompany {
		scopes = withScopes(scopes, AgencyScopes)
	}
	http.Redirect(w, r, s.OAuth.AuthorizeURL(s.MarketplaceURL, state, scopes), http.StatusFound)
}

// withScopes is scopes with those of extra it lacks appended.
func withScopes(scopes, extra []string) []string {
	out := slices.Clone(scopes)
	for _, sc := range extra {
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

var connectedPage = template.Must(template.New("connected").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ghlsync: {{if .Pending}}connecting{{else}}connected{{end}}</title></head>
<body><h1>{{if .Pending}}Connection accepted by GoHighLevel{{else}}Connected to GoHighLevel{{end}}</h1>
{{if .Company}}<p>Agency {{.Company}} installed the app.</p>{{end}}
{{with .Locations}}<p>These locations are connected; their tokens are now kept alive:</p>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Pending}}<p>GoHighLevel accepted these, but the database does not answer now. Their tokens are kept,
and the connection completes by itself once the database is back: there is no need to connect again.</p>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Failed}}<p>These approved locations could not be connected; connect them again:</p>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p><a href="/">Status</a></p></body></html>
`))

// connectedPageData is what connectedPage shows.
type connectedPageData struct {
	Company                    string
	Locations, Pending, Failed []string
}

// callback takes GHL's answer to the consent: it checks the state, trades
// the code for tokens and stores them. The code is single use, so once GHL
// has answered the tokens must not be lost: they are kept in Redis before
// the database write, which is retried for SaveFor; a database that still
// refuses gets a 503 saying the connection completes by itself (the
// worker's PendingConnections.Run writes what was kept).
//
// A callback without a state is an install GHL initiated ("Add App" in its
// marketplace, which sends only a code): its code is exchanged with the
// app's user type (AppUserType). A state that is there must be one
// /api/auth/connect issued and not used yet: a wrong or reused one is
// refused, as a forged callback would carry.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	var userType string
	var err error
	if !q.Has("state") {
		if code == "" {
			http.Error(w, "missing code and state: start at /api/auth/connect", http.StatusBadRequest)
			return
		}
		userType = s.AppUserType
		if userType == "" {
			userType = store.UserTypeLocation
		}
		s.Log.Info("an install GHL initiated (no state): exchanging its code", "user_type", userType)
	} else {
		if state != "" {
			userType, err = s.Redis.GetDel(r.Context(), keyState+state).Result()
		}
		if state == "" || errors.Is(err, redis.Nil) {
			http.Error(w, "unknown, used or expired state: start again at /api/auth/connect", http.StatusBadRequest)
			return
		}
	}
	if err != nil {
		s.Log.Error("reading OAuth state", "err", err)
		http.Error(w, "cannot finish the connection now; start again at /api/auth/connect", http.StatusServiceUnavailable)
		return
	}
	if code == "" {
		http.Error(w, "GHL sent no code (was the consent declined?): start again at /api/auth/connect", http.StatusBadRequest)
		return
	}
	tok, _, err := s.OAuth.ExchangeCode(r.Context(), code, userType)
	if err != nil {
		status, msg := exchangeFailure(err)
		s.Log.Warn("OAuth code exchange failed", "err", err, "remedy", msg)
		http.Error(w, msg, status)
		return
	}
	// From here GHL has spent the code: what it answered is kept even if
	// the browser goes away.
	ctx := context.WithoutCancel(r.Context())
	sv := &saver{s: s}
	page := connectedPageData{}
	var kept bool
	if tok.UserType == store.UserTypeCompany {
		page.Company = tok.CompanyID
		page.Locations, page.Pending, page.Failed, err = s.connectCompany(ctx, sv, tok)
		kept = len(page.Pending) > 0
	} else {
		kept, err = sv.save(ctx, tok, tok.LocationID)
		switch {
		case kept:
			page.Pending = []string{tok.LocationID}
		case err == nil:
			page.Locations = []string{s.describe(ctx, tok, tok.LocationID)}
		}
	}
	var bad *badIDError
	switch {
	case errors.As(err, &bad):
		s.Log.Error("GHL's token cannot be stored", "err", err)
		http.Error(w, "could not store the connection: "+err.Error(), http.StatusBadGateway)
		return
	case err != nil && !kept:
		s.Log.Error("storing connected tokens", "err", err)
		http.Error(w, "could not store the connection: start again at /api/auth/connect", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if kept {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	connectedPage.Execute(w, page)
}

// badIDError is an id in GHL's answer that ghlsync cannot store.
type badIDError struct{ what, why string }

func (e *badIDError) Error() string { return "GHL's token names a " + e.what + " that " + e.why }

// checkID refuses an id that no column holds (see store.CheckID), before
// anything is written: a database would refuse or cut it.
func checkID(what, id string) error {
	if err := store.CheckID(id); err != nil {
		return &badIDError{what, "is " + err.Error()}
	}
	return nil
}

// saver stores the connections of one callback. Once one write has
// outlasted SaveFor, the database is taken to be down for the rest of the
// request: the others are tried once and kept, so the answer is not
// delayed by SaveFor per location.
type saver struct {
	s      *Server
	dbDown bool
}

// save stores tok as the connection id. kept says that the database did
// not take it but Redis holds it for PendingConnections; err is then the
// database's error.
func (sv *saver) save(ctx context.Context, tok *ghl.Token, id string) (kept bool, err error) {
	s := sv.s
	if id == "" {
		return false, errors.New("GHL's token names no location or company")
	}
	if err := checkID("location or company id", id); err != nil {
		return false, err
	}
	if err := checkID("company id", tok.CompanyID); err != nil {
		return false, err
	}
	c := store.Connection{
		LocationID: id,
		CompanyID:  tok.CompanyID,
		UserType:   tok.UserType,
		Scopes:     tok.Scope,
		Tokens:     store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry},
	}
	p := s.pending()
	raw, kerr := p.keep(ctx, c)
	if kerr != nil {
		s.Log.Warn("could not keep GHL's tokens in Redis before the database write", "id", id, "err", kerr)
	}
	limit := s.SaveFor
	if limit <= 0 {
		limit = 15 * time.Second
	}
	if sv.dbDown {
		limit = 0
	}
	attempt := 0
	err = store.Persist(ctx, s.Clock, limit, func(err error) bool {
		if attempt++; attempt%10 == 0 {
			s.Log.Warn("the database refuses a new connection; retrying", "id", id, "attempt", attempt, "err", err)
		}
		return errors.Is(err, store.ErrTooLong)
	}, func(ctx context.Context) error { return s.Store.Connect(ctx, c) })
	if errors.Is(err, store.ErrTooLong) {
		// No later write can land it; checkID should have caught it.
		if kerr == nil {
			p.drop(ctx, id, raw)
		}
		return false, &badIDError{"location or company id", fmt.Sprintf("is longer than the %d bytes ghlsync stores", store.MaxIDLen)}
	}
	if err != nil {
		sv.dbDown = true
		if kerr != nil {
			return false, err
		}
		s.Log.Error("the database refuses a new connection; its tokens are kept in Redis and stored once it is back",
			"id", id, "user_type", tok.UserType, "err", err)
		return true, err
	}
	if kerr == nil {
		if err := p.drop(ctx, id, raw); err != nil {
			s.Log.Warn("the connection is stored; its copy in Redis is left for the worker to drop", "id", id, "err", err)
		}
	}
	s.Log.Info("GHL connected", "id", id, "user_type", tok.UserType, "expires_at", tok.Expiry)
	return false, nil
}

// pending is the Server's PendingConnections.
func (s *Server) pending() *PendingConnections {
	return &PendingConnections{Store: s.Store, Redis: s.Redis, Cipher: s.Cipher, Log: s.Log, Clock: s.Clock}
}

// describe records the name and time zone GHL gives the location id
// (connected with tok) and returns how the page names it: "Name (id)", or
// the id alone when GHL does not say in InfoTimeout. It never fails the
// connection: the sync reads what is missing later.
func (s *Server) describe(ctx context.Context, tok *ghl.Token, id string) string {
	if s.Locations == nil {
		return id
	}
	timeout := s.InfoTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, _, err := s.Locations.Get(ctx, tok.AccessToken, id)
	if err != nil {
		s.Log.Warn("could not read the connected location's name from GHL", "location", id, "err", err)
		return id
	}
	if err := s.Store.SetLocationInfo(ctx, id, l.Name, l.Timezone); err != nil {
		s.Log.Warn("could not store the connected location's name", "location", id, "err", err)
	}
	if l.Name == "" {
		return id
	}
	return l.Name + " (" + id + ")"
}

// agencyLocations lists the locations an agency install covers: every
// location GHL lists as installed for the app (GET
// /oauth/installedLocations, paged: a bulk install's approvedLocations
// need not name them all), and the approved ones.
func (s *Server) agencyLocations(ctx context.Context, tok *ghl.Token) []string {
	locs := slices.Clone(tok.ApprovedLocations)
	if s.AppID == "" {
		s.Log.Warn("the app id is unknown (GHL_CLIENT_ID is not of the form <appId>-<suffix>): connecting only the locations the agency's token approves",
			"company", tok.CompanyID)
		return locs
	}
	installed, err := s.OAuth.AllInstalledLocations(ctx, tok.AccessToken, tok.CompanyID, s.AppID, 0)
	if err != nil {
		s.Log.Warn("could not list the agency's installed locations: connecting those its token approves and those listed",
			"company", tok.CompanyID, "listed", len(installed), "err", err)
	}
	for _, l := range installed {
		if !slices.Contains(locs, l.ID) {
			locs = append(locs, l.ID)
		}
	}
	return locs
}

// connectCompany stores the agency token (ghlsync keeps it alive to mint
// tokens for locations installed later) and a location token for each
// location the install covers (agencyLocations). The agency's own token is
// needed: a failure to store or keep it is err. kept lists the locations
// (and the agency) whose tokens wait in Redis for the database.
func (s *Server) connectCompany(ctx context.Context, sv *saver, tok *ghl.Token) (connected, kept, failed []string, err error) {
	agencyKept, err := sv.save(ctx, tok, tok.CompanyID)
	if err != nil && !agencyKept {
		return nil, nil, nil, err
	}
	if agencyKept {
		kept = append(kept, tok.CompanyID+" (agency)")
	}
	for _, loc := range s.agencyLocations(ctx, tok) {
		lt, _, err := s.OAuth.LocationToken(ctx, tok.AccessToken, tok.CompanyID, loc)
		locKept := false
		if err == nil {
			if lt.LocationID == "" {
				lt.LocationID = loc
			}
			if lt.UserType == "" {
				lt.UserType = store.UserTypeLocation
			}
			locKept, err = sv.save(ctx, lt, loc)
		}
		switch {
		case locKept:
			kept = append(kept, loc)
		case err != nil:
			s.Log.Warn("could not connect an approved location", "location", loc, "company", tok.CompanyID, "err", err)
			failed = append(failed, fmt.Sprintf("%s (%v)", loc, err))
		default:
			connected = append(connected, s.describe(ctx, lt, loc))
		}
	}
	return connected, kept, failed, nil
}

// store stores tok as the connection id, for the install webhook: tokens
// kept for the worker to store count as stored.
func (s *Server) store(ctx context.Context, tok *ghl.Token, id string) error {
	kept, err := (&saver{s: s}).save(ctx, tok, id)
	if kept {
		return nil
	}
	return err
}
