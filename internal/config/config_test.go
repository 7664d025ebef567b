package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := NewLoader(fs, func(k string) string { return env[k] }, ":9091")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	l.Require(VarClientID)
	return l.Load()
}

func TestDefaultsAndOverrides(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{VarClientID: "id", VarRefreshWindow: "2h"}, "--refresh-window", "30m")
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "sqlite://ghlsync.db" || c.RedisURL != "redis://127.0.0.1:6379/0" || c.MetricsAddr != ":9091" ||
		c.GHLAPIURL != "https://services.leadconnectorhq.com" || len(c.GHLScopes) != len(DefaultScopes) {
		t.Errorf("defaults: %+v", c)
	}
	if c.RefreshWindow != 30*time.Minute {
		t.Errorf("REFRESH_WINDOW = %s: the flag must override the environment", c.RefreshWindow)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{}, VarClientID},
		{map[string]string{VarClientID: "id", VarDatabaseURL: "mysql://x"}, VarDatabaseURL},
		{map[string]string{VarClientID: "id", VarDatabaseURL: "sqlite://"}, VarDatabaseURL},
		{map[string]string{VarClientID: "id", VarRedisURL: "http://x"}, VarRedisURL},
		{map[string]string{VarClientID: "id", VarRefreshWindow: "0s"}, VarRefreshWindow},
		{map[string]string{VarClientID: "id", VarEncryptionKey: "c2hvcnQ="}, VarEncryptionKey},
		{map[string]string{VarClientID: "id", VarOldKeys: "nope"}, VarOldKeys},
		{map[string]string{VarClientID: "id", VarAPIURL: "ftp://x"}, VarAPIURL},
		{map[string]string{VarClientID: "id", VarLogLevel: "loud"}, VarLogLevel},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "ghlsync.example.com"}, VarWebPublicURL},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "https://ghlsync.example.com/admin"}, VarWebPublicURL},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "https://ops:pw@ghlsync.example.com"}, VarWebPublicURL},
	} {
		_, err := load(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: error %v, want one line naming %s", tc.env, err, tc.wantVar)
		}
	}
}

func TestStringMasksSecrets(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	rand.Read(key)
	c, err := load(t, map[string]string{
		VarClientID: "id", VarClientSecret: "the-client-secret", VarEncryptionKey: base64.StdEncoding.EncodeToString(key),
		VarAdminPassword: "the-admin-password", VarDatabaseURL: "postgres://u:the-db-password@db/ghlsync",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"the-client-secret", "the-admin-password", "the-db-password", c.EncryptionKey} {
		if strings.Contains(s, secret) {
			t.Errorf("Config.String() shows a secret: %s", s)
		}
	}
}

// WEB_PUBLIC_URL is kept as an origin; unset, it is GHL_REDIRECT_URI's.
func TestWebPublicURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "http://localhost:8080"},
		{map[string]string{VarRedirectURI: "https://Sync.Example.com:443/api/auth/callback"}, "https://sync.example.com"},
		{map[string]string{VarRedirectURI: "https://a.example/api/auth/callback", VarWebPublicURL: "https://admin.example:8443/"}, "https://admin.example:8443"},
		{map[string]string{VarWebPublicURL: "http://[::1]:8080"}, "http://[::1]:8080"},
	} {
		tc.env[VarClientID] = "id"
		c, err := load(t, tc.env)
		if err != nil {
			t.Fatalf("env %v: %v", tc.env, err)
		}
		if c.WebPublicURL != tc.want {
			t.Errorf("env %v: WebPublicURL %q, want %q", tc.env, c.WebPublicURL, tc.want)
		}
	}
}
