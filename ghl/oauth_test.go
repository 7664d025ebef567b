package ghl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A token answer as GHL sends it, with fields this package ignores.
const tokenBody = `{
	"access_token": "new-access-token-1234",
	"token_type": "Bearer",
	"expires_in": 86399,
	"refresh_token": "new-refresh-token-5678",
	"scope": "contacts.readonly contacts.write",
	"userType": "Location",
	"locationId": "loc-1",
	"companyId": "co-1",
	"approvedLocations": ["loc-1", "loc-2"],
	"userId": "user-1",
	"planId": "plan-1",
	"isBulkInstallation": true,
	"refreshTokenId": "rtid-1",
	"traceId": "trace-1"
}`

var wantToken = &Token{
	AccessToken:       "new-access-token-1234",
	RefreshToken:      "new-refresh-token-5678",
	TokenType:         "Bearer",
	ExpiresIn:         86399,
	Expiry:            testNow.Add(86399 * time.Second),
	Scope:             "contacts.readonly contacts.write",
	UserType:          "Location",
	LocationID:        "loc-1",
	CompanyID:         "co-1",
	UserID:            "user-1",
	ApprovedLocations: []string{"loc-1", "loc-2"},
}

func TestAuthorizeURL(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	scopes := []string{"contacts.readonly", "calendars/events.write"}
	got := c.OAuth.AuthorizeURL("https://marketplace.leadconnectorhq.com/", "st ate+1", scopes)
	want := "https://marketplace.leadconnectorhq.com/v2/oauth/chooselocation?response_type=code" +
		"&redirect_uri=https%3A%2F%2Fapp.example%2Fapi%2Fauth%2Fcallback" +
		"&client_id=client-id-1" +
		"&scope=contacts.readonly%20calendars%2Fevents.write" +
		"&state=st%20ate%2B1"
	if got != want {
		t.Errorf("AuthorizeURL =\n%s\nwant\n%s", got, want)
	}

	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("scope"); got != strings.Join(scopes, " ") {
		t.Errorf("scope decodes to %q", got)
	}
	if strings.Contains(got, url.QueryEscape(testClientSecret)) || strings.Contains(got, testClientSecret) {
		t.Errorf("AuthorizeURL carries the client secret: %s", got)
	}

	got = c.OAuth.AuthorizeURL("", "", nil)
	want = DefaultMarketplaceURL + "/v2/oauth/chooselocation?response_type=code" +
		"&redirect_uri=https%3A%2F%2Fapp.example%2Fapi%2Fauth%2Fcallback&client_id=client-id-1&scope="
	if got != want {
		t.Errorf("AuthorizeURL with defaults =\n%s\nwant\n%s", got, want)
	}
}

func TestExchangeCode(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testHeader(t, r, "Accept", "application/json")
		testHeader(t, r, "Version", "")
		testHeader(t, r, "Authorization", "")
		testForm(t, r, url.Values{
			"client_id":     {testClientID},
			"client_secret": {testClientSecret},
			"grant_type":    {"authorization_code"},
			"code":          {testCode},
			"user_type":     {"Location"},
			"redirect_uri":  {testRedirectURI},
		})
		writeJSON(w, http.StatusOK, tokenBody)
	})

	tok, resp, err := c.OAuth.ExchangeCode(t.Context(), testCode, UserTypeLocation)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantToken, tok); diff != "" {
		t.Errorf("Token mismatch (-want +got):\n%s", diff)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("StatusCode = %d, want 200", resp.StatusCode)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		userType string
		want     url.Values
	}{
		{UserTypeCompany, url.Values{
			"client_id":     {testClientID},
			"client_secret": {testClientSecret},
			"grant_type":    {"refresh_token"},
			"refresh_token": {testRefreshToken},
			"user_type":     {"Company"},
			"redirect_uri":  {testRedirectURI},
		}},
		{"", url.Values{ // GHL's default user type: no user_type
			"client_id":     {testClientID},
			"client_secret": {testClientSecret},
			"grant_type":    {"refresh_token"},
			"refresh_token": {testRefreshToken},
			"redirect_uri":  {testRedirectURI},
		}},
	} {
		t.Run(tc.userType, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, http.MethodPost)
				testHeader(t, r, "Accept", "application/json")
				testHeader(t, r, "Version", "")
				testHeader(t, r, "Authorization", "")
				testForm(t, r, tc.want)
				writeJSON(w, http.StatusOK, tokenBody)
			})
			tok, _, err := c.OAuth.Refresh(t.Context(), testRefreshToken, tc.userType)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantToken, tok); diff != "" {
				t.Errorf("Token mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]observation{{"oauth.token", 200}}, b.observations()); diff != "" {
				t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocationToken(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/oauth/locationToken", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		testForm(t, r, url.Values{"companyId": {"co-1"}, "locationId": {"loc-1"}})
		writeJSON(w, http.StatusCreated, tokenBody)
	})
	tok, resp, err := c.OAuth.LocationToken(t.Context(), testAccessToken, "co-1", "loc-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantToken, tok); diff != "" {
		t.Errorf("Token mismatch (-want +got):\n%s", diff)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("StatusCode = %d, want 201", resp.StatusCode)
	}
	if diff := cmp.Diff([]observation{{"oauth.locationToken", 201}}, b.observations()); diff != "" {
		t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
	}
}

