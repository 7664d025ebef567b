package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
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
	opts.ClientID, opts.ClientSecret = ClientID, ClientSecret
	fake := ghltest.NewServer(opts)
	t.Cleanup(fake.Close)
	key := testenv.NewKey(t)
	st, dbURL := Open(t, key)
	return &Stack{Fake: fake, Store: st, DatabaseURL: dbURL, RedisURL: testenv.RedisURL(t), Key: key}
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
	opt, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}
