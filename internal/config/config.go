// Package config reads ghlsync's configuration from the environment, with
// command-line flags of the same meaning taking precedence.
//
// A bad or missing value is reported as one line that names the variable and
// says what is wrong; the binaries print it and exit with status 2.
package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
)

// DefaultScopes are the OAuth scopes ghlsync asks for, only those its calls
// need (GHL fails an install that asks for a scope the app is not
// configured with): contacts (upsert, create, update, search, tags, a
// contact's appointments), calendars (list, a calendar's team), calendar
// events (create, update, delete, look up), the location (name, time
// zone), its custom fields (the clinic's id kept on a contact) and its
// users (practitioners). An agency install also asks for
// oauth.readonly and oauth.write (web.AgencyScopes), which GHL grants
// agency tokens only.
var DefaultScopes = []string{
	"contacts.readonly", "contacts.write",
	"calendars.readonly",
	"calendars/events.readonly", "calendars/events.write",
	"locations.readonly",
	"locations/customFields.readonly", "locations/customFields.write",
	"users.readonly",
}

// Config is the whole configuration of every ghlsync process.
type Config struct {
	DatabaseURL     string
	RedisURL        string
	GHLClientID     string
	GHLClientSecret string
	GHLRedirectURI  string
	GHLScopes       []string
	GHLAPIURL       string
	GHLMarketplace  string
	// GHLAppUserType is the user type of the app's installs that GHL
	// initiates (no state): UserTypeLocation or UserTypeCompany.
	GHLAppUserType string
	// GHLAppVersionID is sent as version_id on the consent page ("" none).
	GHLAppVersionID string
	// GHLLoginWindowOpenMode is sent as loginWindowOpenMode ("" none, or
	// "self").
	GHLLoginWindowOpenMode string
	EncryptionKey          string   // base64 of 32 bytes
	EncryptionOldKey       []string // base64 of 32 bytes each; decrypt only
	RefreshWindow          time.Duration
	WebAddr                string
	MetricsAddr            string
	AdminUser              string
	AdminPassword          string
	LogLevel               slog.Level
	// WebhookKey verifies GHL's x-ghl-signature; nil when not configured.
	WebhookKey ed25519.PublicKey
	// WebhookRSAKey verifies the legacy x-wh-signature; nil when not
	// configured.
	WebhookRSAKey *rsa.PublicKey
	// WebPublicURL is the origin browsers reach the web process at, such
	// as https://ghlsync.example.com: the admin pages answer only to this
	// Host (and loopback names), and a state-changing request must come
	// from it. Load fills in GHL_REDIRECT_URI's origin when it is unset.
	WebPublicURL string
	// WorkerShutdownTimeout is how long a stopping worker lets its running
	// tasks finish before asynq puts them back in the queue. A supervisor
	// must allow the worker more than this before it kills it (Kubernetes:
	// terminationGracePeriodSeconds).
	WorkerShutdownTimeout time.Duration
	// SyncOverlap is how far before its watermark an incremental sync
	// pass starts to read (syncer.Engine.Overlap).
	SyncOverlap time.Duration
	// AlertWebhookURLs receive alerts as JSON, AlertSlackURLs as Slack
	// messages. Both are credentials (a Slack webhook URL is one): never
	// log or print them.
	AlertWebhookURLs []string
	AlertSlackURLs   []string
	// AlertSyncFailures is how many sync runs in a row must fail for an
	// alert.
	AlertSyncFailures int
	// ViewerUser and ViewerPassword log in the viewer role: every page,
	// no change. ViewerPassword needs AdminPassword, and differs from it.
	ViewerUser, ViewerPassword string
	// MetricsUser and MetricsPassword, when MetricsPassword is set, are
	// the basic auth of every /metrics, for Prometheus' basic_auth.
	MetricsUser, MetricsPassword string
}

