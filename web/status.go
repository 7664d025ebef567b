package web

import (
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// StatusSource is what the status page reads; *store.Store is one.
type StatusSource interface {
	Credentials(ctx context.Context) ([]store.Credential, error)
	SyncRuns(ctx context.Context, loc, kind string, limit int) ([]store.SyncRun, error)
}

// Keys tells which encryption keys the process holds; *tokencrypt.Cipher
// is one.
type Keys interface {
	HasKey(id string) bool
}

// Status serves the status page at / and the same as JSON at
// /api/locations. Keys, when set, marks the locations whose tokens are
// sealed with a key the process does not have: they can be neither
// refreshed nor synced until the key is given back, whatever their status.
type Status struct {
	Source StatusSource
	Keys   Keys
	Log    *slog.Logger
	Clock  clock.Clock
	// PausedQueues, when set, lists the task queues that are paused
	// (asynqmon's pause button): nothing in them runs, so the page says so.
	PausedQueues func(context.Context) ([]string, error)
}

// LocationStatus is one connected location (or agency) as the status page
// shows it. It carries no token. KeyMissing: its tokens are sealed with an
// encryption key that is not configured; KeyProblem says what to do.
type LocationStatus struct {
	LocationID       string                 `json:"location_id"`
	CompanyID        string                 `json:"company_id,omitempty"`
	UserType         string                 `json:"user_type"`
	Status           store.Status           `json:"status"`
	ExpiresAt        time.Time              `json:"expires_at"`
	ExpiresInSeconds int64                  `json:"expires_in_seconds"`
	LastRefreshAt    *time.Time             `json:"last_refresh_at"`
	LastError        string                 `json:"last_error,omitempty"`
	KeyMissing       bool                   `json:"key_missing,omitempty"`
	KeyProblem       string                 `json:"key_problem,omitempty"`
	ReconnectURL     string                 `json:"reconnect_url,omitempty"`
	Syncs            map[string]*SyncStatus `json:"syncs"`
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

// Handler returns the routes of the status page.
func (s *Status) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/locations", s.json)
	return mux
}

// Locations reads the status of every location.
func (s *Status) Locations(ctx context.Context) ([]LocationStatus, error) {
	creds, err := s.Source.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	now := clock.Or(s.Clock).Now()
	out := make([]LocationStatus, 0, len(creds))
	for _, c := range creds {
		ls := LocationStatus{
			LocationID:       c.LocationID,
			CompanyID:        c.CompanyID,
			UserType:         c.UserType,
			Status:           c.Status,
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
		if c.UserType != store.UserTypeCompany {
			for _, kind := range syncer.Kinds {
				runs, err := s.Source.SyncRuns(ctx, c.LocationID, kind, 1)
				if err != nil {
					return nil, err
				}
				if len(runs) == 1 {
					r := runs[0]
					ls.Syncs[kind] = &SyncStatus{StartedAt: r.StartedAt.UTC(), FinishedAt: r.FinishedAt, Outcome: r.Outcome,
						Scanned: r.Scanned, Created: r.Created, Updated: r.Updated, Unchanged: r.Unchanged, Failed: r.Failed, Error: r.Error}
				}
			}
		}
		out = append(out, ls)
	}
	return out, nil
}

func (s *Status) json(w http.ResponseWriter, r *http.Request) {
	locs, err := s.Locations(r.Context())
	if err != nil {
		s.Log.Error("status: reading locations", "err", err)
		http.Error(w, "cannot read the locations now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Locations []LocationStatus `json:"locations"`
	}{locs})
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(now time.Time, t *time.Time) string {
		if t == nil {
			return "never"
		}
		return now.Sub(*t).Round(time.Second).String() + " ago"
	},
	"since": func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" },
	"in": func(secs int64) string {
		if secs < 0 {
			return "expired " + (time.Duration(-secs) * time.Second).String() + " ago"
		}
		return "in " + (time.Duration(secs) * time.Second).String()
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>ghlsync status</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}
.active{color:#1a7f37}.needs_reauth,.uninstalled,.missing_scope,.key_missing,.failed,.paused{color:#cf222e;font-weight:bold}.inactive{color:#9a6700}
small{color:#666}
</style></head><body>
<h1>ghlsync</h1>
{{range .Paused}}<p class="paused">Queue {{.}} is paused: none of its tasks run until it is resumed in <a href="/monitoring">asynqmon</a>.</p>
{{end}}<p>{{len .Locations}} connected · <a href="/monitoring">queues (asynqmon)</a> · <a href="/api/locations">JSON</a> · <a href="/api/auth/connect">connect a location</a></p>
<table>
<tr><th>Location</th><th>Status</th><th>Token expires</th><th>Last refresh</th>{{range .Kinds}}<th>Last {{.}} sync</th>{{end}}</tr>
{{range $l := .Locations}}<tr>
<td>{{$l.LocationID}}{{if eq $l.UserType "Company"}} <small>(agency)</small>{{end}}</td>
<td class="{{$l.Status}}">{{$l.Status}}{{with $l.ReconnectURL}} · <a href="{{.}}">Reconnect</a>{{end}}{{if $l.KeyMissing}} · <span class="key_missing">key missing</span><br><small>{{$l.KeyProblem}}</small>{{end}}{{with $l.LastError}}<br><small>{{.}}</small>{{end}}</td>
<td>{{in $l.ExpiresInSeconds}}</td>
<td>{{ago $.Now $l.LastRefreshAt}}</td>
{{range $k := $.Kinds}}<td>{{with index $l.Syncs $k}}<span{{if .Error}} class="failed"{{end}}>{{.Outcome}}</span>, {{if .FinishedAt}}finished {{ago $.Now .FinishedAt}}{{else}}started {{since $.Now .StartedAt}}{{end}}<br><small>{{.Scanned}} scanned, {{.Created}} created, {{.Updated}} updated, {{.Unchanged}} unchanged, {{.Failed}} failed</small>{{with .Error}}<br><small>{{.}}</small>{{end}}{{else}}{{if ne $l.UserType "Company"}}never{{end}}{{end}}</td>{{end}}
</tr>{{end}}
</table>
</body></html>
`))

func (s *Status) page(w http.ResponseWriter, r *http.Request) {
	locs, err := s.Locations(r.Context())
	if err != nil {
		s.Log.Error("status: reading locations", "err", err)
		http.Error(w, "cannot read the locations now", http.StatusServiceUnavailable)
		return
	}
	var paused []string
	if s.PausedQueues != nil {
		if paused, err = s.PausedQueues(r.Context()); err != nil {
			s.Log.Warn("status: reading the queues", "err", err)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusPage.Execute(w, struct {
		Locations []LocationStatus
		Kinds     []string
		Now       time.Time
		Paused    []string
	}{locs, syncer.Kinds, clock.Or(s.Clock).Now(), paused}); err != nil {
		s.Log.Warn("status: rendering", "err", err)
	}
}
