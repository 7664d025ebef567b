package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// setupWeb opens the web process's wiring on a stack with extra
// environment, and returns its handler, deps and logs.
func setupWeb(t *testing.T, extra ...string) (http.Handler, *app.Deps, *storetest.Stack, *testenv.Buffer) {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	cfg, err := config.NewLoader(flag.NewFlagSet("web", flag.ContinueOnError),
		testenv.Getenv(stack.Env(append([]string{config.VarWebPublicURL, publicURL}, extra...)...)), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(logs, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return app.WebHandler(d), d, stack, logs
}

// publicURL is WEB_PUBLIC_URL in these tests.
const publicURL = "https://ghlsync.example"

// request sends a request for publicURL+target from 192.0.2.1.
func request(h http.Handler, method, target, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, publicURL+target, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebHandlerAdminAndHealth(t *testing.T) {
	t.Parallel()
	h, d, stack, logs := setupWeb(t, "WEB_ADMIN_USER", "ops", "WEB_ADMIN_PASSWORD", "s3cret")
	stack.Connect(t, "locA", time.Now().Add(time.Hour))
	if !strings.Contains(logs.String(), "GHL_WEBHOOK_PUBLIC_KEY") {
		t.Errorf("start-up does not say webhooks are not configured:\n%s", logs)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := request(h, http.MethodGet, path, "", nil); rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	for _, path := range []string{"/monitoring/api/queues", "/metrics"} {
		if rec := request(h, http.MethodGet, path, "", nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d", path, rec.Code)
		}
	}
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))}
	// /metrics names every location: it is an admin page here.
	if rec := request(h, http.MethodGet, "/metrics", "", auth); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `location="locA"`) {
		t.Errorf("/metrics with credentials: %d %.200s", rec.Code, rec.Body)
	}
	if rec := request(h, http.MethodGet, "/monitoring/api/queues", "", auth); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"queues"`) {
		t.Errorf("asynqmon queue API: %d %s", rec.Code, rec.Body)
	}
	if rec := request(h, http.MethodPost, "/api/webhooks/ghl", "{}", nil); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("webhook without a configured key: %d %s", rec.Code, rec.Body)
	}

	// With the database and Redis gone, the process is still alive but
	// not ready, and says why.
	d.Store.Close()
	d.Redis.Close()
	if rec := request(h, http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("/healthz with its dependencies down: %d", rec.Code)
	}
	rec := request(h, http.MethodGet, "/readyz", "", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "redis") || !strings.Contains(rec.Body.String(), "database") {
		t.Errorf("/readyz with both down: %d %s", rec.Code, rec.Body)
	}
}

func TestWebHandlerWebhook(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, _, stack, _ := setupWeb(t, config.VarWebhookKey, base64.StdEncoding.EncodeToString(pub))
	stack.Connect(t, "locA", time.Now().Add(time.Hour))

	body := fmt.Sprintf(`{"type":"UNINSTALL","appId":"test","locationId":"locA","webhookId":"wh-1","timestamp":%q}`,
		time.Now().UTC().Format(time.RFC3339))
	rec := request(h, http.MethodPost, "/api/webhooks/ghl", body,
		map[string]string{"x-ghl-signature": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(body)))})
	if rec.Code != http.StatusOK {
		t.Fatalf("signed UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	if _, c := stack.StoredTokens(t, "locA"); c.Status != store.StatusUninstalled {
		t.Fatalf("locA: status %s", c.Status)
	}
}

// The status page and its JSON, as the web process serves them: a location
// turned needs_reauth shows with its reconnect link, and neither answers
// without credentials once a password is set.
func TestWebHandlerStatusPage(t *testing.T) {
	t.Parallel()
	h, d, stack, _ := setupWeb(t, "WEB_ADMIN_USER", "ops", "WEB_ADMIN_PASSWORD", "s3cret")
	stack.Connect(t, "locA", time.Now().Add(time.Hour))
	stack.Connect(t, "locB", time.Now().Add(time.Hour))
	if err := d.Store.SetStatus(context.Background(), "locB", store.StatusNeedsReauth, "GHL refused the refresh token"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/api/locations"} {
		if rec := request(h, http.MethodGet, path, "", nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d", path, rec.Code)
		}
		wrong := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:guess"))}
		if rec := request(h, http.MethodGet, path, "", wrong); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d", path, rec.Code)
		}
	}
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))}
	rec := request(h, http.MethodGet, "/api/locations", "", auth)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"location_id":"locB","company_id":"comp1","user_type":"Location","status":"needs_reauth"`) ||
		!strings.Contains(rec.Body.String(), `"reconnect_url":"/api/auth/connect"`) {
		t.Errorf("/api/locations: %d %s", rec.Code, rec.Body)
	}
	rec = request(h, http.MethodGet, "/", "", auth)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<a href="/api/auth/connect">Reconnect</a>`) {
		t.Errorf("status page: %d %s", rec.Code, rec.Body)
	}
	// The OAuth flow itself stays open: GHL's browser redirect carries no
	// credentials.
	if rec := request(h, http.MethodGet, "/api/auth/connect", "", nil); rec.Code != http.StatusFound {
		t.Errorf("/api/auth/connect: %d", rec.Code)
	}
}