// LogValue keeps secrets out of logs when a Config is logged whole: every
// URL is redacted (see Redact), and no secret is listed.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database", Redact(c.DatabaseURL)),
		slog.String("redis", Redact(c.RedisURL)),
		slog.String("ghl_api_url", Redact(c.GHLAPIURL)),
		slog.String("ghl_marketplace_url", Redact(c.GHLMarketplace)),
		slog.String("ghl_redirect_uri", Redact(c.GHLRedirectURI)),
		slog.String("ghl_client_id", c.GHLClientID),
		slog.String("ghl_app_user_type", c.GHLAppUserType),
		slog.Duration("refresh_window", c.RefreshWindow),
		slog.String("web_addr", c.WebAddr),
		slog.String("web_public_url", c.WebPublicURL),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Duration("worker_shutdown_timeout", c.WorkerShutdownTimeout),
		slog.Duration("sync_overlap", c.SyncOverlap),
		slog.Int("alert_webhooks", len(c.AlertWebhookURLs)),
		slog.Int("alert_slack_webhooks", len(c.AlertSlackURLs)),
	)
}

// String masks every secret.
func (c Config) String() string { return c.LogValue().String() }

// Error is a configuration error: one variable and what is wrong with it.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return e.Var + ": " + e.Msg }

type variable struct {
	env, flag, def, usage string
	dst                   *string
	// flagged: the command line has a flag for it (see NewLoader).
	flagged bool
}

// Loader binds the configuration variables to a FlagSet, so that a flag of
// the same meaning overrides the environment.
type Loader struct {
	getenv func(string) string
	vars   []*variable
	raw    map[string]*string
	// needs holds the variables without a default that this process requires.
	needs map[string]bool
	// set holds the variables that Set filled in: the process's own
	// values, not the operator's command line.
	set map[string]bool
	// files holds the values read from NAME_FILE by Load.
	files map[string]string
	// reads holds the variables the command reads; empty: all.
	reads map[string]bool
}

// Variable names.
const (
	VarDatabaseURL           = "DATABASE_URL"
	VarRedisURL              = "REDIS_URL"
	VarClientID              = "GHL_CLIENT_ID"
	VarClientSecret          = "GHL_CLIENT_SECRET"
	VarRedirectURI           = "GHL_REDIRECT_URI"
	VarScopes                = "GHL_SCOPES"
	VarAPIURL                = "GHL_API_URL"
	VarMarketplaceURL        = "GHL_MARKETPLACE_URL"
	VarAppUserType           = "GHL_APP_USER_TYPE"
	VarAppVersionID          = "GHL_APP_VERSION_ID"
	VarLoginWindow           = "GHL_LOGIN_WINDOW_OPEN_MODE"
	VarEncryptionKey         = "TOKEN_ENCRYPTION_KEY"
	VarOldKeys               = "TOKEN_ENCRYPTION_OLD_KEYS"
	VarRefreshWindow         = "REFRESH_WINDOW"
	VarWebAddr               = "WEB_ADDR"
	VarWebPublicURL          = "WEB_PUBLIC_URL"
	VarMetricsAddr           = "METRICS_ADDR"
	VarAdminUser             = "WEB_ADMIN_USER"
	VarAdminPassword         = "WEB_ADMIN_PASSWORD"
	VarViewerUser            = "WEB_VIEWER_USER"
	VarViewerPassword        = "WEB_VIEWER_PASSWORD"
	VarMetricsUser           = "METRICS_USER"
	VarMetricsPass           = "METRICS_PASSWORD"
	VarLogLevel              = "LOG_LEVEL"
	VarWebhookKey            = "GHL_WEBHOOK_PUBLIC_KEY"
	VarWebhookRSAKey         = "GHL_WEBHOOK_RSA_PUBLIC_KEY"
	VarWorkerShutdownTimeout = "WORKER_SHUTDOWN_TIMEOUT"
	VarSyncOverlap           = "SYNC_OVERLAP"
	VarAlertWebhook          = "ALERT_WEBHOOK_URL"
	VarAlertSlack            = "ALERT_SLACK_WEBHOOK_URL"
	VarAlertFailures         = "ALERT_SYNC_FAILURES"
)

