package ghl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/google/go-cmp/cmp"
)

// The secret and tokens hold characters that form encoding changes, so that
// tests see both spellings.
const (
	testPrefix       = "/api-v2"
	testClientID     = "client-id-1"
	testClientSecret = "cs-S3cr3t/+&=Zq9"
	testRedirectURI  = "https://app.example/api/auth/callback"
	testAccessToken  = "at-Acc3ss+/Tok3n=="
	testRefreshToken = "rt-R3fr3sh+/Tok3n=="
	testCode         = "code-C0de+/=Xy"
)

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testBundle is what setup gives a test besides the client.
type testBundle struct {
	// mux routes the requests below BaseURL, which has a path prefix so that
	// a client dropping it hits the catch-all and fails the test.
	mux    *http.ServeMux
	server *httptest.Server

	mu       sync.Mutex
	observed []observation
}

// observation is one Config.OnResponse call.
type observation struct {
	Endpoint string
	Status   int
}

func (b *testBundle) observe(endpoint string, status int, elapsed time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observed = append(b.observed, observation{endpoint, status})
}

func (b *testBundle) observations() []observation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]observation(nil), b.observed...)
}

// setup returns a client pointed at a test server under testPrefix. opts
// may change the config before the client is built.
func setup(t *testing.T, opts ...func(*Config)) (*Client, *testBundle) {
	t.Helper()
	b := &testBundle{mux: http.NewServeMux()}
	b.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "unexpected", http.StatusTeapot)
	})
	root := http.NewServeMux()
	root.Handle(testPrefix+"/", http.StripPrefix(testPrefix, b.mux))
	root.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside BaseURL: %s %s", r.Method, r.URL)
		http.Error(w, "outside", http.StatusTeapot)
	})
	b.server = httptest.NewServer(root)
	t.Cleanup(b.server.Close)

	cfg := Config{
		BaseURL:      b.server.URL + testPrefix + "/",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURI:  testRedirectURI,
		Clock:        clock.NewFake(testNow),
		OnResponse:   b.observe,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, b
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if r.Method != want {
		t.Errorf("method = %s, want %s", r.Method, want)
	}
}

// testHeader checks a request header; want "" means absent.
func testHeader(t *testing.T, r *http.Request, key, want string) {
	t.Helper()
	if got := r.Header.Get(key); got != want {
		t.Errorf("header %s = %q, want %q", key, got, want)
	}
}

// testAPIHeaders checks the headers of an API call.
func testAPIHeaders(t *testing.T, r *http.Request, version, token string) {
	t.Helper()
	testHeader(t, r, "Accept", "application/json")
	testHeader(t, r, "Version", version)
	testHeader(t, r, "Authorization", "Bearer "+token)
}

func testForm(t *testing.T, r *http.Request, want url.Values) {
	t.Helper()
	testHeader(t, r, "Content-Type", "application/x-www-form-urlencoded")
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	got, err := url.ParseQuery(string(b))
	if err != nil {
		t.Fatalf("parsing form %q: %v", b, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("form mismatch (-want +got):\n%s", diff)
	}
}

// testJSON compares the request's JSON body with want, both decoded, so key
// order and spacing do not matter but absent and present keys do.
func testJSON(t *testing.T, r *http.Request, want string) {
	t.Helper()
	testHeader(t, r, "Content-Type", "application/json")
	var got, w any
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestNewClient_BaseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"", DefaultBaseURL},
		{"https://services.leadconnectorhq.com/", "https://services.leadconnectorhq.com"},
		{"http://127.0.0.1:8080/prefix//", "http://127.0.0.1:8080/prefix"},
	} {
		c, err := NewClient(Config{BaseURL: tc.in})
		if err != nil {
			t.Errorf("NewClient(%q): %v", tc.in, err)
			continue
		}
		if c.baseURL != tc.want {
			t.Errorf("NewClient(%q).baseURL = %q, want %q", tc.in, c.baseURL, tc.want)
		}
	}
}

