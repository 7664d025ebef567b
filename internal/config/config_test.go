package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"os"
	"slices"
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
	if c.WorkerShutdownTimeout != DefaultWorkerShutdownTimeout {
		t.Errorf("WORKER_SHUTDOWN_TIMEOUT default = %s, want %s", c.WorkerShutdownTimeout, DefaultWorkerShutdownTimeout)
	}
	c, err = load(t, map[string]string{VarClientID: "id", VarWorkerShutdownTimeout: "35s"})
	if err != nil || c.WorkerShutdownTimeout != 35*time.Second {
		t.Errorf("WORKER_SHUTDOWN_TIMEOUT=35s: %v, %v", c, err)
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
		{map[string]string{VarClientID: "id", VarWorkerShutdownTimeout: "10s"}, VarWorkerShutdownTimeout},
		{map[string]string{VarClientID: "id", VarWorkerShutdownTimeout: "soon"}, VarWorkerShutdownTimeout},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "ghlsync.example.com"}, VarWebPublicURL},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "https://ghlsync.example.com/admin"}, VarWebPublicURL},
		{map[string]string{VarClientID: "id", VarWebPublicURL: "https://ops:pw@ghlsync.example.com"}, VarWebPublicURL},
		{map[string]string{VarClientID: "id", VarAppUserType: "Agency"}, VarAppUserType},
		{map[string]string{VarClientID: "id", VarAppVersionID: "abc&scope=x"}, VarAppVersionID},
		{map[string]string{VarClientID: "id", VarLoginWindow: "popup"}, VarLoginWindow},
	} {
		_, err := load(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: error %v, want one line naming %s", tc.env, err, tc.wantVar)
		}
	}
}

