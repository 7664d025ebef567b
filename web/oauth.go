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
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// OAuth is what the connect flow needs of GHL; *ghl.OAuthService is one.
type OAuth interface {
	AuthorizeURL(marketplaceURL, state string, scopes []string) string
	ExchangeCode(ctx context.Context, code, userType string) (*ghl.Token, *ghl.Response, error)
	LocationToken(ctx context.Context, agencyAccessToken, companyID, locationID string) (*ghl.Token, *ghl.Response, error)
}

// Connector stores connected locations; *store.Store is one.
type Connector interface {
	Connect(ctx context.Context, c store.Connection) error
}

// Server is the web side of ghlsync. Its fields are set once, before
// Handler is called.
type Server struct {
	OAuth          OAuth
	Store          Connector
	Redis          redis.UniversalClient
	MarketplaceURL string
	Scopes         []string
	Log            *slog.Logger
	// StateTTL is how long a consent may take. Default 10 minutes.
	StateTTL time.Duration
	// Webhooks configures GHL's app webhooks (INSTALL, UNINSTALL).
	Webhooks Webhooks
	// ConnectLimit is how many connects one client address may start per
	// minute, and as many callbacks it may make; beyond, 429. Each connect
	// stores a state in Redis, each callback may cost a GHL call. Default 20.
	ConnectLimit int
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
	http.Redirect(w, r, s.OAuth.AuthorizeURL(s.MarketplaceURL, state, s.Scopes), http.StatusFound)
}

var connectedPage = template.Must(template.New("connected").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ghlsync: connected</title></head>
<body><h1>Connected to GoHighLevel</h1>
{{if .Company}}<p>Agency {{.Company}} installed the app.</p>{{end}}
<p>These locations are connected; their tokens are now kept alive:</p>
<ul>{{range .Locations}}<li>{{.}}</li>{{end}}</ul>
{{with .Failed}}<p>These approved locations could not be connected; connect them again:</p>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p><a href="/">Status</a></p></body></html>
`))

// callback takes GHL's answer to the consent: it checks the state, trades
// the code for tokens and stores them.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	if state == "" {
		http.Error(w, "missing state: start again at /api/auth/connect", http.StatusBadRequest)
		return
	}
	userType, err := s.Redis.GetDel(r.Context(), keyState+state).Result()
	if errors.Is(err, redis.Nil) {
		http.Error(w, "unknown, used or expired state: start again at /api/auth/connect", http.StatusBadRequest)
		return
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
		s.Log.Warn("OAuth code exchange failed", "err", err)
		http.Error(w, "GHL did not accept the authorization: start again at /api/auth/connect", http.StatusBadGateway)
		return
	}
	page := struct {
		Company           string
		Locations, Failed []string
	}{}
	if tok.UserType == store.UserTypeCompany {
		page.Company = tok.CompanyID
		page.Locations, page.Failed, err = s.connectCompany(r.Context(), tok)
	} else {
		err = s.store(r.Context(), tok, tok.LocationID)
		page.Locations = []string{tok.LocationID}
	}
	if err != nil {
		s.Log.Error("storing connected tokens", "err", err)
		http.Error(w, "could not store the connection: start again at /api/auth/connect", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	connectedPage.Execute(w, page)
}

func (s *Server) store(ctx context.Context, tok *ghl.Token, id string) error {
	if id == "" {
		return errors.New("GHL's token names no location or company")
	}
	err := s.Store.Connect(ctx, store.Connection{
		LocationID: id,
		CompanyID:  tok.CompanyID,
		UserType:   tok.UserType,
		Scopes:     tok.Scope,
		Tokens:     store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry},
	})
	if err == nil {
		s.Log.Info("GHL connected", "id", id, "user_type", tok.UserType, "expires_at", tok.Expiry)
	}
	return err
}

// connectCompany stores the agency token (ghlsync keeps it alive to mint
// tokens for locations installed later) and a location token for each
// approved location.
func (s *Server) connectCompany(ctx context.Context, tok *ghl.Token) (connected, failed []string, err error) {
	if err := s.store(ctx, tok, tok.CompanyID); err != nil {
		return nil, nil, err
	}
	for _, loc := range tok.ApprovedLocations {
		lt, _, err := s.OAuth.LocationToken(ctx, tok.AccessToken, tok.CompanyID, loc)
		if err == nil {
			if lt.LocationID == "" {
				lt.LocationID = loc
			}
			if lt.UserType == "" {
				lt.UserType = store.UserTypeLocation
			}
			err = s.store(ctx, lt, loc)
		}
		if err != nil {
			s.Log.Warn("could not connect an approved location", "location", loc, "company", tok.CompanyID, "err", err)
			failed = append(failed, fmt.Sprintf("%s (%v)", loc, err))
			continue
		}
		connected = append(connected, loc)
	}
	return connected, failed, nil
}
