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
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/internal/tokencrypt"
)

// DefaultScopes are the OAuth scopes ghlsync asks for: contacts, calendars,
// calendar events, locations (and their custom fields, where the patient
// id field lives) and oauth, read and write.
var DefaultScopes = []string{
	"contacts.readonly", "contacts.write",
	"calendars.readonly", "calendars.write",
	"calendars/events.readonly", "calendars/events.write",
	"locations.readonly",
	"locations/customFields.readonly", "locations/customFields.write",
	"oauth.readonly", "oauth.write",
}

// Config is the whole configuration of every ghlsync process.
type Config struct {
	DatabaseURL      string
	RedisURL         string
	GHLClientID      string
	GHLClientSecret  string
	GHLRedirectURI   string
	GHLScopes        []string
	GHLAPIURL        string
	GHLMarketplace   string
	EncryptionKey    string   // base64 of 32 bytes
	EncryptionOldKey []string // base64 of 32 bytes each; decrypt only
	RefreshWindow    time.Duration
	WebAddr          string
	MetricsAddr      string
	AdminUser        string
	AdminPassword    string
	LogLevel         slog.Level
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
		slog.Duration("refresh_window", c.RefreshWindow),
		slog.String("web_addr", c.WebAddr),
		slog.String("web_public_url", c.WebPublicURL),
		slog.String("metrics_addr", c.MetricsAddr),
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
}

// Loader binds the configuration variables to a FlagSet, so that a flag of
// the same meaning overrides the environment.
type Loader struct {
	getenv func(string) string
	vars   []*variable
	raw    map[string]*string
	// needs holds the variables without a default that this process requires.
	needs map[string]bool
}

// Variable names.
const (
	VarDatabaseURL    = "DATABASE_URL"
	VarRedisURL       = "REDIS_URL"
	VarClientID       = "GHL_CLIENT_ID"
	VarClientSecret   = "GHL_CLIENT_SECRET"
	VarRedirectURI    = "GHL_REDIRECT_URI"
	VarScopes         = "GHL_SCOPES"
	VarAPIURL         = "GHL_API_URL"
	VarMarketplaceURL = "GHL_MARKETPLACE_URL"
	VarEncryptionKey  = "TOKEN_ENCRYPTION_KEY"
	VarOldKeys        = "TOKEN_ENCRYPTION_OLD_KEYS"
	VarRefreshWindow  = "REFRESH_WINDOW"
	VarWebAddr        = "WEB_ADDR"
	VarWebPublicURL   = "WEB_PUBLIC_URL"
	VarMetricsAddr    = "METRICS_ADDR"
	VarAdminUser      = "WEB_ADMIN_USER"
	VarAdminPassword  = "WEB_ADMIN_PASSWORD"
	VarLogLevel       = "LOG_LEVEL"
	VarWebhookKey     = "GHL_WEBHOOK_PUBLIC_KEY"
	VarWebhookRSAKey  = "GHL_WEBHOOK_RSA_PUBLIC_KEY"
)

// NewLoader registers the configuration flags on fs. metricsAddr is the
// default of METRICS_ADDR for this process. getenv is os.Getenv outside tests.
func NewLoader(fs *flag.FlagSet, getenv func(string) string, metricsAddr string) *Loader {
	if getenv == nil {
		getenv = os.Getenv
	}
	l := &Loader{getenv: getenv, raw: map[string]*string{}, needs: map[string]bool{}}
	add := func(env, def, usage string) {
		v := &variable{env: env, flag: strings.ToLower(strings.ReplaceAll(env, "_", "-")), def: def, usage: usage, dst: new(string)}
		l.vars = append(l.vars, v)
		l.raw[env] = v.dst
		fs.StringVar(v.dst, v.flag, "", usage+" (env "+env+")")
	}
	add(VarDatabaseURL, "sqlite://ghlsync.db", "postgres://… or sqlite://PATH")
	add(VarRedisURL, "redis://127.0.0.1:6379/0", "redis://, rediss:// or redis-sentinel:// URL")
	add(VarClientID, "", "GHL marketplace app client id")
	add(VarClientSecret, "", "GHL marketplace app client secret")
	add(VarRedirectURI, "http://localhost:8080/api/auth/callback", "OAuth redirect URI registered with the app")
	add(VarScopes, strings.Join(DefaultScopes, " "), "space separated OAuth scopes")
	add(VarAPIURL, "https://services.leadconnectorhq.com", "GHL API base URL")
	add(VarMarketplaceURL, "https://marketplace.gohighlevel.com", "GHL marketplace URL (consent page)")
	add(VarEncryptionKey, "", "base64 of 32 bytes: encrypts tokens at rest")
	add(VarOldKeys, "", "comma separated base64 keys that still decrypt")
	add(VarRefreshWindow, "4h", "refresh a token that expires within this window")
	add(VarWebAddr, ":8080", "web listen address")
	add(VarWebPublicURL, "", "origin the web process is reached at, such as https://ghlsync.example.com (default: GHL_REDIRECT_URI's)")
	add(VarMetricsAddr, metricsAddr, "/metrics and /healthz listen address")
	add(VarAdminUser, "", "basic auth user of the status page and asynqmon")
	add(VarAdminPassword, "", "basic auth password of the status page and asynqmon")
	add(VarLogLevel, "info", "debug, info, warn or error")
	add(VarWebhookKey, "", "GHL's Ed25519 webhook public key: PEM, or base64 of the DER or of the 32 raw bytes")
	add(VarWebhookRSAKey, "", "GHL's legacy RSA webhook public key (PEM or base64 DER): also accept x-wh-signature")
	return l
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
	}
}

func (l *Loader) value(env string) string {
	if p := l.raw[env]; p != nil && *p != "" {
		return *p
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

// Load validates and returns the configuration. Call it after fs.Parse.
func (l *Loader) Load() (*Config, error) {
	c := &Config{
		DatabaseURL:     l.value(VarDatabaseURL),
		RedisURL:        l.value(VarRedisURL),
		GHLClientID:     l.value(VarClientID),
		GHLClientSecret: l.value(VarClientSecret),
		GHLRedirectURI:  l.value(VarRedirectURI),
		GHLScopes:       strings.Fields(l.value(VarScopes)),
		GHLAPIURL:       strings.TrimRight(l.value(VarAPIURL), "/"),
		GHLMarketplace:  strings.TrimRight(l.value(VarMarketplaceURL), "/"),
		EncryptionKey:   l.value(VarEncryptionKey),
		WebAddr:         l.value(VarWebAddr),
		MetricsAddr:     l.value(VarMetricsAddr),
		AdminUser:       l.value(VarAdminUser),
		AdminPassword:   l.value(VarAdminPassword),
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
	if err := checkURL(VarRedisURL, c.RedisURL, "redis", "rediss", "redis-sentinel"); err != nil {
		return nil, err
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
	for _, a := range []struct{ env, v string }{{VarWebAddr, c.WebAddr}, {VarMetricsAddr, c.MetricsAddr}} {
		if err := checkAddr(a.env, a.v); err != nil {
			return nil, err
		}
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
	if err := c.LogLevel.UnmarshalText([]byte(l.value(VarLogLevel))); err != nil {
		return nil, &Error{VarLogLevel, fmt.Sprintf("%q is not one of debug, info, warn, error", l.value(VarLogLevel))}
	}
	return c, nil
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
func EnsureKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	s := base64.StdEncoding.EncodeToString(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return s, f.Close()
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
