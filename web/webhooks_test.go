package web_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

const testAppID = "app0123456789"

type whBundle struct {
	h     http.Handler
	stack *storetest.Stack
	key   ed25519.PrivateKey
	logs  *testenv.Buffer
}

// setupWebhooks returns the web handler with webhooks verified by a fresh
// Ed25519 key; configure may change the server before it is built.
func setupWebhooks(t *testing.T, configure ...func(*web.Server)) *whBundle {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID,
		ClientSecret: storetest.ClientSecret, RedirectURI: "http://localhost:8080/api/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	s := &web.Server{
		OAuth:    client.OAuth,
		Store:    stack.Store,
		Redis:    stack.Redis(t),
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Webhooks: web.Webhooks{Store: stack.Store, Key: pub, AppID: testAppID},
	}
	for _, f := range configure {
		f(s)
	}
	return &whBundle{h: s.Handler(), stack: stack, key: priv, logs: logs}
}

var webhookSeq atomic.Int64

// event returns a webhook body: fields over a fresh webhookId, the current
// timestamp and our app id.
func event(typ string, fields map[string]any) []byte {
	ev := map[string]any{
		"type":      typ,
		"appId":     testAppID,
		"webhookId": fmt.Sprintf("wh-%d-%d", time.Now().UnixNano(), webhookSeq.Add(1)),
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
	}
	for k, v := range fields {
		ev[k] = v
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

func (b *whBundle) sign(body []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(b.key, body))
}

func (b *whBundle) post(t *testing.T, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/webhooks/ghl", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	return rec
}

// send posts body signed with the bundle's key.
func (b *whBundle) send(t *testing.T, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	return b.post(t, body, map[string]string{"x-ghl-signature": b.sign(body)})
}

// snapshot is the whole credentials table, for before/after comparisons.
func snapshot(t *testing.T, st *store.Store) []store.Credential {
	t.Helper()
	return credentials(t, st)
}

// connectAgency stores an agency credential of the fake's company, whose
// token may mint tokens for the company's locations.
func connectAgency(t *testing.T, stack *storetest.Stack, company string, locs ...string) {
	t.Helper()
	stack.Fake.AddCompany(company)
	for _, l := range locs {
		stack.Fake.AddLocation(l, company)
	}
	access, refresh, exp := stack.Fake.IssueToken(company)
	err := stack.Store.Connect(context.Background(), store.Connection{
		LocationID: company, CompanyID: company, UserType: store.UserTypeCompany,
		Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWebhookAgencyInstallMintsLocationTokens(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	connectAgency(t, b.stack, "agency1", "l1", "l2", "l3")

	rec := b.send(t, event("INSTALL", map[string]any{"installType": "Location", "companyId": "agency1", "locationId": "l1", "userId": "u1", "planId": "p1"}))
	if rec.Code != http.StatusOK {
		t.Fatalf("INSTALL: %d %s", rec.Code, rec.Body)
	}
	if !b.stack.HoldsCurrent(t, "l1") {
		t.Fatal("l1: the minted location token is not stored")
	}
	_, c := b.stack.StoredTokens(t, "l1")
	if c.UserType != store.UserTypeLocation || c.CompanyID != "agency1" {
		t.Errorf("l1 stored as %s of %q", c.UserType, c.CompanyID)
	}
	if n := len(credentials(t, b.stack.Store)); n != 2 {
		t.Errorf("%d credentials, want 2 (agency and l1)", n)
	}

	// A bulk install names its locations in locationIds; l1, connected
	// already, keeps its tokens.
	before, _ := b.stack.StoredTokens(t, "l1")
	rec = b.send(t, event("INSTALL", map[string]any{"installType": "Company", "companyId": "agency1", "locationIds": []string{"l1", "l2", "l3"}}))
	if rec.Code != http.StatusOK {
		t.Fatalf("bulk INSTALL: %d %s", rec.Code, rec.Body)
	}
	for _, loc := range []string{"l2", "l3"} {
		if !b.stack.HoldsCurrent(t, loc) {
			t.Errorf("%s: tokens not stored", loc)
		}
	}
	if after, _ := b.stack.StoredTokens(t, "l1"); after.RefreshToken != before.RefreshToken {
		t.Error("a second INSTALL replaced the tokens of a connected location")
	}
	if diff := cmp.Diff(map[string]int{"l1": 1, "l2": 1, "l3": 1}, b.stack.Fake.Stats().LocationTokens); diff != "" {
		t.Errorf("location tokens minted (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"at-", "rt-"} {
		if strings.Contains(b.logs.String(), secret) {
			t.Errorf("logs hold a token (%q):\n%s", secret, b.logs)
		}
	}
}

func TestWebhookInstallWithoutAgencyToken(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	b.stack.Fake.AddLocation("l9", "compX")

	rec := b.send(t, event("INSTALL", map[string]any{"installType": "Location", "companyId": "compX", "locationId": "l9"}))
	if rec.Code != http.StatusOK {
		t.Fatalf("INSTALL: %d %s", rec.Code, rec.Body)
	}
	if n := len(credentials(t, b.stack.Store)); n != 0 {
		t.Fatalf("%d credentials stored without any token to mint from", n)
	}
	if !strings.Contains(b.logs.String(), "/api/auth/connect") || !strings.Contains(b.logs.String(), "l9") {
		t.Errorf("the log does not say to connect l9 at /api/auth/connect:\n%s", b.logs)
	}
	if n := b.stack.Fake.Stats().LocationTokens["l9"]; n != 0 {
		t.Errorf("%d location tokens minted", n)
	}
}

// A GHL failure that may pass gets 503, and GHL's retry of the same
// webhook is not refused as a replay.
func TestWebhookInstallRetriedAfterGHLFailure(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	connectAgency(t, b.stack, "agency1", "l1")
	b.stack.Fake.ExpireAccessTokens("agency1")

	body := event("INSTALL", map[string]any{"companyId": "agency1", "locationId": "l1"})
	if rec := b.send(t, body); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("INSTALL with an expired agency token: %d %s", rec.Code, rec.Body)
	}
	// The worker refreshes the agency token meanwhile.
	access, refresh, exp := b.stack.Fake.IssueToken("agency1")
	if err := b.stack.Store.Connect(context.Background(), store.Connection{LocationID: "agency1", CompanyID: "agency1",
		UserType: store.UserTypeCompany, Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp}}); err != nil {
		t.Fatal(err)
	}
	if rec := b.send(t, body); rec.Code != http.StatusOK {
		t.Fatalf("GHL's retry: %d %s", rec.Code, rec.Body)
	}
	if !b.stack.HoldsCurrent(t, "l1") {
		t.Fatal("l1 not connected by the retry")
	}
}

func TestWebhookUninstallLocation(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	soon := time.Now().Add(time.Minute)
	b.stack.Connect(t, "locA", soon)
	b.stack.Connect(t, "locB", soon)

	rec := b.send(t, event("UNINSTALL", map[string]any{"locationId": "locA", "companyId": "comp1"}))
	if rec.Code != http.StatusOK {
		t.Fatalf("UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	_, c := b.stack.StoredTokens(t, "locA")
	if c.Status != store.StatusUninstalled || !strings.Contains(c.LastError, "uninstalled") || !strings.Contains(c.LastError, "/api/auth/connect") {
		t.Fatalf("locA: status %s, last error %q", c.Status, c.LastError)
	}
	if _, c := b.stack.StoredTokens(t, "locB"); c.Status != store.StatusActive {
		t.Errorf("locB: status %s", c.Status)
	}
	due, err := b.stack.Store.DueForRefresh(context.Background(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"locB"}, due); diff != "" {
		t.Errorf("due for refresh (-want +got):\n%s", diff)
	}

	// A location ghlsync never held: nothing to do, and no retry wanted.
	if rec := b.send(t, event("UNINSTALL", map[string]any{"locationId": "unknown"})); rec.Code != http.StatusOK {
		t.Errorf("UNINSTALL of an unknown location: %d %s", rec.Code, rec.Body)
	}
}

func TestWebhookUninstallCompany(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	connectAgency(t, b.stack, "agency1", "l1", "l2")
	for _, l := range []string{"l1", "l2"} {
		if rec := b.send(t, event("INSTALL", map[string]any{"companyId": "agency1", "locationId": l})); rec.Code != http.StatusOK {
			t.Fatalf("INSTALL %s: %d %s", l, rec.Code, rec.Body)
		}
	}
	b.stack.Connect(t, "other", time.Now().Add(time.Hour)) // of comp1

	rec := b.send(t, event("UNINSTALL", map[string]any{"companyId": "agency1"}))
	if rec.Code != http.StatusOK {
		t.Fatalf("UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	got := map[string]store.Status{}
	for _, c := range credentials(t, b.stack.Store) {
		got[c.LocationID] = c.Status
		if c.Status == store.StatusUninstalled && !strings.Contains(c.LastError, "/api/auth/connect") {
			t.Errorf("%s: last error %q does not say how to reconnect", c.LocationID, c.LastError)
		}
	}
	want := map[string]store.Status{"agency1": store.StatusUninstalled, "l1": store.StatusUninstalled,
		"l2": store.StatusUninstalled, "other": store.StatusActive}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	all, err := b.stack.Store.Refreshable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"other"}, all); diff != "" {
		t.Errorf("refreshable (-want +got):\n%s", diff)
	}
}

// Each refused webhook gets its status and changes nothing.
func TestWebhookRefusals(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	connectAgency(t, b.stack, "agency1", "l1")

	uninstall := func(fields map[string]any) []byte {
		f := map[string]any{"locationId": "locA"}
		for k, v := range fields {
			f[k] = v
		}
		return event("UNINSTALL", f)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signed := uninstall(nil)
	tampered := []byte(strings.Replace(string(uninstall(nil)), "locA", "locB", 1))
	install := event("INSTALL", map[string]any{"companyId": "agency1", "locationId": "l1", "timestamp": time.Now().Add(-6 * time.Minute).UTC().Format(time.RFC3339)})

	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		want    int
	}{
		{"no signature", signed, map[string]string{}, http.StatusUnauthorized},
		{"another key's signature", signed, map[string]string{"x-ghl-signature": base64.StdEncoding.EncodeToString(ed25519.Sign(otherKey, signed))}, http.StatusUnauthorized},
		{"signature of another body", tampered, map[string]string{"x-ghl-signature": b.sign(signed)}, http.StatusUnauthorized},
		{"signature not base64", signed, map[string]string{"x-ghl-signature": "%%%"}, http.StatusUnauthorized},
		{"legacy signature without an RSA key", signed, map[string]string{"x-wh-signature": b.sign(signed)}, http.StatusUnauthorized},
		{"stale timestamp", uninstall(map[string]any{"timestamp": time.Now().Add(-6 * time.Minute).UTC().Format(time.RFC3339)}), nil, http.StatusBadRequest},
		{"stale install", install, nil, http.StatusBadRequest},
		{"future timestamp", uninstall(map[string]any{"timestamp": time.Now().Add(6 * time.Minute).UTC().Format(time.RFC3339)}), nil, http.StatusBadRequest},
		{"timestamp not a time", uninstall(map[string]any{"timestamp": "yesterday"}), nil, http.StatusBadRequest},
		{"no timestamp", uninstall(map[string]any{"timestamp": nil}), nil, http.StatusBadRequest},
		{"no webhookId", uninstall(map[string]any{"webhookId": ""}), nil, http.StatusBadRequest},
		{"no location or company", event("UNINSTALL", nil), nil, http.StatusBadRequest},
		{"not JSON", []byte(`{"type":"UNINSTALL",`), nil, http.StatusBadRequest},
		{"too large", append(uninstall(nil), make([]byte, 2<<20)...), nil, http.StatusRequestEntityTooLarge},
		{"another app", uninstall(map[string]any{"appId": "someoneelse"}), nil, http.StatusOK},
		{"another event", event("ContactCreate", map[string]any{"locationId": "locA"}), nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, b.stack.Store)
			headers := tc.headers
			if headers == nil {
				headers = map[string]string{"x-ghl-signature": b.sign(tc.body)}
			}
			rec := b.post(t, tc.body, headers)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if diff := cmp.Diff(before, snapshot(t, b.stack.Store)); diff != "" {
				t.Errorf("credentials changed (-before +after):\n%s", diff)
			}
		})
	}
	if n := b.stack.Fake.Stats().LocationTokens["l1"]; n != 0 {
		t.Errorf("%d location tokens minted by refused webhooks", n)
	}
}

func TestWebhookReplayRefused(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	body := event("UNINSTALL", map[string]any{"locationId": "locA"})
	if rec := b.send(t, body); rec.Code != http.StatusOK {
		t.Fatalf("UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	// locA is connected again; a replay of the old UNINSTALL must not undo it.
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	before := snapshot(t, b.stack.Store)
	if rec := b.send(t, body); rec.Code != http.StatusConflict {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(before, snapshot(t, b.stack.Store)); diff != "" {
		t.Errorf("the replay changed credentials (-before +after):\n%s", diff)
	}
	// The same event under a new id is a new webhook.
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	ev["webhookId"] = "another-id"
	again, _ := json.Marshal(ev)
	if rec := b.send(t, again); rec.Code != http.StatusOK {
		t.Fatalf("a new id: %d %s", rec.Code, rec.Body)
	}
}

// The id is kept longer than a timestamp is accepted, so that no replay
// outlives both checks.
func TestWebhookIDOutlivesTolerance(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	rc := b.stack.Redis(t)
	if rec := b.send(t, event("UNINSTALL", map[string]any{"locationId": "locA", "webhookId": "wh-ttl"})); rec.Code != http.StatusOK {
		t.Fatalf("UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	ttl, err := rc.TTL(context.Background(), "ghlsync:webhook:seen:wh-ttl").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 10*time.Minute {
		t.Fatalf("webhook id kept for %s, want more than the 10 minutes a timestamp is accepted", ttl)
	}
}

func TestWebhookNotConfigured(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t, func(s *web.Server) { s.Webhooks.Key = nil })
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	before := snapshot(t, b.stack.Store)
	rec := b.send(t, event("UNINSTALL", map[string]any{"locationId": "locA"}))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not configured") {
		t.Fatalf("unconfigured: %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(before, snapshot(t, b.stack.Store)); diff != "" {
		t.Errorf("credentials changed (-before +after):\n%s", diff)
	}
}

func TestWebhookLegacyRSASignature(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := setupWebhooks(t, func(s *web.Server) { s.Webhooks.RSAKey = &rsaKey.PublicKey })
	b.stack.Connect(t, "locA", time.Now().Add(time.Hour))
	b.stack.Connect(t, "locB", time.Now().Add(time.Hour))
	rsaSign := func(body []byte) string {
		sum := sha256.Sum256(body)
		sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sig)
	}

	bad := event("UNINSTALL", map[string]any{"locationId": "locB"})
	before := snapshot(t, b.stack.Store)
	if rec := b.post(t, bad, map[string]string{"x-wh-signature": rsaSign([]byte("other"))}); rec.Code != http.StatusUnauthorized {
		t.Fatalf("bad RSA signature: %d %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(before, snapshot(t, b.stack.Store)); diff != "" {
		t.Errorf("credentials changed (-before +after):\n%s", diff)
	}

	body := event("UNINSTALL", map[string]any{"locationId": "locA"})
	if rec := b.post(t, body, map[string]string{"x-wh-signature": rsaSign(body)}); rec.Code != http.StatusOK {
		t.Fatalf("RSA-signed UNINSTALL: %d %s", rec.Code, rec.Body)
	}
	if _, c := b.stack.StoredTokens(t, "locA"); c.Status != store.StatusUninstalled {
		t.Fatalf("locA: status %s", c.Status)
	}
}

func TestAppID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"64f0c1e2d3b4a5968778695a-lm1abcde": "64f0c1e2d3b4a5968778695a",
		"nodash":                            "",
		"":                                  "",
	} {
		if got := web.AppID(in); got != want {
			t.Errorf("AppID(%q) = %q, want %q", in, got, want)
		}
	}
}