func TestNewClient_BadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{BaseURL: "services.leadconnectorhq.com"},
		{BaseURL: "ftp://example.com"},
		{BaseURL: "https://"},
		{BaseURL: "https://user:hunter2@example.com"},
		{BaseURL: "https://example.com/?x=1"},
		{BaseURL: "https://example.com/#frag"},
		{BaseURL: "https://exa mple.com:hunter2"},
		{BaseURL: "%zz"},
		{Timeout: -time.Second},
	} {
		_, err := NewClient(cfg)
		if err == nil {
			t.Errorf("NewClient(%v) = nil error, want one", cfg)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%v) error %q shows the password", cfg, err)
		}
	}
}

func TestConfig_MasksSecret(t *testing.T) {
	t.Parallel()
	cfg := Config{BaseURL: DefaultBaseURL, ClientID: testClientID, ClientSecret: testClientSecret}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "client", c)
	outputs := map[string]string{
		"String":   cfg.String(),
		"%v":       fmt.Sprintf("%v", cfg),
		"%+v":      fmt.Sprintf("%+v", cfg),
		"%#v":      fmt.Sprintf("%#v", cfg),
		"%v ptr":   fmt.Sprintf("%v", &cfg),
		"slog":     logged.String(),
		"client":   fmt.Sprintf("%v", c),
		"client+":  fmt.Sprintf("%+v", c),
		"client#":  fmt.Sprintf("%#v", c),
		"client s": c.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, testClientSecret) || strings.Contains(out, "S3cr3t") {
			t.Errorf("%s shows the client secret: %s", name, out)
		}
	}
	if !strings.Contains(cfg.String(), "[redacted]") {
		t.Errorf("String() = %s, want the secret shown as [redacted]", cfg)
	}
	if !strings.Contains(logged.String(), testClientID) {
		t.Errorf("slog output %s lacks the client id", logged.String())
	}
	if got := (Config{}).String(); strings.Contains(got, "[redacted]") {
		t.Errorf("String() of an empty config = %s, want no secret shown as set", got)
	}
}

func TestResponse_Rate(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("GET /contacts/with", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-RateLimit-Max", "100")
		h.Set("X-RateLimit-Remaining", "97")
		h.Set("X-RateLimit-Interval-Milliseconds", "10000")
		h.Set("X-RateLimit-Limit-Daily", "200000")
		h.Set("X-RateLimit-Daily-Remaining", "199990")
		writeJSON(w, http.StatusOK, `{"contact":{"id":"with"}}`)
	})
	b.mux.HandleFunc("GET /contacts/without", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Max", "not a number")
		writeJSON(w, http.StatusOK, `{"contact":{"id":"without"}}`)
	})
	ctx := t.Context()

	_, resp, err := c.Contacts.Get(ctx, testAccessToken, "with")
	if err != nil {
		t.Fatal(err)
	}
	want := &Response{StatusCode: 200, Rate: Rate{Max: 100, Remaining: 97, Interval: 10 * time.Second, DailyLimit: 200000, DailyRemaining: 199990}}
	if diff := cmp.Diff(want, resp); diff != "" {
		t.Errorf("Response mismatch (-want +got):\n%s", diff)
	}

	_, resp, err = c.Contacts.Get(ctx, testAccessToken, "without")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Response{StatusCode: 200}, resp); diff != "" {
		t.Errorf("Response without rate headers mismatch (-want +got):\n%s", diff)
	}
}

