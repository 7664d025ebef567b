package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// StatusSource is what the operator's pages read; *store.Store is one.
type StatusSource interface {
	Credentials(ctx context.Context) ([]store.Credential, error)
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	SyncRuns(ctx context.Context, loc, kind string, limit int) ([]store.SyncRun, error)
	RefreshRuns(ctx context.Context, loc string, limit int) ([]store.RefreshRun, error)
	FailedRecords(ctx context.Context, loc string, offset, limit int) ([]store.FailedRecord, int64, error)
	Settings(ctx context.Context, loc string) (store.LocationSettings, error)
}

// Keys tells which encryption keys the process holds; *tokencrypt.Cipher
// is one.
type Keys interface {
	HasKey(id string) bool
}

// Status serves the operator's pages, meant to sit behind the admin guard
// (Admin.Guard), which says who is logged in: the overview at /, the same
// as JSON at /api/locations, a page per location at /locations/{id} with
// its buttons, and the schedules page at /schedules. Only the admin gets
// the buttons and forms; every form carries a token bound to the login,
// and a POST without a valid one is refused.
//
// Keys, when set, marks the locations whose tokens are sealed with a key
// the process does not have: they can be neither refreshed nor synced
// until the key is given back, whatever their status.
type Status struct {
	Source StatusSource
	Keys   Keys
	Log    *slog.Logger
	Clock  clock.Clock
	// PausedQueues, when set, lists the task queues that are paused
	// (asynqmon's pause button): nothing in them runs, so the page says so.
	PausedQueues func(context.Context) ([]string, error)
	// Actions, when set, gives each location's page its "refresh now" and
	// "sync now" buttons.
	Actions Actions
	// Schedules, when set, serves the schedules page.
	Schedules Schedules
	// FormKey signs the forms' tokens and the notices shown after them.
	// Every replica behind one address needs the same key (the app derives
	// it from TOKEN_ENCRYPTION_KEY); empty, Handler picks a random one,
	// good for this process only.
	FormKey []byte
	// PublicURL is WEB_PUBLIC_URL: an https one keeps the notice cookie
	// to HTTPS.
	PublicURL string
}

// LocationStatus is one connected location (or agency) as the pages show
// it. It carries no token. KeyMissing: its tokens are sealed with an
// encryption key that is not configured; KeyProblem says what to do.
// TokenLive says whether its token is one ghlsync keeps alive: a location
// that must be reconnected has none worth an expiry. Name and Timezone
// are GHL's (GET /locations/{id}), empty until GHL has told them.
type LocationStatus struct {
	LocationID       string                 `json:"location_id"`
	Name             string                 `json:"name,omitempty"`
	Timezone         string                 `json:"timezone,omitempty"`
	CompanyID        string                 `json:"company_id,omitempty"`
	UserType         string                 `json:"user_type"`
	Status           store.Status           `json:"status"`
	Problem          string                 `json:"problem,omitempty"`
	TokenLive        bool                   `json:"token_live"`
	ExpiresAt        time.Time              `json:"expires_at"`
	ExpiresInSeconds int64                  `json:"expires_in_seconds"`
	LastRefreshAt    *time.Time             `json:"last_refresh_at"`
	LastError        string                 `json:"last_error,omitempty"`
	KeyMissing       bool                   `json:"key_missing,omitempty"`
	KeyProblem       string                 `json:"key_problem,omitempty"`
	ReconnectURL     string                 `json:"reconnect_url,omitempty"`
	Syncs            map[string]*SyncStatus `json:"syncs"`
}

// Agency reports whether l is an agency (GHL's Company) rather than a
// location.
func (l LocationStatus) Agency() bool { return l.UserType == store.UserTypeCompany }

// Title is how the pages name l: its GHL name and id, or its id alone
// while the name is not known.
func (l LocationStatus) Title() string {
	if l.Name == "" {
		return l.LocationID
	}
	return l.Name + " (" + l.LocationID + ")"
}

// SyncStatus is the latest run of one kind of sync for a location.
type SyncStatus struct {
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Outcome    string     `json:"outcome"`
	Scanned    int        `json:"scanned"`
	Created    int        `json:"created"`
	Updated    int        `json:"updated"`
	Unchanged  int        `json:"unchanged"`
	Failed     int        `json:"failed"`
	Error      string     `json:"error,omitempty"`
}

func syncStatus(r store.SyncRun) *SyncStatus {
	return &SyncStatus{StartedAt: r.StartedAt.UTC(), FinishedAt: r.FinishedAt, Outcome: r.Outcome,
		Scanned: r.Scanned, Created: r.Created, Updated: r.Updated, Unchanged: r.Unchanged, Failed: r.Failed, Error: r.Error}
}

// Handler returns the routes of the pages.
func (s *Status) Handler() http.Handler {
	key := s.FormKey
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	p := &pages{Status: s, sign: signer{key: key, now: clock.Or(s.Clock).Now}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.overview)
	mux.HandleFunc("GET /api/locations", s.json)
	mux.HandleFunc("GET /locations/{id}", p.location)
	mux.HandleFunc("POST /locations/{id}/{action}", p.act)
	mux.HandleFunc("GET /schedules", p.schedules)
	mux.HandleFunc("POST /schedules/{name}/{action}", p.changeSchedule)
	return mux
}