// NewLoader binds the configuration to fs. vars names the variables the
// command reads, every one when none is named: each gets a flag of the same
// name in lower case with dashes (DATABASE_URL: --database-url), so that
// -h lists only what the command reads, except those that hold a secret
// (see Secret), which come only from the environment, since any user of
// the machine sees a command line in ps. metricsAddr is the default of
// METRICS_ADDR for this process. getenv is os.Getenv outside tests. A name
// in vars that is no variable panics: the command is wired wrong.
func NewLoader(fs *flag.FlagSet, getenv func(string) string, metricsAddr string, vars ...string) *Loader {
	if getenv == nil {
		getenv = os.Getenv
	}
	l := &Loader{getenv: getenv, raw: map[string]*string{}, needs: map[string]bool{}, set: map[string]bool{}, files: map[string]string{}}
	add := func(env, def, usage string) {
		v := &variable{env: env, flag: strings.ToLower(strings.ReplaceAll(env, "_", "-")), def: def, usage: usage, dst: new(string)}
		l.vars = append(l.vars, v)
		l.raw[env] = v.dst
	}
	add(VarDatabaseURL, "sqlite://ghlsync.db", "postgres://… or sqlite://PATH")
	add(VarRedisURL, "redis://127.0.0.1:6379/0", "redis://, rediss://, redis-sentinel:// or redis-cluster:// URL")
	add(VarClientID, "", "GHL marketplace app client id")
	add(VarClientSecret, "", "GHL marketplace app client secret")
	add(VarRedirectURI, "http://localhost:8080/api/auth/callback", "OAuth redirect URI registered with the app")
	add(VarScopes, strings.Join(DefaultScopes, " "), "space separated OAuth scopes")
	add(VarAPIURL, "https://services.leadconnectorhq.com", "GHL API base URL")
	add(VarMarketplaceURL, "https://marketplace.gohighlevel.com", "GHL marketplace URL (consent page)")
	add(VarAppUserType, UserTypeLocation, "the app's user type, Location or Company: installs GHL starts (no state) are exchanged as it")
	add(VarAppVersionID, "", "the app version's id, sent as version_id on the consent page (needed while the version is a draft)")
	add(VarLoginWindow, "", "loginWindowOpenMode on the consent page: self keeps GHL's login in the same window (default: GHL's, a new tab)")
	add(VarEncryptionKey, "", "base64 of 32 bytes: encrypts tokens at rest")
	add(VarOldKeys, "", "comma separated base64 keys that still decrypt")
	add(VarRefreshWindow, "4h", "refresh a token that expires within this window")
	add(VarWebAddr, ":8080", "web listen address")
	add(VarWebPublicURL, "", "origin the web process is reached at, such as https://ghlsync.example.com (default: GHL_REDIRECT_URI's)")
	add(VarMetricsAddr, metricsAddr, "/metrics and /healthz listen address")
	add(VarAdminUser, "", "basic auth user of the status page and asynqmon")
	add(VarAdminPassword, "", "basic auth password of the status page and asynqmon")
	add(VarViewerUser, "", "basic auth user of the viewer role: sees every page, changes nothing")
	add(VarViewerPassword, "", "basic auth password of the viewer role (needs WEB_ADMIN_PASSWORD)")
	add(VarMetricsUser, "", "basic auth user of /metrics")
	add(VarMetricsPass, "", "basic auth password of /metrics (default: /metrics takes the admin login)")
	add(VarLogLevel, "info", "debug, info, warn or error")
	add(VarWebhookKey, "", "GHL's Ed25519 webhook public key: PEM, or base64 of the DER or of the 32 raw bytes")
	add(VarWebhookRSAKey, "", "GHL's legacy RSA webhook public key (PEM or base64 DER): also accept x-wh-signature")
	add(VarWorkerShutdownTimeout, DefaultWorkerShutdownTimeout.String(), "how long a stopping worker lets its running tasks finish before they go back to the queue")
	add(VarSyncOverlap, DefaultSyncOverlap.String(), "an incremental sync reads the rows changed since its last completed pass less this overlap (longer than a clinic transaction lasts)")
	add(VarAlertWebhook, "", "URLs (comma separated) that receive alerts as JSON")
	add(VarAlertSlack, "", "Slack-compatible incoming webhook URLs (comma separated) that receive alerts")
	add(VarAlertFailures, "3", "sync runs in a row that must fail for an alert")
	l.bind(fs, vars)
	return l
}

