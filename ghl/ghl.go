// Package ghl is a client for the GoHighLevel (LeadConnector) API v2: OAuth
// (code exchange, refresh, location tokens), contacts and calendars.
//
// Every call has the shape
//
//	func (s *XxxService) Call(ctx, ...) (*T, *Response, error)
//
// Non-2xx answers become typed errors (see [CheckResponse]); callers branch
// with errors.Is and errors.As, never on error text. Access tokens are passed
// per call because GHL issues one per location: the Client holds no token.
//
// Secrets stay out of errors. Errors name the call ("ghl: POST /oauth/token:
// …") and never carry the URL, the request body or headers. GHL's own message
// is kept, but the client secret and the token, refresh token or code sent
// with the call are redacted from it, verbatim or form-encoded, should GHL
// echo them (a transformed or partial echo is beyond this). Config, Client
// and Token mask secrets when printed or logged.
package ghl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ghlsync/ghlsync/internal/clock"
)

const (
	// DefaultBaseURL is GHL's API host, also the host of the token endpoint.
	DefaultBaseURL = "https://services.leadconnectorhq.com"
	// DefaultTimeout bounds each call when Config.Timeout is zero.
	DefaultTimeout = 30 * time.Second

	// API versions GHL expects in the Version header, per API area.
	versionContacts  = "2021-07-28" // contacts and /oauth/locationToken
	versionCalendars = "2021-04-15"

	userAgent = "ghlsync-ghl"

	// maxBodySize bounds a successful response body; a larger one is an error
	// rather than unbounded memory.
	maxBodySize = 8 << 20
)

// Config configures a Client. The zero value of every field but the OAuth
// credentials is usable.
//
// Config masks ClientSecret in String, GoString and LogValue, so it may be
// printed or logged as a whole.
type Config struct {
	// BaseURL is the API root, DefaultBaseURL when empty. It may carry a path
	// prefix; it must not carry credentials, a query or a fragment.
	BaseURL string

	// ClientID, ClientSecret and RedirectURI are the marketplace app's OAuth
	// credentials, needed by OAuth.ExchangeCode, OAuth.Refresh and
	// OAuth.AuthorizeURL only.
	ClientID     string
	ClientSecret string `json:"-"`
	RedirectURI  string

	// AppVersionID, when set, is sent as version_id on the consent page
	// (OAuth.AuthorizeURL): GHL needs it while the app's version is a
	// draft. LoginWindowOpenMode, when set (GHL knows "self"), is sent as
	// loginWindowOpenMode: "self" keeps GHL's login in the same window.
	AppVersionID        string
	LoginWindowOpenMode string

	// HTTPClient sends the requests. When nil, the Client uses one with
	// Timeout that does not follow redirects, so a redirect can never replay
	// a form that carries the client secret to another host.
	HTTPClient *http.Client

	// Timeout bounds each call, reading the response included. DefaultTimeout
	// when zero.
	Timeout time.Duration

	// Clock tells the time; the real clock when nil. Token expiry and
	// Retry-After dates are computed with it.
	Clock clock.Clock

	// OnResponse, when set, is called once per HTTP request, after the
	// response has been read, with a stable low-cardinality endpoint name,
	// the HTTP status (0 when no response arrived) and the time taken. The
	// names are oauth.token, oauth.locationToken, contacts.upsert,
	// contacts.create, contacts.get, contacts.update, contacts.search,
	// contacts.searchDuplicate, contacts.addTags, contacts.removeTags,
	// locations.customFields, locations.createCustomField,
	// contacts.appointments, oauth.installedLocations, calendars.list,
	// calendars.get, calendars.events, calendars.createAppointment,
	// calendars.updateAppointment, calendars.getAppointment,
	// calendars.deleteEvent, locations.get and users.list. It must be safe
	// for concurrent use and return quickly: it runs on the caller's
	// goroutine.
	OnResponse func(endpoint string, status int, elapsed time.Duration)

	// TracerProvider, when set, traces each HTTP request with a client
	// span: method, path template, endpoint name, status and the rate
	// limiter's wait (see WithRateLimitWait), never the path, query, body
	// or headers.
	TracerProvider trace.TracerProvider
}

