package web_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/web"
)

// A Host other than WEB_PUBLIC_URL's is refused in both modes, so a name
// rebound to this server reaches no admin page; loopback names are
// accepted, whatever the port.
func TestAdminChecksHost(t *testing.T) {
	t.Parallel()
	modes := map[string]adminReq{
		"loopback without password": {remote: "127.0.0.1:4000"},
		"basic auth":                {remote: "203.0.113.9:4000", user: "ops", pass: "s3cret"},
	}
	for mode, base := range modes {
		pass := ""
		if base.pass != "" {
			pass = "s3cret"
		}
		h := admin("ops", pass, slog.New(slog.DiscardHandler))(secretPage)
		for _, tc := range []struct {
			host string
			want int
		}{
			{"ghlsync.example", http.StatusOK},
			{"GHLSYNC.example:443", http.StatusOK},
			{"localhost:8080", http.StatusOK},
			{"127.0.0.1:9999", http.StatusOK},
			{"[::1]:8080", http.StatusOK},
			{"attacker.example", http.StatusMisdirectedRequest},
			{"attacker.example:8080", http.StatusMisdirectedRequest},
			{"ghlsync.example:8443", http.StatusMisdirectedRequest},
			{"ghlsync.example.attacker.example", http.StatusMisdirectedRequest},
			{"localhost.attacker.example", http.StatusMisdirectedRequest},
			{"", http.StatusMisdirectedRequest},
		} {
			req := base
			req.host = tc.host
			if tc.host == "" {
				req.host = " " // httptest keeps the target's host when Host is ""
			}
			rec := serve(h, "/", req)
			if rec.Code != tc.want {
				t.Errorf("%s, Host %q: status %d, want %d", mode, tc.host, rec.Code, tc.want)
			}
			if tc.want != http.StatusOK && (strings.Contains(rec.Body.String(), "the admin page") || !strings.Contains(rec.Body.String(), "WEB_PUBLIC_URL")) {
				t.Errorf("%s, Host %q: body %q", mode, tc.host, rec.Body)
			}
		}
	}
}

// Without a password, a loopback peer with a forwarding header is a proxy
// on this host passing on someone else's request: refused.
func TestAdminLoopbackRefusesForwarded(t *testing.T) {
	t.Parallel()
	h := admin("", "", slog.New(slog.DiscardHandler))(secretPage)
	for _, header := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "True-Client-IP", "Via"} {
		rec := serve(h, "/", adminReq{remote: "127.0.0.1:4000", headers: map[string]string{header: "203.0.113.9"}})
		if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "the admin page") || !strings.Contains(rec.Body.String(), "WEB_ADMIN_PASSWORD") {
			t.Errorf("loopback with %s: %d %q, want 403 saying to set WEB_ADMIN_PASSWORD", header, rec.Code, rec.Body)
		}
	}
	if rec := serve(h, "/", adminReq{remote: "127.0.0.1:4000"}); rec.Code != http.StatusOK {
		t.Errorf("loopback without forwarding headers: %d", rec.Code)
	}
	// With a password a proxy in front is fine: the password decides.
	h = admin("ops", "s3cret", slog.New(slog.DiscardHandler))(secretPage)
	if rec := serve(h, "/", adminReq{remote: "127.0.0.1:4000", user: "ops", pass: "s3cret",
		headers: map[string]string{"X-Forwarded-For": "203.0.113.9"}}); rec.Code != http.StatusOK {
		t.Errorf("proxied with the password: %d", rec.Code)
	}
}