// bind registers the flags of the variables named in vars (all when
// none), secrets excepted. The usage names the variable and its default,
// for -h.
func (l *Loader) bind(fs *flag.FlagSet, vars []string) {
	want := map[string]bool{}
	for _, env := range vars {
		if _, ok := l.raw[env]; !ok {
			panic("config.NewLoader: no variable " + env)
		}
		want[env] = true
	}
	for _, v := range l.vars {
		if (len(vars) > 0 && !want[v.env]) || Secret(v.env) {
			continue
		}
		usage := v.usage + " (env " + v.env
		if v.def != "" {
			usage += ", default " + v.def
		}
		fs.StringVar(v.dst, v.flag, "", usage+")")
		v.flagged = true
	}
	l.reads = want
}

// Vars lists every configuration variable ghlsync reads, in the order of
// the README's table. Each may also be given as NAME_FILE, the path of a
// file that holds the value.
func Vars() []string {
	l := NewLoader(flag.NewFlagSet("", flag.ContinueOnError), func(string) string { return "" }, "")
	out := make([]string, len(l.vars))
	for i, v := range l.vars {
		out[i] = v.env
	}
	return out
}

// Secret reports whether the variable env holds a credential: the client
// secret, a token key, a password, a webhook URL whose path is its key
// (Slack's). A secret has no flag (a command line is
// visible to every user of the machine in ps); it comes from the
// environment or from the file NAME_FILE names.
func Secret(env string) bool {
	switch env {
	case VarClientSecret, VarEncryptionKey, VarOldKeys, VarAlertWebhook, VarAlertSlack:
		return true
	}
	// A variable added later whose name says what it holds is a secret
	// without being listed.
	return strings.HasSuffix(env, "_PASSWORD") || strings.HasSuffix(env, "_SECRET")
}

// Secrets lists the secret variables among those the command reads (see
// NewLoader), for its -h: they have no flag to list.
func (l *Loader) Secrets() []string {
	var out []string
	for _, v := range l.vars {
		if Secret(v.env) && (len(l.reads) == 0 || l.reads[v.env]) {
			out = append(out, v.env)
		}
	}
	return out
}

// Require marks variables without a default as required by this process.
func (l *Loader) Require(vars ...string) {
	for _, v := range vars {
		l.needs[v] = true
	}
}

// Set sets a variable as if it came from a flag; the standalone mode uses it
// to fill in what it provides itself.
func (l *Loader) Set(env, value string) {
	if p, ok := l.raw[env]; ok && *p == "" {
		*p = value
		l.set[env] = true
	}
}

// Default replaces the default of a variable, which applies when neither
// its flag nor the environment sets it: the standalone mode listens on
// loopback unless told otherwise.
func (l *Loader) Default(env, value string) {
	for _, v := range l.vars {
		if v.env == env {
			v.def = value
		}
	}
}

func (l *Loader) value(env string) string {
	if p := l.raw[env]; p != nil && *p != "" {
		return *p
	}
	if v, ok := l.files[env]; ok {
		return v
	}
	if v := l.getenv(env); v != "" {
		return v
	}
	for _, v := range l.vars {
		if v.env == env {
			return v.def
		}
	}
	return ""
}

// maxFileValue bounds what NAME_FILE may hold: a PEM key is the largest
// value, a few kilobytes.
const maxFileValue = 64 << 10

// readFiles reads the value of each variable given as NAME_FILE, and
// refuses a flag that carries a credential: it would be in ps.
func (l *Loader) readFiles() error {
	for _, v := range l.vars {
		path := l.getenv(v.env + "_FILE")
		if path == "" {
			continue
		}
		if l.getenv(v.env) != "" {
			return &Error{v.env, "is set and so is " + v.env + "_FILE: set one of them"}
		}
		b, err := readLimited(path)
		if err != nil {
			return &Error{v.env + "_FILE", err.Error()}
		}
		l.files[v.env] = strings.TrimSpace(string(b))
	}
	for _, v := range l.vars {
		if v.flagged && !l.set[v.env] && HasCredential(*v.dst) {
			return &Error{"--" + v.flag, "holds a credential, which every user of the machine sees in ps: set " + v.env + " or " + v.env + "_FILE instead"}
		}
	}
	return nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileValue+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileValue {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a value", path, maxFileValue)
	}
	return b, nil
}