// Routes are the ServeMux patterns Handler serves, for mounting it behind
// the admin guard.
var Routes = []string{"GET /{$}", "GET /api/locations", "/locations/", "/schedules", "/schedules/"}

// Locations reads the status of every location.
func (s *Status) Locations(ctx context.Context) ([]LocationStatus, error) {
	creds, err := s.Source.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]LocationStatus, 0, len(creds))
	for i := range creds {
		ls, err := s.locationStatus(ctx, &creds[i])
		if err != nil {
			return nil, err
		}
		out = append(out, ls)
	}
	return out, nil
}

func (s *Status) locationStatus(ctx context.Context, c *store.Credential) (LocationStatus, error) {
	now := clock.Or(s.Clock).Now()
	ls := LocationStatus{
		LocationID:       c.LocationID,
		Name:             c.Name,
		Timezone:         c.Timezone,
		CompanyID:        c.CompanyID,
		UserType:         c.UserType,
		Status:           c.Status,
		Problem:          c.Status.Problem(),
		ExpiresAt:        c.ExpiresAt.UTC(),
		ExpiresInSeconds: int64(c.ExpiresAt.Sub(now) / time.Second),
		LastRefreshAt:    c.RefreshedAt,
		LastError:        c.LastError,
		Syncs:            map[string]*SyncStatus{},
	}
	if s.Keys != nil && c.KeyID != "" && !s.Keys.HasKey(c.KeyID) {
		ls.KeyMissing = true
		ls.KeyProblem = "its tokens are sealed with encryption key " + c.KeyID + ", which is not configured: " +
			"add that key to TOKEN_ENCRYPTION_OLD_KEYS and restart; the token itself is fine, do not reconnect"
	}
	if c.Status == store.StatusNeedsReauth || c.Status == store.StatusUninstalled || c.Status == store.StatusMissingScope {
		ls.ReconnectURL = store.ConnectPath
		if c.UserType == store.UserTypeCompany {
			ls.ReconnectURL += "?user_type=Company"
		}
	}
	ls.TokenLive = (c.Status == store.StatusActive || c.Status == store.StatusInactive) && !ls.KeyMissing
	if c.UserType != store.UserTypeCompany {
		for _, kind := range syncer.Kinds {
			runs, err := s.Source.SyncRuns(ctx, c.LocationID, kind, 1)
			if err != nil {
				return ls, err
			}
			if len(runs) == 1 {
				ls.Syncs[kind] = syncStatus(runs[0])
			}
		}
	}
	return ls, nil
}

// StatusCount is how many locations are in one state, as the overview
// sums them up.
type StatusCount struct {
	N    int
	Text string
}

// countStates sums locs up by state in words, the states in a fixed order
// and only those with a location; the counts add up to len(locs). A
// location whose key is missing counts as that, whatever its status: it
// can be neither refreshed nor synced.
func countStates(locs []LocationStatus) []StatusCount {
	type state struct{ one, many string }
	order := []string{"active", "key", string(store.StatusNeedsReauth), string(store.StatusMissingScope), string(store.StatusUninstalled), string(store.StatusInactive)}
	words := map[string]state{
		"active":                         {"active", "active"},
		"key":                            {"missing its encryption key", "missing their encryption key"},
		string(store.StatusNeedsReauth):  {"needs reconnecting", "need reconnecting"},
		string(store.StatusMissingScope): {"missing a scope", "missing a scope"},
		string(store.StatusUninstalled):  {"uninstalled", "uninstalled"},
		string(store.StatusInactive):     {"inactive in GHL", "inactive in GHL"},
	}
	n := map[string]int{}
	for _, l := range locs {
		k := string(l.Status)
		if l.KeyMissing {
			k = "key"
		}
		if _, known := words[k]; !known {
			order = append(order, k)
			words[k] = state{k, k}
		}
		n[k]++
	}
	var out []StatusCount
	for _, k := range order {
		if n[k] == 0 {
			continue
		}
		w := words[k].many
		if n[k] == 1 {
			w = words[k].one
		}
		out = append(out, StatusCount{N: n[k], Text: fmt.Sprintf("%d %s", n[k], w)})
		n[k] = 0 // an unknown status appended twice counts once
	}
	return out
}

// summary is the overview's first line: "3 locations: 2 active, 1 needs
// reconnecting", agencies counted apart.
func summary(locs []LocationStatus) string {
	if len(locs) == 0 {
		return "No location is connected yet."
	}
	agencies := 0
	for _, l := range locs {
		if l.Agency() {
			agencies++
		}
	}
	var what []string
	if n := len(locs) - agencies; n > 0 {
		what = append(what, plural(n, "location", "locations"))
	}
	if agencies > 0 {
		what = append(what, plural(agencies, "agency", "agencies"))
	}
	var states []string
	for _, c := range countStates(locs) {
		states = append(states, c.Text)
	}
	return strings.Join(what, " and ") + ": " + strings.Join(states, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (s *Status) json(w http.ResponseWriter, r *http.Request) {
	locs, err := s.Locations(r.Context())
	if err != nil {
		s.log().Error("status: reading locations", "err", err)
		http.Error(w, "cannot read the locations now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Summary   string           `json:"summary"`
		Locations []LocationStatus `json:"locations"`
	}{summary(locs), locs})
}

func (s *Status) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