// TestVersionHeader checks every endpoint's Version, Authorization and
// Accept headers: the token endpoint gets no Version and no bearer token.
func TestVersionHeader(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	appt := &Appointment{CalendarID: "cal", LocationID: "loc", ContactID: "con", StartTime: start}
	for _, tc := range []struct {
		endpoint string
		pattern  string
		body     string
		call     func(context.Context, *Client) error
		version  string
		auth     string
	}{
		{"oauth.token", "POST /oauth/token", `{"access_token":"a"}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.OAuth.Refresh(ctx, testRefreshToken, UserTypeLocation)
			return err
		}, "", ""},
		{"oauth.token", "POST /oauth/token", `{"access_token":"a"}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.OAuth.ExchangeCode(ctx, testCode, UserTypeLocation)
			return err
		}, "", ""},
		{"oauth.locationToken", "POST /oauth/locationToken", `{"access_token":"a"}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.OAuth.LocationToken(ctx, testAccessToken, "co", "loc")
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"contacts.upsert", "POST /contacts/upsert", `{"contact":{"id":"x"}}`, func(ctx context.Context, c *Client) error {
			_, _, _, err := c.Contacts.Upsert(ctx, testAccessToken, &Contact{LocationID: "loc"})
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"contacts.get", "GET /contacts/x", `{"contact":{"id":"x"}}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Contacts.Get(ctx, testAccessToken, "x")
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"contacts.update", "PUT /contacts/x", `{"contact":{"id":"x"}}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Contacts.Update(ctx, testAccessToken, "x", &Contact{FirstName: "A"})
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"contacts.searchDuplicate", "GET /contacts/search/duplicate", `{"contact":null}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Contacts.FindByEmail(ctx, testAccessToken, "loc", "a@example.com")
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"calendars.list", "GET /calendars/{$}", `{"calendars":[]}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.List(ctx, testAccessToken, "loc")
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"calendars.get", "GET /calendars/cal", `{"calendar":{"id":"cal"}}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.Get(ctx, testAccessToken, "cal")
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"calendars.events", "GET /calendars/events", `{"events":[]}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.Events(ctx, testAccessToken, EventsQuery{LocationID: "loc", CalendarID: "cal",
				Start: time.Unix(1, 0), End: time.Unix(2, 0)})
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"users.list", "GET /users/{$}", `{"users":[]}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Users.List(ctx, testAccessToken, "loc")
			return err
		}, "2021-07-28", "Bearer " + testAccessToken},
		{"calendars.createAppointment", "POST /calendars/events/appointments", `{"id":"e"}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.CreateAppointment(ctx, testAccessToken, appt)
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"calendars.updateAppointment", "PUT /calendars/events/appointments/e", `{"id":"e"}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.UpdateAppointment(ctx, testAccessToken, "e", appt)
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"calendars.getAppointment", "GET /calendars/events/appointments/e", `{"event":{"id":"e"}}`, func(ctx context.Context, c *Client) error {
			_, _, err := c.Calendars.GetAppointment(ctx, testAccessToken, "e")
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
		{"calendars.deleteEvent", "DELETE /calendars/events/e", `{"succeeded":true}`, func(ctx context.Context, c *Client) error {
			_, err := c.Calendars.DeleteEvent(ctx, testAccessToken, "e")
			return err
		}, "2021-04-15", "Bearer " + testAccessToken},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc(tc.pattern, func(w http.ResponseWriter, r *http.Request) {
				testHeader(t, r, "Accept", "application/json")
				testHeader(t, r, "Version", tc.version)
				testHeader(t, r, "Authorization", tc.auth)
				writeJSON(w, http.StatusOK, tc.body)
			})
			if err := tc.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]observation{{tc.endpoint, 200}}, b.observations()); diff != "" {
				t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTimeout checks that Config.Timeout bounds a call whose server never
// answers, and that the error says to retry.
func TestTimeout(t *testing.T) {
	t.Parallel()
	c, b := setup(t, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes: cleanups run last first
	b.mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})

	tok, resp, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation)
	if err == nil {
		t.Fatalf("Refresh = %v, want a timeout", tok)
	}
	if resp != nil {
		t.Errorf("Response = %+v, want nil when no response arrived", resp)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not context.DeadlineExceeded", err)
	}
	if !Temporary(err) {
		t.Errorf("Temporary(%v) = false, want true", err)
	}
	if !strings.HasPrefix(err.Error(), "ghl: POST /oauth/token: ") {
		t.Errorf("error %q does not name the operation", err)
	}
	if diff := cmp.Diff([]observation{{"oauth.token", 0}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

// TestTimeout_DefaultHTTPClient checks the default http.Client's own
// Timeout, which bounds a call even when the context has none.
func TestTimeout_DefaultHTTPClient(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond })
	if c.http.Timeout != 50*time.Millisecond {
		t.Errorf("default http.Client Timeout = %s, want Config.Timeout", c.http.Timeout)
	}
	if c, _ := NewClient(Config{}); c.timeout != DefaultTimeout || c.http.Timeout != DefaultTimeout {
		t.Errorf("default timeouts = %s, %s, want %s", c.timeout, c.http.Timeout, DefaultTimeout)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	arrived := make(chan struct{})
	b.mux.HandleFunc("GET /contacts/c1", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	_, _, err := c.Contacts.Get(ctx, testAccessToken, "c1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v is not context.Canceled", err)
	}
	if Temporary(err) {
		t.Errorf("Temporary(%v) = true, want false: the caller gave up", err)
	}
}

// TestTransportErrors checks that connections refused, reset or closed are
// temporary, and that their errors name the operation without the URL,
// whose query may carry an email address.
func TestTransportErrors(t *testing.T) {
	t.Parallel()
	const email = "patient@example.com"

	hijack := func(t *testing.T, reset bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			if tcp, ok := conn.(*net.TCPConn); ok && reset {
				tcp.SetLinger(0) // close with RST
			}
			conn.Close()
		}
	}
	for _, tc := range []struct {
		name    string
		baseURL func(t *testing.T, b *testBundle) string
	}{
		{"refused", func(t *testing.T, b *testBundle) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			return "http://" + addr
		}},
		{"reset", func(t *testing.T, b *testBundle) string {
			b.mux.HandleFunc("GET /contacts/search/duplicate", hijack(t, true))
			return b.server.URL + testPrefix
		}},
		{"closed", func(t *testing.T, b *testBundle) string {
			b.mux.HandleFunc("GET /contacts/search/duplicate", hijack(t, false))
			return b.server.URL + testPrefix
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, b := setup(t)
			c, err := NewClient(Config{BaseURL: tc.baseURL(t, b), OnResponse: b.observe})
			if err != nil {
				t.Fatal(err)
			}
			_, resp, err := c.Contacts.FindByEmail(t.Context(), testAccessToken, "loc", email)
			if err == nil {
				t.Fatal("FindByEmail succeeded, want a transport error")
			}
			t.Logf("error: %v", err)
			if resp != nil {
				t.Errorf("Response = %+v, want nil", resp)
			}
			if !Temporary(err) {
				t.Errorf("Temporary(%v) = false, want true", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ghl: GET /contacts/search/duplicate: ") {
				t.Errorf("error %q does not name the operation", msg)
			}
			// Addresses may show (net.OpError names them), URLs may not.
			for _, leak := range []string{"patient", "email=", "http://", testAccessToken} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q contains %q", msg, leak)
				}
			}
			if diff := cmp.Diff([]observation{{"contacts.searchDuplicate", 0}}, b.observations()); diff != "" {
				t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNoRedirect checks that the default client does not follow a redirect,
// which would replay the token form, client secret included, elsewhere.
func TestNoRedirect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(elsewhere.Close)
	c, b := setup(t)
	b.mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	})

	_, resp, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation)
	var er *ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("error = %v, want an *ErrorResponse with status 307", err)
	}
	if resp == nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("Response = %+v, want status 307", resp)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests, want 0", n)
	}
}