// TestRefresh_Errors goes through the client for each error a refresh can
// meet, checking the kind, the fields and the whole error string.
func TestRefresh_Errors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		kind    error
		errText string
		temp    bool
	}{
		{
			name: "invalid grant", status: 400,
			body:    `{"statusCode":400,"message":"Invalid grant: refresh token is invalid"}`,
			kind:    ErrInvalidGrant,
			errText: "ghl: POST /oauth/token: 400 Bad Request: Invalid grant: refresh token is invalid",
		},
		{
			name: "invalid grant RFC", status: 400,
			body:    `{"error":"invalid_grant","error_description":"refresh token already used"}`,
			kind:    ErrInvalidGrant,
			errText: "ghl: POST /oauth/token: 400 Bad Request: refresh token already used",
		},
		{
			name: "location inactive", status: 400,
			body:    `{"statusCode":400,"message":"Location is not active"}`,
			kind:    ErrLocationInactive,
			errText: "ghl: POST /oauth/token: 400 Bad Request: Location is not active",
		},
		{
			name: "bad client", status: 401,
			body:    `{"error":"invalid_client"}`,
			errText: "ghl: POST /oauth/token: 401 Unauthorized: invalid_client",
		},
		{
			name: "server error", status: 503,
			body:    `{"statusCode":503,"message":"Service Unavailable"}`,
			errText: "ghl: POST /oauth/token: 503 Service Unavailable: Service Unavailable",
			temp:    true,
		},
		{
			name: "rate limited", status: 429, header: map[string]string{"Retry-After": "2"},
			body:    `{"statusCode":429,"message":"Too Many Requests"}`,
			errText: "ghl: POST /oauth/token: 429 Too Many Requests: Too Many Requests (retry after 2s)",
			temp:    true,
		},
		{
			name: "no access token", status: 200,
			body:    `{"token_type":"Bearer"}`,
			errText: "ghl: POST /oauth/token: response has no access_token",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tc.status, tc.body)
			})
			tok, resp, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation)
			if err == nil {
				t.Fatalf("Refresh = %v, want an error", tok)
			}
			if got := err.Error(); got != tc.errText {
				t.Errorf("error = %q, want %q", got, tc.errText)
			}
			for _, kind := range []error{ErrInvalidGrant, ErrLocationInactive, ErrUnauthorized} {
				if got, want := errors.Is(err, kind), kind == tc.kind; got != want {
					t.Errorf("errors.Is(err, %v) = %t, want %t", kind, got, want)
				}
			}
			if got := Temporary(err); got != tc.temp {
				t.Errorf("Temporary = %t, want %t", got, tc.temp)
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Errorf("Response = %+v, want status %d", resp, tc.status)
			}
			var er *ErrorResponse
			if errors.As(err, &er) && er.Endpoint != "oauth.token" {
				t.Errorf("Endpoint = %q, want oauth.token", er.Endpoint)
			}
			if diff := cmp.Diff([]observation{{"oauth.token", tc.status}}, b.observations()); diff != "" {
				t.Errorf("OnResponse calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocationToken_Unauthorized(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("POST /oauth/locationToken", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusUnauthorized, `{"statusCode":401,"message":"Invalid JWT"}`)
	})
	_, _, err := c.OAuth.LocationToken(t.Context(), testAccessToken, "co-1", "loc-1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error = %v, want ErrUnauthorized", err)
	}
}

// apiRoots cover every endpoint, below setup's catch-all.
var apiRoots = []string{"/oauth/", "/contacts/", "/calendars/"}