// Load validates and returns the configuration. Call it after fs.Parse.
func (l *Loader) Load() (*Config, error) {
	if err := l.readFiles(); err != nil {
		return nil, err
	}
	c := &Config{
		DatabaseURL:            l.value(VarDatabaseURL),
		RedisURL:               l.value(VarRedisURL),
		GHLClientID:            l.value(VarClientID),
		GHLClientSecret:        l.value(VarClientSecret),
		GHLRedirectURI:         l.value(VarRedirectURI),
		GHLScopes:              strings.Fields(l.value(VarScopes)),
		GHLAPIURL:              strings.TrimRight(l.value(VarAPIURL), "/"),
		GHLMarketplace:         strings.TrimRight(l.value(VarMarketplaceURL), "/"),
		GHLAppUserType:         l.value(VarAppUserType),
		GHLAppVersionID:        strings.TrimSpace(l.value(VarAppVersionID)),
		GHLLoginWindowOpenMode: l.value(VarLoginWindow),
		EncryptionKey:          l.value(VarEncryptionKey),
		WebAddr:                l.value(VarWebAddr),
		MetricsAddr:            l.value(VarMetricsAddr),
		AdminUser:              l.value(VarAdminUser),
		AdminPassword:          l.value(VarAdminPassword),
		ViewerUser:             l.value(VarViewerUser),
		ViewerPassword:         l.value(VarViewerPassword),
		MetricsUser:            l.value(VarMetricsUser),
		MetricsPassword:        l.value(VarMetricsPass),
	}
	for _, k := range strings.Split(l.value(VarOldKeys), ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.EncryptionOldKey = append(c.EncryptionOldKey, k)
		}
	}
	for v := range l.needs {
		if l.value(v) == "" {
			return nil, &Error{v, "is required but not set"}
		}
	}
	if err := checkURL(VarDatabaseURL, c.DatabaseURL, "postgres", "postgresql", "sqlite"); err != nil {
		return nil, err
	}
	if _, err := redisconn.Parse(c.RedisURL); err != nil {
		return nil, &Error{VarRedisURL, err.Error()}
	}
	var err error
	for _, u := range []struct{ env, v string }{{VarRedirectURI, c.GHLRedirectURI}, {VarAPIURL, c.GHLAPIURL}, {VarMarketplaceURL, c.GHLMarketplace}} {
		if err := checkURL(u.env, u.v, "http", "https"); err != nil {
			return nil, err
		}
	}
	if c.WebPublicURL, err = publicOrigin(l.value(VarWebPublicURL), c.GHLRedirectURI); err != nil {
		return nil, err
	}
	if len(c.GHLScopes) == 0 {
		return nil, &Error{VarScopes, "is empty"}
	}
	switch c.GHLAppUserType {
	case UserTypeLocation, UserTypeCompany:
	default:
		return nil, &Error{VarAppUserType, fmt.Sprintf("%q is neither %s nor %s", c.GHLAppUserType, UserTypeLocation, UserTypeCompany)}
	}
	if strings.ContainsAny(c.GHLAppVersionID, " /?&#") {
		return nil, &Error{VarAppVersionID, fmt.Sprintf("%q is not a GHL version id", c.GHLAppVersionID)}
	}
	switch c.GHLLoginWindowOpenMode {
	case "", "self":
	default:
		return nil, &Error{VarLoginWindow, fmt.Sprintf("%q: GHL knows only self (or leave it unset)", c.GHLLoginWindowOpenMode)}
	}
	d, err := time.ParseDuration(l.value(VarRefreshWindow))
	if err != nil || d <= 0 {
		return nil, &Error{VarRefreshWindow, fmt.Sprintf("%q is not a positive duration such as 4h or 30m", l.value(VarRefreshWindow))}
	}
	// Below a minute every scheduled pass would find nothing due until the
	// token had all but expired; at GHL's token life (24 h) or more every
	// token is always due, and each pass spends a refresh for nothing.
	if d < MinRefreshWindow || d >= MaxRefreshWindow {
		return nil, &Error{VarRefreshWindow, fmt.Sprintf("%s is out of range: at least %s and less than GHL's token life of %s (default 4h)",
			d, MinRefreshWindow, MaxRefreshWindow)}
	}
	c.RefreshWindow = d
	if c.WorkerShutdownTimeout, err = time.ParseDuration(l.value(VarWorkerShutdownTimeout)); err != nil || c.WorkerShutdownTimeout < DefaultWorkerShutdownTimeout {
		return nil, &Error{VarWorkerShutdownTimeout, fmt.Sprintf("%q is not a duration of at least %s (a token call may take 20 s, and what GHL answered must then be stored)",
			l.value(VarWorkerShutdownTimeout), DefaultWorkerShutdownTimeout)}
	}
	if c.SyncOverlap, err = time.ParseDuration(l.value(VarSyncOverlap)); err != nil || c.SyncOverlap < time.Minute || c.SyncOverlap > 24*time.Hour {
		return nil, &Error{VarSyncOverlap, fmt.Sprintf("%q is not a duration from 1m to 24h (default %s): it must outlast the clinic system's longest transaction",
			l.value(VarSyncOverlap), DefaultSyncOverlap)}
	}
	for _, a := range []struct{ env, v string }{{VarWebAddr, c.WebAddr}, {VarMetricsAddr, c.MetricsAddr}} {
		if err := checkAddr(a.env, a.v); err != nil {
			return nil, err
		}
	}
	if err := c.checkLogins(); err != nil {
		return nil, err
	}
	if c.EncryptionKey != "" {
		if _, err := tokencrypt.ParseKey(c.EncryptionKey); err != nil {
			return nil, &Error{VarEncryptionKey, err.Error()}
		}
	}
	for i, k := range c.EncryptionOldKey {
		if _, err := tokencrypt.ParseKey(k); err != nil {
			return nil, &Error{VarOldKeys, fmt.Sprintf("key %d: %v", i+1, err)}
		}
	}
	if c.WebhookKey, err = ParseEd25519PublicKey(l.value(VarWebhookKey)); err != nil {
		return nil, &Error{VarWebhookKey, err.Error()}
	}
	if c.WebhookRSAKey, err = ParseRSAPublicKey(l.value(VarWebhookRSAKey)); err != nil {
		return nil, &Error{VarWebhookRSAKey, err.Error()}
	}
	if err := loadAlerts(c, l.value); err != nil {
		return nil, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(l.value(VarLogLevel))); err != nil {
		return nil, &Error{VarLogLevel, fmt.Sprintf("%q is not one of debug, info, warn, error", l.value(VarLogLevel))}
	}
	return c, nil
}

