package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/embedredis"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
)

// Client credentials of the fake GHL app in tests.
const (
	ClientID     = "test-client-id"
	ClientSecret = "test-client-secret-3f9a"
)

// Stack is what a ghlsync process needs, for one test: a database, a Redis,
// a fake GHL and a token key, plus a store on that database.
type Stack struct {
	Fake        *ghltest.Server
	Store       *store.Store
	DatabaseURL string
	RedisURL    string
	Key         string
}

// NewStack builds a Stack; opts configures the fake (its client credentials
// are always ClientID and ClientSecret).
func NewStack(t testing.TB, opts ghltest.Options) *Stack {
	t.Helper()
	return NewStackOn(t, opts, testenv.RedisURL)
}

// NewStackOn is NewStack on the Redis that redisURL gives the test, such
// as a cluster (testenv.RedisCluster).
func NewStackOn(t testing.TB, opts ghltest.Options, redisURL func(testing.TB) string) *Stack {
	t.Helper()
	opts.ClientID, opts.ClientSecret = ClientID, ClientSecret
	fake := ghltest.NewServer(opts)
	t.Cleanup(fake.Close)
	key := testenv.NewKey(t)
	st, dbURL := Open(t, key)
	return &Stack{Fake: fake, Store: st, DatabaseURL: dbURL, RedisURL: redisURL(t), Key: key}
}

// Env returns the environment of a ghlsync process on the stack, with
// extra KEY=VALUE pairs appended.
func (s *Stack) Env(extra ...string) map[string]string {
	env := map[string]string{
		"DATABASE_URL":         s.DatabaseURL,
		"REDIS_URL":            s.RedisURL,
		"GHL_API_URL":          s.Fake.URL,
		"GHL_MARKETPLACE_URL":  s.Fake.URL,
		"GHL_CLIENT_ID":        ClientID,
		"GHL_CLIENT_SECRET":    ClientSecret,
		"TOKEN_ENCRYPTION_KEY": s.Key,
		"METRICS_ADDR":         "127.0.0.1:0",
		"WEB_ADDR":             "127.0.0.1:0",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// Connect makes loc a connected location of the fake GHL whose stored
// token expires at exp.
func (s *Stack) Connect(t testing.TB, loc string, exp time.Time) {
	t.Helper()
	s.Fake.AddLocation(loc, "comp1")
	access, refresh, _ := s.Fake.IssueToken(loc)
	err := s.Store.Connect(context.Background(), store.Connection{
		LocationID: loc, CompanyID: "comp1", UserType: store.UserTypeLocation,
		Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// StoredTokens returns the decrypted tokens the database holds for loc.
func (s *Stack) StoredTokens(t testing.TB, loc string) (store.Tokens, *store.Credential) {
	t.Helper()
	c, err := s.Store.Credential(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := s.Store.Tokens(c)
	if err != nil {
		t.Fatal(err)
	}
	return toks, c
}

// HoldsCurrent reports whether the database holds GHL's current refresh
// token and a valid access token for loc, and the location is active.
func (s *Stack) HoldsCurrent(t testing.TB, loc string) bool {
	t.Helper()
	toks, c := s.StoredTokens(t, loc)
	return c.Status == store.StatusActive && toks.RefreshToken == s.Fake.CurrentRefreshToken(loc) && s.Fake.Valid(loc, toks.AccessToken)
}

// Redis returns a client of the stack's Redis, closed at cleanup.
func (s *Stack) Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	return testenv.RedisClientOf(t, s.RedisURL)
}

// SecretEnv is Env for a test of what a process prints: every URL it is
// given carries a password of its own (Redis through an embedded Redis
// that requires it, the database as a password= or sslpassword= parameter
// the driver ignores, the marketplace and redirect URLs as userinfo), and
// so do the admin password, the client secret and the token key. secrets
// names each, for a test to grep the output for. GHL_API_URL stays the
// fake's: ghl.NewClient refuses one with credentials (a test may set one
// for a process that builds no client).
func (s *Stack) SecretEnv(t testing.TB, extra ...string) (env map[string]string, secrets map[string]string) {
	t.Helper()
	secret := func(what string) string {
		b := make([]byte, 6)
		rand.Read(b)
		return what + "-pw-" + hex.EncodeToString(b)
	}
	secrets = map[string]string{
		"redis password":       secret("redis"),
		"database password":    secret("database"),
		"marketplace password": secret("marketplace"),
		"redirect password":    secret("redirect"),
		"admin password":       secret("admin"),
		"client secret":        ClientSecret,
		"token key":            s.Key,
	}
	srv, err := embedredis.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.RequireAuth(secrets["redis password"])
	dbURL, param := s.DatabaseURL, "password"
	if !strings.HasPrefix(dbURL, "sqlite://") {
		// PostgreSQL's password= would replace the real one; sslpassword
		// is read only with an sslkey.
		param = "sslpassword"
	}
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	fake, err := url.Parse(s.Fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	env = s.Env(append([]string{
		"LOG_LEVEL", "debug",
		"REDIS_URL", "redis://:" + secrets["redis password"] + "@" + srv.Addr() + "/0",
		"DATABASE_URL", dbURL + sep + param + "=" + secrets["database password"],
		"GHL_MARKETPLACE_URL", "http://market:" + secrets["marketplace password"] + "@" + fake.Host,
		"GHL_REDIRECT_URI", "http://app:" + secrets["redirect password"] + "@localhost:8080/api/auth/callback",
		"WEB_ADMIN_USER", "admin",
		"WEB_ADMIN_PASSWORD", secrets["admin password"],
	}, extra...)...)
	return env, secrets
}

// RequireNoSecret fails t for every secret (see SecretEnv) that appears in
// one of outputs, named by where they come from.
func RequireNoSecret(t testing.TB, secrets map[string]string, outputs map[string]string) {
	t.Helper()
	for where, out := range outputs {
		for what, secret := range secrets {
			if secret == "" {
				t.Fatalf("the %s is empty", what)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the %s appears in the %s:\n%s", what, where, out)
			}
		}
	}
}