// echoHandler answers every request with an error whose message is the
// whole request: method, URL, headers and body, as a careless server might.
func echoHandler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var dump bytes.Buffer
		fmt.Fprintf(&dump, "%s %s\n", r.Method, r.URL)
		r.Header.Write(&dump)
		io.Copy(&dump, r.Body)
		msg, _ := json.Marshal(dump.String())
		writeJSON(w, status, fmt.Sprintf(`{"statusCode":%d,"message":[%s, %s]}`, status, msg, msg))
	}
}

// TestSecretsNeverInErrors checks the guarantee the package makes: the
// error of a call never contains the client secret, nor the token, refresh
// token or code sent with it, verbatim or form-encoded, even when GHL echoes
// the whole request, and whatever the status.
func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	secrets := []string{testClientSecret, testAccessToken, testRefreshToken, testCode, "S3cr3t", "Acc3ss", "R3fr3sh", "C0de"}
	calls := map[string]func(*Client) error{
		"ExchangeCode": func(c *Client) error {
			_, _, err := c.OAuth.ExchangeCode(t.Context(), testCode, UserTypeLocation)
			return err
		},
		"Refresh": func(c *Client) error {
			_, _, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation)
			return err
		},
		"LocationToken": func(c *Client) error {
			_, _, err := c.OAuth.LocationToken(t.Context(), testAccessToken, "co", "loc")
			return err
		},
		"Upsert": func(c *Client) error {
			_, _, _, err := c.Contacts.Upsert(t.Context(), testAccessToken, &Contact{LocationID: "loc"})
			return err
		},
		"GetAppointment": func(c *Client) error {
			_, _, err := c.Calendars.GetAppointment(t.Context(), testAccessToken, "e")
			return err
		},
	}
	for _, status := range []int{400, 401, 422, 429, 500} {
		for name, call := range calls {
			t.Run(fmt.Sprint(name, status), func(t *testing.T) {
				t.Parallel()
				c, b := setup(t)
				for _, p := range apiRoots {
					b.mux.HandleFunc(p, echoHandler(status))
				}
				err := call(c)
				if err == nil {
					t.Fatal("nil error, want one")
				}
				msg := err.Error()
				if !strings.Contains(msg, "[redacted]") {
					t.Errorf("error %q shows no sign of the echo being redacted", msg)
				}
				for _, s := range secrets {
					if strings.Contains(msg, s) || strings.Contains(msg, url.QueryEscape(s)) {
						t.Errorf("error contains %q: %s", s, msg)
					}
				}
			})
		}
	}

	// Transport errors: a call that times out on a server that never
	// answers.
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c, b := setup(t, func(cfg *Config) { cfg.Timeout = 20 * time.Millisecond })
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		for _, p := range apiRoots {
			b.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
		}
		for name, call := range calls {
			err := call(c)
			if !Temporary(err) {
				t.Errorf("%s: error %v, want a temporary one", name, err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), url.QueryEscape(s)) {
					t.Errorf("%s: error contains %q: %s", name, s, err)
				}
			}
		}
	})
}

func TestToken_MasksTokens(t *testing.T) {
	t.Parallel()
	tok := *wantToken
	js, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("token", "token", tok, "ptr", &tok)
	outputs := map[string]string{
		"String": tok.String(),
		"%v":     fmt.Sprintf("%v", tok),
		"%+v":    fmt.Sprintf("%+v", &tok),
		"%#v":    fmt.Sprintf("%#v", tok),
		"%s":     fmt.Sprintf("%s", &tok),
		"json":   string(js),
		"slog":   logged.String(),
	}
	for name, out := range outputs {
		for _, secret := range []string{"new-access", "new-refresh", "1234", "5678"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows %q: %s", name, secret, out)
			}
		}
	}
	if !strings.Contains(logged.String(), "loc-1") || !strings.Contains(tok.String(), "loc-1") {
		t.Errorf("String and LogValue lose the location id: %s %s", tok, logged.String())
	}
	want := `ghl.Token{AccessToken:"[redacted]" RefreshToken:"[redacted]" TokenType:"Bearer" ` +
		`Expiry:2025-03-02T11:59:59Z Scope:"contacts.readonly contacts.write" UserType:"Location" ` +
		`LocationID:"loc-1" CompanyID:"co-1" UserID:"user-1"}`
	if got := tok.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}