// DefaultWorkerShutdownTimeout is WORKER_SHUTDOWN_TIMEOUT's default and
// least value: longer than a token call may take (refresh.Refresher's
// CallTimeout, 20 s), so that a stopping worker never abandons a refresh
// while GHL may still answer it.
const DefaultWorkerShutdownTimeout = 25 * time.Second

// DefaultSyncOverlap is SYNC_OVERLAP's default.
const DefaultSyncOverlap = 10 * time.Minute

// User types of GHL_APP_USER_TYPE, as GHL spells them.
const (
	UserTypeLocation = "Location"
	UserTypeCompany  = "Company"
)

// checkLogins refuses logins that cannot work as meant: a viewer without
// an admin password (without one, the admin pages answer loopback clients
// only, all of them as the admin), a viewer password that would log in as
// the admin, a user without a password.
func (c *Config) checkLogins() error {
	switch {
	case c.ViewerUser != "" && c.ViewerPassword == "":
		return &Error{VarViewerUser, "is set but " + VarViewerPassword + " is not"}
	case c.ViewerPassword != "" && c.AdminPassword == "":
		return &Error{VarViewerPassword, "needs " + VarAdminPassword + ": without an admin password the admin pages answer only on loopback, and only to the admin"}
	case c.ViewerPassword != "" && c.ViewerPassword == c.AdminPassword:
		return &Error{VarViewerPassword, "is the same as " + VarAdminPassword + ": the viewer would log in as the admin"}
	case c.MetricsUser != "" && c.MetricsPassword == "":
		return &Error{VarMetricsUser, "is set but " + VarMetricsPass + " is not"}
	}
	return nil
}

// Bounds of REFRESH_WINDOW.
const (
	MinRefreshWindow = time.Minute
	MaxRefreshWindow = 24 * time.Hour
)