// After 5 wrong passwords in a minute a client gets 429 with Retry-After,
// even with the right password, until the minute is over; other clients
// and requests without credentials are not counted against it.
func TestAdminThrottlesWrongPasswords(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	logs := &testenv.Buffer{}
	h := (&web.Admin{User: "ops", Password: "s3cret", PublicURL: publicURL, Clock: clk,
		Log: slog.New(slog.NewTextHandler(logs, nil))}).Guard()(secretPage)
	attacker, other := "203.0.113.9:4000", "198.51.100.7:5000"
	for i := range 10 {
		if rec := serve(h, "/", adminReq{remote: attacker}); rec.Code != http.StatusUnauthorized {
			t.Fatalf("request %d without credentials: %d", i, rec.Code)
		}
	}
	for i := range 5 {
		if rec := serve(h, "/", adminReq{remote: attacker, user: "ops", pass: "guess"}); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i+1, rec.Code)
		}
	}
	clk.Advance(20 * time.Second)
	for _, pass := range []string{"guess", "s3cret"} {
		rec := serve(h, "/", adminReq{remote: attacker, user: "ops", pass: pass})
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "40" || strings.Contains(rec.Body.String(), "the admin page") {
			t.Errorf("password %q after 5 wrong ones: %d, Retry-After %q, want 429 and 40", pass, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	// The same /64 is the same client.
	if rec := serve(h, "/", adminReq{remote: "[2001:db8::1]:1", user: "ops", pass: "s3cret"}); rec.Code != http.StatusOK {
		t.Errorf("an IPv6 client: %d", rec.Code)
	}
	for range 5 {
		serve(h, "/", adminReq{remote: "[2001:db8::1]:1", user: "ops", pass: "guess"})
	}
	if rec := serve(h, "/", adminReq{remote: "[2001:db8::2]:1", user: "ops", pass: "s3cret"}); rec.Code != http.StatusTooManyRequests {
		t.Errorf("another address of a throttled /64: %d, want 429", rec.Code)
	}
	if rec := serve(h, "/", adminReq{remote: other, user: "ops", pass: "s3cret"}); rec.Code != http.StatusOK {
		t.Errorf("another client: %d, want 200", rec.Code)
	}
	if !strings.Contains(logs.String(), "too many wrong passwords") || !strings.Contains(logs.String(), "203.0.113.9") || strings.Contains(logs.String(), "guess") {
		t.Errorf("the throttle is not logged once, without the password:\n%s", logs)
	}
	clk.Advance(40 * time.Second)
	if rec := serve(h, "/", adminReq{remote: attacker, user: "ops", pass: "s3cret"}); rec.Code != http.StatusOK {
		t.Errorf("the right password a minute later: %d, want 200", rec.Code)
	}
}

// A state-changing request passes only with proof that ghlsync's own page
// sent it; safe methods and the exempt webhook always pass.
func TestSameOrigin(t *testing.T) {
	t.Parallel()
	reached := false
	h := (&web.SameOrigin{PublicURL: publicURL, Exempt: []string{web.WebhookRoute}}).Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	for _, tc := range []struct {
		name    string
		method  string
		target  string
		host    string
		headers map[string]string
		want    int
	}{
		{"GET cross-site", "GET", "/monitoring/api/queues", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 200},
		{"HEAD without headers", "HEAD", "/", "", nil, 200},
		{"OPTIONS without headers", "OPTIONS", "/", "", nil, 200},
		{"same-origin fetch", "POST", "/monitoring/api/queues/critical:pause", "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": publicURL}, 200},
		{"typed or bookmarked", "POST", "/x", "", map[string]string{"Sec-Fetch-Site": "none"}, 200},
		{"older browser, same origin", "POST", "/x", "", map[string]string{"Origin": publicURL}, 200},
		{"origin with the default port", "POST", "/x", "", map[string]string{"Origin": "https://ghlsync.example:443"}, 200},
		{"loopback origin, loopback host", "POST", "/x", "localhost:8080", map[string]string{"Origin": "http://localhost:8080"}, 200},
		{"script sending Origin", "DELETE", "/x", "", map[string]string{"Origin": publicURL}, 200},
		{"GHL webhook", "POST", "/api/webhooks/ghl", "", nil, 200},
		{"cross-site form", "POST", "/x", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "text/plain"}, 403},
		{"cross-site claiming our origin", "POST", "/x", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": publicURL}, 403},
		{"sibling subdomain", "POST", "/x", "", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.ghlsync.example"}, 403},
		{"older browser, other site", "POST", "/x", "", map[string]string{"Origin": "https://evil.example"}, 403},
		{"opaque origin", "POST", "/x", "", map[string]string{"Origin": "null"}, 403},
		{"other port", "PUT", "/x", "", map[string]string{"Origin": "https://ghlsync.example:8443"}, 403},
		{"loopback origin, other host", "POST", "/x", "", map[string]string{"Origin": "http://localhost:8080"}, 403},
		{"loopback origin, other loopback port", "POST", "/x", "localhost:8080", map[string]string{"Origin": "http://localhost:9999"}, 403},
		{"no proof", "PATCH", "/x", "", nil, 403},
		{"webhook route, other method", "DELETE", "/api/webhooks/ghl", "", nil, 403},
	} {
		reached = false
		rec := serve(h, tc.target, adminReq{method: tc.method, host: tc.host, headers: tc.headers})
		if rec.Code != tc.want || reached != (tc.want == 200) {
			t.Errorf("%s: status %d, handler reached %v; want %d", tc.name, rec.Code, reached, tc.want)
		}
		if tc.want == 403 && !strings.Contains(rec.Body.String(), "refused") && !strings.Contains(rec.Body.String(), "Origin: "+publicURL) {
			t.Errorf("%s: body %q does not say why", tc.name, rec.Body)
		}
	}
}