func TestRequiredArguments(t *testing.T) {
	t.Parallel()
	c, b := setup(t) // its catch-all fails the test on any request
	ctx := t.Context()
	noSecret, err := NewClient(Config{BaseURL: b.server.URL, ClientID: testClientID})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"Refresh no token": func() error {
			_, _, err := c.OAuth.Refresh(ctx, "", UserTypeLocation)
			return err
		},
		"Refresh no secret": func() error {
			_, _, err := noSecret.OAuth.Refresh(ctx, testRefreshToken, UserTypeLocation)
			return err
		},
		"ExchangeCode no code": func() error {
			_, _, err := c.OAuth.ExchangeCode(ctx, "", UserTypeLocation)
			return err
		},
		"LocationToken no location": func() error {
			_, _, err := c.OAuth.LocationToken(ctx, testAccessToken, "co", "")
			return err
		},
		"Upsert nil": func() error {
			_, _, _, err := c.Contacts.Upsert(ctx, testAccessToken, nil)
			return err
		},
		"Upsert no location": func() error {
			_, _, _, err := c.Contacts.Upsert(ctx, testAccessToken, &Contact{Email: "a@b"})
			return err
		},
		"Upsert no token": func() error {
			_, _, _, err := c.Contacts.Upsert(ctx, "", &Contact{LocationID: "l"})
			return err
		},
		"Get no id": func() error {
			_, _, err := c.Contacts.Get(ctx, testAccessToken, "")
			return err
		},
		"Update no id": func() error {
			_, _, err := c.Contacts.Update(ctx, testAccessToken, "", &Contact{})
			return err
		},
		"FindByEmail no email": func() error {
			_, _, err := c.Contacts.FindByEmail(ctx, testAccessToken, "loc", "")
			return err
		},
		"List no location": func() error {
			_, _, err := c.Calendars.List(ctx, testAccessToken, "")
			return err
		},
		"CreateAppointment no start": func() error {
			a := &Appointment{CalendarID: "c", LocationID: "l", ContactID: "x"}
			_, _, err := c.Calendars.CreateAppointment(ctx, testAccessToken, a)
			return err
		},
		"CreateAppointment nil": func() error {
			_, _, err := c.Calendars.CreateAppointment(ctx, testAccessToken, nil)
			return err
		},
		"UpdateAppointment no id": func() error {
			_, _, err := c.Calendars.UpdateAppointment(ctx, testAccessToken, "", &Appointment{})
			return err
		},
		"GetAppointment no token": func() error {
			_, _, err := c.Calendars.GetAppointment(ctx, "", "e")
			return err
		},
		"DeleteEvent no id": func() error {
			_, err := c.Calendars.DeleteEvent(ctx, testAccessToken, "")
			return err
		},
	} {
		err := call()
		if err == nil {
			t.Errorf("%s: nil error, want one", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "ghl: ") || !strings.HasSuffix(err.Error(), " is required") {
			t.Errorf("%s: error %q, want \"ghl: METHOD /path: X is required\"", name, err)
		}
	}
	if got := b.observations(); len(got) != 0 {
		t.Errorf("OnResponse calls = %v, want none", got)
	}
}

func TestPathEscaping(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("GET /contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if got, want := r.URL.EscapedPath(), "/contacts/a%2F..%2Foauth%3Fx"; got != want {
			t.Errorf("path = %s, want %s", got, want)
		}
		writeJSON(w, http.StatusOK, `{"contact":{"id":"a"}}`)
	})
	if _, _, err := c.Contacts.Get(t.Context(), testAccessToken, "a/../oauth?x"); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeError(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("GET /contacts/c1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `<html>`)
	})
	_, resp, err := c.Contacts.Get(t.Context(), testAccessToken, "c1")
	if err == nil || !strings.HasPrefix(err.Error(), "ghl: GET /contacts/c1: decoding response: ") {
		t.Fatalf("error = %v, want a decoding error naming the operation", err)
	}
	if resp == nil || resp.StatusCode != http.StatusOK {
		t.Errorf("Response = %+v, want status 200", resp)
	}
	if Temporary(err) {
		t.Errorf("Temporary(%v) = true, want false", err)
	}
}