// checkAddr checks a listen address: host:port, the host optional, the
// port a number (0 for any free one). "" serves nothing.
func checkAddr(env, v string) error {
	if v == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return &Error{env, fmt.Sprintf("%q is not a listen address such as :8080 or 127.0.0.1:8080", v)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return &Error{env, fmt.Sprintf("%q: port %q is not a number from 0 to 65535", v, port)}
	}
	if strings.ContainsAny(host, " /\\\t\n") {
		return &Error{env, fmt.Sprintf("%q: host %q is not a host name or IP address", v, host)}
	}
	return nil
}

func checkURL(env, v string, schemes ...string) error {
	u, err := url.Parse(v)
	if err != nil {
		return &Error{env, "is not a URL"}
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Scheme == "sqlite" && u.Opaque == "" && u.Host == "" && u.Path == "" {
				return &Error{env, "sqlite:// needs a file path, such as sqlite://ghlsync.db"}
			}
			if (u.Scheme == "http" || u.Scheme == "https") && u.Host == "" {
				return &Error{env, "has no host"}
			}
			return nil
		}
	}
	return &Error{env, fmt.Sprintf("scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))}
}

// publicOrigin is WEB_PUBLIC_URL as an origin (scheme://host[:port], the
// port left out when it is the scheme's default), or redirectURI's origin
// when v is empty. A path, query or user would mean a setup ghlsync does
// not serve (it answers at the root of its host), so they are refused.
func publicOrigin(v, redirectURI string) (string, error) {
	env := VarWebPublicURL
	if v == "" {
		env, v = VarRedirectURI, redirectURI
	} else {
		if err := checkURL(env, v, "http", "https"); err != nil {
			return "", err
		}
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", &Error{env, "is not a URL"}
	}
	if env == VarWebPublicURL && (u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "") {
		return "", &Error{env, "must be an origin only, such as https://ghlsync.example.com (no path, query or user)"}
	}
	return Origin(u), nil
}

// Origin is u's origin as WEB_PUBLIC_URL is kept: scheme://host[:port] in
// lower case, without the scheme's default port.
func Origin(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return strings.ToLower(u.Scheme) + "://" + host
}

// Cipher builds the token cipher from TOKEN_ENCRYPTION_KEY and the old keys.
func (c *Config) Cipher() (*tokencrypt.Cipher, error) {
	if c.EncryptionKey == "" {
		return nil, &Error{VarEncryptionKey, "is required but not set (generate one with: openssl rand -base64 32)"}
	}
	return tokencrypt.New(c.EncryptionKey, c.EncryptionOldKey...)
}

// EnsureKeyFile reads the encryption key from path, creating it with a new
// random key (mode 0600) when it does not exist. The standalone mode keeps
// its key beside its SQLite file this way.
//
// The key appears whole or not at all: it is written and synced under a
// temporary name, then linked to path, which fails if another process
// made the key meanwhile (its key is read then; see below for a file
// system without links). A process killed half
// way leaves no empty or cut key file, which would stop every later start
// and lose the tokens sealed with the key it was writing.
func EnsureKeyFile(path string) (string, error) {
	if key, err := readKeyFile(path); !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	s := base64.StdEncoding.EncodeToString(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(s + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	switch err := os.Link(f.Name(), path); {
	case errors.Is(err, os.ErrExist):
		return readKeyFile(path)
	case err != nil:
		// A file system without hard links: a rename is as atomic, but
		// would replace a key another process made this instant (two
		// first starts in one directory, of which one fails on the
		// embedded Redis's address anyway).
		if err := os.Rename(f.Name(), path); err != nil {
			return "", err
		}
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // where a directory cannot be synced, the link alone stands
		d.Close()
	}
	return s, nil
}

// readKeyFile reads a key file; an empty one is an error that names it,
// not a key.
func readKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("the key file %s is empty: restore it from a backup, or remove it to start over (the tokens it sealed are then lost)", path)
	}
	return key, nil
}

// SQLitePath returns the file path of a sqlite:// DATABASE_URL, or "".
func SQLitePath(databaseURL string) string {
	rest, ok := strings.CutPrefix(databaseURL, "sqlite://")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