// The app's user type is Location unless set; the version id and the login
// window mode are sent only when set.
func TestAppSettings(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{VarClientID: "id"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GHLAppUserType != UserTypeLocation || c.GHLAppVersionID != "" || c.GHLLoginWindowOpenMode != "" {
		t.Errorf("defaults: user type %q, version %q, window %q", c.GHLAppUserType, c.GHLAppVersionID, c.GHLLoginWindowOpenMode)
	}
	if slices.Contains(c.GHLScopes, "oauth.write") || slices.Contains(c.GHLScopes, "calendars.write") {
		t.Errorf("default scopes %v ask for what a location's sync does not use", c.GHLScopes)
	}
	c, err = load(t, map[string]string{VarClientID: "id", VarAppUserType: "Company", VarAppVersionID: "66f0a1b2c3d4e5f6a7b8c9d0", VarLoginWindow: "self"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GHLAppUserType != UserTypeCompany || c.GHLAppVersionID != "66f0a1b2c3d4e5f6a7b8c9d0" || c.GHLLoginWindowOpenMode != "self" {
		t.Errorf("set: %+v", c)
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

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, secret, keep string }{
		{"postgres://ghl:pg-secret-1@db:5432/ghlsync?sslmode=require", "pg-secret-1", "postgres://ghl:xxxxx@db:5432/ghlsync?sslmode=require"},
		{"postgres://ghl@db/ghlsync?password=pg-secret-2&sslmode=disable", "pg-secret-2", "password=xxxxx&sslmode=disable"},
		{"postgres://db/ghlsync?sslpassword=pg-secret-3&sslkey=/k.pem", "pg-secret-3", "sslkey=/k.pem"},
		{"postgresql://db/x?PassWord=pg-secret-4", "pg-secret-4", "postgresql://db/x"},
		{"host=db user=ghl password=pg-secret-5 dbname=x", "pg-secret-5", "host=db user=ghl password=xxxxx dbname=x"},
		{"host=db password='pg secret 6' dbname=x", "pg secret 6", "dbname=x"},
		{"sqlite:///var/lib/ghlsync.db?password=sq-secret-7", "sq-secret-7", "sqlite:///var/lib/ghlsync.db?password=xxxxx"},
		{"redis://:rd-secret-8@cache:6379/0", "rd-secret-8", "redis://:xxxxx@cache:6379/0"},
		{"redis://rd-secret-9@cache:6379/0", "rd-secret-9", "@cache:6379/0"},
		{"rediss://default:rd-secret-10@cache:6380/1", "rd-secret-10", "rediss://default:xxxxx@cache:6380/1"},
		{"redis-sentinel://:rd-secret-11@s1:26379,s2:26379?master=m&password=rd-secret-11b", "rd-secret-11", "master=m"},
		{"redis-sentinel://s1:26379?master=m&sentinel_password=rd-secret-12", "rd-secret-12", "master=m"},
		{"https://user:api-secret-13@ghl.example/x", "api-secret-13", "https://user:xxxxx@ghl.example/x"},
		{"https://ghl.example/?token=api-secret-14&a=1", "api-secret-14", "a=1"},
		{"postgres://u:bad%zz-secret-15@db/x", "secret-15", "postgres://"},
	} {
		got := Redact(tc.in)
		if strings.Contains(got, tc.secret) || !strings.Contains(got, tc.keep) {
			t.Errorf("Redact(%q) = %q; want no %q and %q kept", tc.in, got, tc.secret, tc.keep)
		}
	}
	if got := Redact("https://services.leadconnectorhq.com"); got != "https://services.leadconnectorhq.com" {
		t.Errorf("a URL without credentials changed: %q", got)
	}
	msg := `store.Open: cannot parse "postgres://u:txt-secret-1@db/x": dial redis://:txt-secret-2@c:1/0 failed; password=txt-secret-3`
	if got := RedactText(msg); strings.Contains(got, "txt-secret") || !strings.Contains(got, "store.Open: cannot parse") {
		t.Errorf("RedactText() = %q", got)
	}
}

func TestStringRedactsEveryURL(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{
		VarClientID:       "id",
		VarDatabaseURL:    "postgres://u@db/ghlsync?password=the-db-password",
		VarRedisURL:       "redis://:the-redis-password@cache:6379/0",
		VarAPIURL:         "https://proxy:the-api-password@ghl.example",
		VarMarketplaceURL: "https://m:the-marketplace-password@market.example",
		VarRedirectURI:    "https://r:the-redirect-password@app.example/api/auth/callback",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"the-db-password", "the-redis-password", "the-api-password", "the-marketplace-password", "the-redirect-password"} {
		if strings.Contains(s, secret) {
			t.Errorf("Config.String() shows %s: %s", secret, s)
		}
	}
	if !strings.Contains(s, "ghl.example") || !strings.Contains(s, "cache:6379") {
		t.Errorf("Config.String() hides where it connects: %s", s)
	}
}

func TestRefreshWindowBounds(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{"1ns": false, "59s": false, "1m": true, "4h": true, "23h59m": true, "24h": false, "9999h": false} {
		c, err := load(t, map[string]string{VarClientID: "id", VarRefreshWindow: v})
		var ce *Error
		switch {
		case ok && err != nil:
			t.Errorf("REFRESH_WINDOW=%s refused: %v", v, err)
		case ok && c.RefreshWindow.String() == "":
			t.Errorf("REFRESH_WINDOW=%s not set", v)
		case !ok && (!errors.As(err, &ce) || ce.Var != VarRefreshWindow || !strings.Contains(err.Error(), "at least 1m0s and less than")):
			t.Errorf("REFRESH_WINDOW=%s: %v, want a refusal naming the bounds", v, err)
		}
	}
}

func TestListenAddresses(t *testing.T) {
	t.Parallel()
	for _, env := range []string{VarWebAddr, VarMetricsAddr} {
		for v, ok := range map[string]bool{
			":8080": true, "127.0.0.1:0": true, "[::1]:9091": true, "localhost:9092": true,
			"8080": false, "localhost": false, ":http-alt": false, ":99999": false, "a b:80": false, "::1:80": false,
		} {
			_, err := load(t, map[string]string{VarClientID: "id", env: v})
			var ce *Error
			if ok != (err == nil) || (!ok && (!errors.As(err, &ce) || ce.Var != env)) {
				t.Errorf("%s=%q: %v (want accepted %t, else an error naming %s)", env, v, err, ok, env)
			}
		}
	}
	if c, err := load(t, map[string]string{VarClientID: "id", VarMetricsAddr: ""}); err != nil || c.MetricsAddr != ":9091" {
		t.Errorf("an unset METRICS_ADDR: %v, %+v", err, c)
	}
}

// A command binds flags only for the variables it names, and none for a
// secret: a command line is visible to every user in ps. Secrets lists
// the secret variables it reads instead, and every variable is still read
// from the environment.
func TestFlagsOnlyForTheCommandsVariables(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	l := NewLoader(fs, func(k string) string { return map[string]string{VarRefreshWindow: "2h"}[k] }, "", VarRedisURL, VarClientSecret)
	var flags []string
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	if strings.Join(flags, ",") != "redis-url" {
		t.Errorf("flags %v, want only --redis-url", flags)
	}
	if got := strings.Join(l.Secrets(), ","); got != VarClientSecret {
		t.Errorf("Secrets() = %s", got)
	}
	c, err := l.Load()
	if err != nil || c.RefreshWindow != 2*time.Hour {
		t.Errorf("a variable without a flag is not read from the environment: %v, %+v", err, c)
	}

	all := flag.NewFlagSet("worker", flag.ContinueOnError)
	l = NewLoader(all, func(string) string { return "" }, "")
	for _, v := range Vars() {
		f := all.Lookup(strings.ToLower(strings.ReplaceAll(v, "_", "-")))
		if Secret(v) != (f == nil) {
			t.Errorf("%s: secret %t, flag %v", v, Secret(v), f)
		}
		if f != nil && !strings.Contains(f.Usage, "env "+v) {
			t.Errorf("--%s does not name its variable: %q", f.Name, f.Usage)
		}
	}
	for _, v := range []string{VarClientSecret, VarEncryptionKey, VarOldKeys, VarAdminPassword, VarAlertWebhook, VarAlertSlack, "WEB_VIEWER_PASSWORD", "SOME_SECRET"} {
		if !Secret(v) {
			t.Errorf("%s is not a secret", v)
		}
	}
	if got := strings.Join(l.Secrets(), ","); got != "GHL_CLIENT_SECRET,TOKEN_ENCRYPTION_KEY,TOKEN_ENCRYPTION_OLD_KEYS,WEB_ADMIN_PASSWORD,WEB_VIEWER_PASSWORD,METRICS_PASSWORD,ALERT_WEBHOOK_URL,ALERT_SLACK_WEBHOOK_URL" {
		t.Errorf("Secrets() of every variable = %s", got)
	}
}

// NAME_FILE holds a variable's value (docker and Kubernetes secrets); set
// with NAME too, or unreadable, it is refused naming the variable.
func TestFileVariables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := make([]byte, 32)
	rand.Read(key)
	env := map[string]string{
		VarClientID:                "id",
		VarClientSecret + "_FILE":  write("secret", "the-client-secret\n"),
		VarEncryptionKey + "_FILE": write("key", base64.StdEncoding.EncodeToString(key)+"\n"),
		VarDatabaseURL + "_FILE":   write("db", "postgres://u:pw@db/ghlsync\n"),
	}
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.GHLClientSecret != "the-client-secret" || c.EncryptionKey != base64.StdEncoding.EncodeToString(key) || c.DatabaseURL != "postgres://u:pw@db/ghlsync" {
		t.Errorf("values from files: %q %q %q", c.GHLClientSecret, c.EncryptionKey, c.DatabaseURL)
	}
	for _, tc := range []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{VarClientID: "id", VarClientSecret: "x", VarClientSecret + "_FILE": env[VarClientSecret+"_FILE"]}, VarClientSecret},
		{map[string]string{VarClientID: "id", VarClientSecret + "_FILE": dir + "/missing"}, VarClientSecret + "_FILE"},
		{map[string]string{VarClientID: "id", VarWebhookKey + "_FILE": write("big", strings.Repeat("x", 70<<10))}, VarWebhookKey + "_FILE"},
	} {
		_, err := load(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar || strings.Contains(err.Error(), "the-client-secret") {
			t.Errorf("env %v: %v, want an error naming %s", tc.env, err, tc.wantVar)
		}
	}
}

// A flag that holds a credential is refused, naming the flag: ps shows
// it. The environment may hold one, and the standalone mode's own values
// (Set) are not the command line.
func TestCredentialInFlagRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--database-url", "postgres://u:pw-in-ps@db/x"},
		{"--redis-url", "redis://:pw-in-ps@cache:6379/0"},
		{"--database-url", "postgres://db/x?password=pw-in-ps"},
		{"--ghl-api-url", "https://proxy:pw-in-ps@ghl.example"},
	} {
		_, err := load(t, map[string]string{VarClientID: "id"}, args...)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != args[0] || strings.Contains(err.Error(), "pw-in-ps") {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
	if _, err := load(t, map[string]string{VarClientID: "id", VarRedisURL: "redis://:pw@cache:6379/0"}, "--database-url", "postgres://u@db/x"); err != nil {
		t.Errorf("a password in the environment, a user name in a flag: %v", err)
	}
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	l := NewLoader(fs, func(k string) string { return map[string]string{VarClientID: "id"}[k] }, "")
	l.Set(VarRedisURL, "redis://:own-pw@127.0.0.1:6379/0")
	if _, err := l.Load(); err != nil {
		t.Errorf("a value the process set itself: %v", err)
	}
}

// The viewer and /metrics logins load, and the combinations that could not
// work as meant are refused with one line naming the variable; none of the
// passwords shows in the configuration's String.
func TestLogins(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{VarClientID: "id", VarAdminPassword: "the-admin-pw",
		VarViewerUser: "view", VarViewerPassword: "the-viewer-pw", VarMetricsUser: "prom", VarMetricsPass: "the-metrics-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ViewerUser != "view" || c.ViewerPassword != "the-viewer-pw" || c.MetricsUser != "prom" || c.MetricsPassword != "the-metrics-pw" {
		t.Errorf("logins not loaded: %+v", c)
	}
	for _, secret := range []string{"the-admin-pw", "the-viewer-pw", "the-metrics-pw"} {
		if strings.Contains(c.String(), secret) {
			t.Errorf("Config.String() shows %s: %s", secret, c)
		}
	}
	for _, tc := range []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{VarViewerUser: "view"}, VarViewerUser},
		{map[string]string{VarViewerPassword: "v"}, VarViewerPassword},
		{map[string]string{VarAdminPassword: "same", VarViewerPassword: "same"}, VarViewerPassword},
		{map[string]string{VarMetricsUser: "prom"}, VarMetricsUser},
	} {
		tc.env[VarClientID] = "id"
		_, err := load(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: error %v, want one line naming %s", tc.env, err, tc.wantVar)
		}
	}
}