// String describes the config with ClientSecret masked.
func (c Config) String() string {
	return fmt.Sprintf("ghl.Config{BaseURL:%q ClientID:%q ClientSecret:%q RedirectURI:%q Timeout:%s}",
		c.BaseURL, c.ClientID, mask(c.ClientSecret), c.RedirectURI, c.Timeout)
}

// GoString is String, so that %#v masks ClientSecret too.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with ClientSecret masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", mask(c.ClientSecret)),
		slog.String("redirect_uri", c.RedirectURI),
		slog.Duration("timeout", c.Timeout),
	)
}

// mask hides a secret but still tells whether it is set.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// Client talks to the GHL API. It is safe for concurrent use.
type Client struct {
	OAuth     *OAuthService
	Contacts  *ContactsService
	Calendars *CalendarsService
	Locations *LocationsService
	Users     *UsersService

	cfg     Config
	baseURL string // without trailing slash
	http    *http.Client
	clock   clock.Clock
	timeout time.Duration
	tracing tracing
}

// NewClient returns a Client for cfg. It fails when BaseURL is not an
// absolute http(s) URL without credentials, query or fragment, or when
// Timeout is negative.
func NewClient(cfg Config) (*Client, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("ghl: negative Timeout %s", cfg.Timeout)
	}
	c := &Client{cfg: cfg, baseURL: base, http: cfg.HTTPClient, clock: clock.Or(cfg.Clock), timeout: cfg.Timeout,
		tracing: newTracing(cfg.TracerProvider, base)}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.http == nil {
		// Every call goes to one host: keep as many idle connections to it
		// as workers make calls at once (Go's default keeps 2, so a busy
		// worker would dial, and shake hands, for most calls).
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.MaxIdleConnsPerHost = 256
		transport.MaxIdleConns = 256
		c.http = &http.Client{
			Transport: transport,
			Timeout:   c.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	c.OAuth = &OAuthService{client: c}
	c.Contacts = &ContactsService{client: c}
	c.Calendars = &CalendarsService{client: c}
	c.Locations = &LocationsService{client: c}
	c.Users = &UsersService{client: c}
	return c, nil
}

func parseBaseURL(raw string) (string, error) {
	if raw == "" {
		return DefaultBaseURL, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's errors quote parts of their input, which may hold
		// credentials.
		return "", errors.New("ghl: invalid BaseURL: not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("ghl: invalid BaseURL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return "", fmt.Errorf("ghl: invalid BaseURL %q: no host", u.Redacted())
	case u.User != nil:
		return "", fmt.Errorf("ghl: invalid BaseURL %q: must not carry credentials", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("ghl: invalid BaseURL %q: must not carry a query or fragment", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// String describes the client with the client secret masked.
func (c *Client) String() string {
	return fmt.Sprintf("ghl.Client{BaseURL:%q ClientID:%q Timeout:%s}", c.baseURL, c.cfg.ClientID, c.timeout)
}

// GoString is String, so that %#v does not print the config's secret.
func (c *Client) GoString() string { return c.String() }

// Response carries what every GHL response says besides its body.
type Response struct {
	StatusCode int
	Rate       Rate
}

// Rate is GHL's rate-limit state from the X-RateLimit-* headers of one
// response. A missing or malformed header leaves its field zero.
type Rate struct {
	Max       int           // X-RateLimit-Max: requests allowed per Interval
	Remaining int           // X-RateLimit-Remaining in the current interval
	Interval  time.Duration // X-RateLimit-Interval-Milliseconds
	// DailyLimit and DailyRemaining come from X-RateLimit-Limit-Daily and
	// X-RateLimit-Daily-Remaining.
	DailyLimit     int
	DailyRemaining int
}

func newResponse(r *http.Response) *Response {
	return &Response{StatusCode: r.StatusCode, Rate: parseRate(r.Header)}
}

// request describes one API call for Client.do.
type request struct {
	endpoint string // stable name for OnResponse and ErrorResponse.Endpoint
	method   string
	path     string // below BaseURL, path segments already escaped
	query    url.Values
	version  string // Version header; none when empty
	token    string // bearer token; none when empty
	form     url.Values
	json     any // request body when form is nil; none when nil too
}

// op names the call in errors. It leaves out the query, which may carry
// personal data such as an email address.
func (r *request) op() string { return r.method + " " + r.path }

// sensitiveFormKeys are the form fields scrubbed from error messages.
var sensitiveFormKeys = []string{"client_secret", "refresh_token", "code"}

// do sends r and decodes a 2xx JSON body into v (when v is not nil). The
// Response is nil only when no HTTP response arrived. Errors are prefixed
// with "ghl: METHOD /path: " and never carry the URL, the request body or a
// secret sent with the call.
func (c *Client) do(ctx context.Context, r *request, v any) (*Response, error) {
	resp, err := c.roundTrip(ctx, r, v)
	if err != nil {
		return resp, fmt.Errorf("ghl: %s: %w", r.op(), err)
	}
	return resp, nil
}

func (c *Client) roundTrip(ctx context.Context, r *request, v any) (resp *Response, err error) {
	ctx, span := c.startSpan(ctx, r)
	defer func() { endSpan(span, resp, err) }()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	req, err := c.newRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	hr, err := c.http.Do(req)
	if err != nil {
		c.observe(r.endpoint, 0, start)
		// The *url.Error repeats the URL, query included; the op already
		// names the call. Its cause (timeout, reset, EOF, ...) is kept.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, err
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(hr.Body, maxErrorBodySize))
		hr.Body.Close()
	}()
	resp = newResponse(hr)

	if err := checkResponse(hr, r.endpoint, c.clock.Now(), c.secrets(r)); err != nil {
		c.observe(r.endpoint, hr.StatusCode, start)
		return resp, err
	}
	if v != nil {
		err = json.NewDecoder(io.LimitReader(hr.Body, maxBodySize)).Decode(v)
	}
	c.observe(r.endpoint, hr.StatusCode, start)
	if err != nil {
		return resp, fmt.Errorf("decoding response: %w", err)
	}
	return resp, nil
}

func (c *Client) newRequest(ctx context.Context, r *request) (*http.Request, error) {
	u := c.baseURL + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	var contentType string
	switch {
	case r.form != nil:
		body = strings.NewReader(r.form.Encode())
		contentType = "application/x-www-form-urlencoded"
	case r.json != nil:
		b, err := json.Marshal(r.json)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.version != "" {
		req.Header.Set("Version", r.version)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	return req, nil
}

// secrets lists the values sent with r that must not come back in an error
// message, should GHL echo them.
func (c *Client) secrets(r *request) []string {
	s := []string{c.cfg.ClientSecret, r.token}
	for _, k := range sensitiveFormKeys {
		s = append(s, r.form.Get(k))
	}
	return s
}

func (c *Client) observe(endpoint string, status int, start time.Time) {
	if c.cfg.OnResponse != nil {
		c.cfg.OnResponse(endpoint, status, time.Since(start))
	}
}

// require fails the call before it is sent when an argument is empty; args
// are name, value pairs. The error names the argument, never its value.
func (r *request) require(args ...string) error {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i+1] == "" {
			return r.errorf("%s is required", args[i])
		}
	}
	return nil
}

// errorf returns an error about the call r, prefixed like the errors of do.
func (r *request) errorf(format string, args ...any) error {
	return fmt.Errorf("ghl: %s: %s", r.op(), fmt.Sprintf(format, args...))
}
