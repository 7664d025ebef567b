package ghl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// httpResponse builds a response to a request with or without a bearer
// token.
func httpResponse(status int, header http.Header, body string, bearer bool) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, "https://example.com/api/oauth/token", nil)
	if bearer {
		req.Header.Set("Authorization", "Bearer "+testAccessToken)
	}
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}
}

// errValue dereferences our error types, so that cmp compares their fields
// (the kind with errors.Is) rather than the pointers.
func errValue(err error) any {
	switch e := err.(type) {
	case *ErrorResponse:
		return *e
	case *RateLimitError:
		return *e
	}
	return err
}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	const ep = "test.endpoint"
	rate := http.Header{
		"X-Ratelimit-Max":                   {"100"},
		"X-Ratelimit-Remaining":             {"0"},
		"X-Ratelimit-Interval-Milliseconds": {"7000"},
	}
	withRetry := func(v string) http.Header {
		h := rate.Clone()
		h.Set("Retry-After", v)
		return h
	}
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		bearer bool
		want   error
	}{
		{name: "200", status: 200, body: `{}`},
		{name: "204", status: 204},
		{
			name: "invalid grant, GHL shape", status: 400,
			body: `{"statusCode":400,"message":"Invalid grant: refresh token is invalid"}`,
			want: &ErrorResponse{400, "Invalid grant: refresh token is invalid", ep, ErrInvalidGrant},
		},
		{
			name: "invalid grant, RFC shape", status: 400,
			body: `{"error":"invalid_grant","error_description":"Refresh token has been revoked"}`,
			want: &ErrorResponse{400, "Refresh token has been revoked", ep, ErrInvalidGrant},
		},
		{
			name: "invalid grant, RFC shape without description", status: 400,
			body: `{"error":"invalid_grant"}`,
			want: &ErrorResponse{400, "invalid_grant", ep, ErrInvalidGrant},
		},
		{
			name: "invalid grant, 401", status: 401,
			body: `{"statusCode":401,"message":"INVALID GRANT"}`,
			want: &ErrorResponse{401, "INVALID GRANT", ep, ErrInvalidGrant},
		},
		{
			name: "invalid grant text on a 403 is no invalid grant", status: 403,
			body: `{"statusCode":403,"message":"Invalid grant"}`, bearer: true,
			want: &ErrorResponse{403, "Invalid grant", ep, nil},
		},
		{
			name: "location inactive", status: 400,
			body: `{"statusCode":400,"message":"Location is not active"}`,
			want: &ErrorResponse{400, "Location is not active", ep, ErrLocationInactive},
		},
		{
			name: "401 on an API call", status: 401, bearer: true,
			body: `{"statusCode":401,"message":"Invalid JWT"}`,
			want: &ErrorResponse{401, "Invalid JWT", ep, ErrUnauthorized},
		},
		{
			name: "401 on the token endpoint", status: 401,
			body: `{"error":"invalid_client","error_description":"Client authentication failed"}`,
			want: &ErrorResponse{401, "Client authentication failed", ep, ErrInvalidClient},
		},
		{
			name: "invalid client, GHL shape", status: 401,
			body: `{"statusCode":401,"message":"Invalid client credentials"}`,
			want: &ErrorResponse{401, "Invalid client credentials", ep, ErrInvalidClient},
		},
		{
			name: "invalid client on a 400", status: 400,
			body: `{"error":"invalid_client"}`,
			want: &ErrorResponse{400, "invalid_client", ep, ErrInvalidClient},
		},
		{
			name: "redirect URI refused, GHL shape", status: 400,
			body: `{"statusCode":400,"message":"Invalid parameter: redirect_uri"}`,
			want: &ErrorResponse{400, "Invalid parameter: redirect_uri", ep, ErrRedirectMismatch},
		},
		{
			name: "redirect URI refused, RFC shape", status: 400,
			body: `{"error":"invalid_request","error_description":"Redirect URI mismatch"}`,
			want: &ErrorResponse{400, "Redirect URI mismatch", ep, ErrRedirectMismatch},
		},
		{
			name: "other 400", status: 400,
			body: `{"statusCode":400,"message":"Missing parameter: user_type"}`,
			want: &ErrorResponse{400, "Missing parameter: user_type", ep, nil},
		},
		{
			name: "422 message array", status: 422, bearer: true,
			body: `{"statusCode":422,"message":["email must be an email","phone must be a valid phone number"],"error":"Unprocessable Entity"}`,
			want: &ErrorResponse{422, "email must be an email; phone must be a valid phone number", ep, nil},
		},
		{
			name: "500", status: 500, bearer: true,
			body: `{"statusCode":500,"message":"Internal server error"}`,
			want: &ErrorResponse{500, "Internal server error", ep, nil},
		},
		{
			name: "502 plain text", status: 502, bearer: true,
			body: "<html>\n  Bad   gateway\n</html>",
			want: &ErrorResponse{502, "<html> Bad gateway </html>", ep, nil},
		},
		{
			name: "404 empty body", status: 404, bearer: true,
			want: &ErrorResponse{404, "", ep, ErrNotFound},
		},
		{
			// GHL's answer for a contact it does not have: no 404.
			name: "400 contact not found", status: 400, bearer: true,
			body: `{"statusCode":400,"message":"Contact with id AAAAAAAAAAAAAAAAAAAA not found"}`,
			want: &ErrorResponse{400, "Contact with id AAAAAAAAAAAAAAAAAAAA not found", ep, ErrNotFound},
		},
		{
			name: "422 saying not found is the record's refusal", status: 422, bearer: true,
			body: `{"statusCode":422,"message":["calendar not found"]}`,
			want: &ErrorResponse{422, "calendar not found", ep, nil},
		},
		{
			name: "429 Retry-After seconds", status: 429, header: withRetry("3"),
			body: `{"statusCode":429,"message":"Too many requests"}`,
			want: &RateLimitError{3 * time.Second, Rate{Max: 100, Interval: 7 * time.Second}, "Too many requests"},
		},
		{
			name: "429 Retry-After date", status: 429, header: withRetry(testNow.Add(90 * time.Second).Format(http.TimeFormat)),
			want: &RateLimitError{90 * time.Second, Rate{Max: 100, Interval: 7 * time.Second}, ""},
		},
		{
			name: "429 Retry-After date in the past", status: 429, header: withRetry(testNow.Add(-time.Hour).Format(http.TimeFormat)),
			want: &RateLimitError{0, Rate{Max: 100, Interval: 7 * time.Second}, ""},
		},
		{
			name: "429 Retry-After huge", status: 429, header: withRetry("99999999999999"),
			want: &RateLimitError{24 * time.Hour, Rate{Max: 100, Interval: 7 * time.Second}, ""},
		},
		{
			name: "429 Retry-After garbage, interval header", status: 429, header: withRetry("soon"),
			want: &RateLimitError{7 * time.Second, Rate{Max: 100, Interval: 7 * time.Second}, ""},
		},
		{
			name: "429 no Retry-After, interval header", status: 429, header: rate,
			want: &RateLimitError{7 * time.Second, Rate{Max: 100, Interval: 7 * time.Second}, ""},
		},
		{
			name: "429 no headers", status: 429,
			want: &RateLimitError{10 * time.Second, Rate{}, ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := checkResponse(httpResponse(tc.status, tc.header, tc.body, tc.bearer), ep, testNow, nil)
			if diff := cmp.Diff(errValue(tc.want), errValue(got), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("checkResponse mismatch (-want +got):\n%s", diff)
			}
			// The kind must be visible to errors.Is through the wrapping
			// the Client adds.
			wrapped := fmt.Errorf("ghl: POST /x: %w", got)
			var er *ErrorResponse
			if errors.As(tc.want, &er) && er.Err != nil && !errors.Is(wrapped, er.Err) {
				t.Errorf("errors.Is(%v, %v) = false", wrapped, er.Err)
			}
		})
	}
}

func TestCheckResponse_Exported(t *testing.T) {
	t.Parallel()
	r := httpResponse(401, nil, `{"message":"token `+testAccessToken+` is expired"}`, true)
	err := CheckResponse(r)
	want := &ErrorResponse{401, "token [redacted] is expired", "POST /api/oauth/token", ErrUnauthorized}
	if diff := cmp.Diff(errValue(want), errValue(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("CheckResponse mismatch (-want +got):\n%s", diff)
	}

	// No request: a 401 is taken for an API call.
	r = &http.Response{StatusCode: 401, Body: io.NopCloser(strings.NewReader(""))}
	if err := CheckResponse(r); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("CheckResponse without request = %v, want ErrUnauthorized", err)
	}
}

// TestCheckResponse_BodyLimit checks that a huge error body is read only up
// to the limit.
func TestCheckResponse_BodyLimit(t *testing.T) {
	t.Parallel()
	body := &countingReader{r: strings.NewReader(strings.Repeat("x", 10*maxErrorBodySize))}
	r := &http.Response{StatusCode: 500, Header: http.Header{}, Body: io.NopCloser(body)}
	err := CheckResponse(r)
	if !IsServerError(err) {
		t.Fatalf("CheckResponse = %v, want a server error", err)
	}
	if body.n > maxErrorBodySize {
		t.Errorf("read %d bytes of the body, want at most %d", body.n, maxErrorBodySize)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestCleanMessage(t *testing.T) {
	t.Parallel()
	secret := testClientSecret
	for _, tc := range []struct {
		name, in string
		secrets  []string
		want     string
	}{
		{"plain", "Bad thing", nil, "Bad thing"},
		{"control and space", "a\r\n\tb\x00c  d", nil, "a b c d"},
		{"invalid utf-8", "a\xffb", nil, "a\uFFFDb"},
		{"verbatim secret", "got client_secret " + secret, []string{secret}, "got client_secret [redacted]"},
		{"form-encoded secret", "body client_secret=" + url.QueryEscape(secret) + "&x=1", []string{secret}, "body client_secret=[redacted]&x=1"},
		{"empty secret ignored", "abc", []string{""}, "abc"},
		{"long", strings.Repeat("a", maxMessageLen+10), nil, strings.Repeat("a", maxMessageLen) + "…"},
		{"long multibyte", "a" + strings.Repeat("é", maxMessageLen), nil, "a" + strings.Repeat("é", (maxMessageLen-1)/2) + "…"},
		{
			// Redacting before cutting: a secret across the cut leaves no
			// prefix of itself.
			"secret across the cut", strings.Repeat("a", maxMessageLen-4) + secret, []string{secret},
			strings.Repeat("a", maxMessageLen-4) + "[red…",
		},
	} {
		if got := cleanMessage(tc.in, tc.secrets); got != tc.want {
			t.Errorf("%s: cleanMessage = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestErrorStrings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&ErrorResponse{StatusCode: 400, Message: "Location is not active", Err: ErrLocationInactive}, "400 Bad Request: Location is not active"},
		{&ErrorResponse{StatusCode: 599}, "599"},
		{&RateLimitError{RetryAfter: 3 * time.Second, Message: "slow down"}, "429 Too Many Requests: slow down (retry after 3s)"},
		{&RateLimitError{RetryAfter: 10 * time.Second}, "429 Too Many Requests (retry after 10s)"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestTemporary(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("ghl: GET /x: %w", err) }
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	var syntaxErr error = json.Unmarshal([]byte("{"), new(any))
	for _, tc := range []struct {
		name       string
		err        error
		temp, serv bool
	}{
		{"nil", nil, false, false},
		{"500", wrap(&ErrorResponse{StatusCode: 500}), true, true},
		{"503", wrap(&ErrorResponse{StatusCode: 503}), true, true},
		{"408", wrap(&ErrorResponse{StatusCode: 408}), true, false},
		{"400", wrap(&ErrorResponse{StatusCode: 400}), false, false},
		{"422", wrap(&ErrorResponse{StatusCode: 422}), false, false},
		{"invalid grant", wrap(&ErrorResponse{StatusCode: 400, Err: ErrInvalidGrant}), false, false},
		{"location inactive", wrap(&ErrorResponse{StatusCode: 400, Err: ErrLocationInactive}), false, false},
		{"unauthorized", wrap(&ErrorResponse{StatusCode: 401, Err: ErrUnauthorized}), false, false},
		{"429", wrap(&RateLimitError{}), true, false},
		{"deadline", wrap(context.DeadlineExceeded), true, false},
		{"canceled", wrap(context.Canceled), false, false},
		{"net timeout", wrap(timeoutError{}), true, false},
		{"EOF", wrap(io.EOF), true, false},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), true, false},
		{"reset", wrap(opErr(syscall.ECONNRESET)), true, false},
		{"refused", wrap(opErr(syscall.ECONNREFUSED)), true, false},
		{"broken pipe", wrap(opErr(syscall.EPIPE)), true, false},
		{"dns temporary", wrap(&net.DNSError{Err: "server misbehaving", IsTemporary: true}), true, false},
		{"dns not found", wrap(&net.DNSError{Err: "no such host", IsNotFound: true}), false, false},
		{"json syntax", wrap(syntaxErr), false, false},
		{"other", errors.New("boom"), false, false},
	} {
		if got := Temporary(tc.err); got != tc.temp {
			t.Errorf("%s: Temporary(%v) = %t, want %t", tc.name, tc.err, got, tc.temp)
		}
		if got := IsServerError(tc.err); got != tc.serv {
			t.Errorf("%s: IsServerError(%v) = %t, want %t", tc.name, tc.err, got, tc.serv)
		}
	}
}

// The duplicate-contact 400 keeps GHL's meta, reachable with errors.As;
// a 400 without meta, or with a meta that is not an id, is a plain 400.
func TestCheckResponse_DuplicateContact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want *DuplicateContactError
	}{
		{"GHL's answer", `{"statusCode":400,"message":"This location does not allow duplicated contacts.","meta":{"contactId":"c-holder","matchingField":"email"}}`,
			&DuplicateContactError{ContactID: "c-holder", MatchingField: "email"}},
		{"no meta", `{"statusCode":400,"message":"This location does not allow duplicated contacts."}`, nil},
		{"meta of another type", `{"statusCode":400,"message":"x","meta":{"contactId":7}}`, nil},
		{"control character in the id", `{"statusCode":400,"message":"x","meta":{"contactId":"a\nb"}}`, nil},
	} {
		err := fmt.Errorf("ghl: PUT /contacts/c1: %w", checkResponse(httpResponse(400, nil, tc.body, true), "contacts.update", time.Now(), nil))
		var dup *DuplicateContactError
		got := errors.As(err, &dup)
		if got != (tc.want != nil) || got && *dup != *tc.want {
			t.Errorf("%s: errors.As = %t, %+v; want %+v", tc.name, got, dup, tc.want)
		}
		if !IsRefused(err) || IsNotFound(err) {
			t.Errorf("%s: IsRefused %t, IsNotFound %t; want a refusal", tc.name, IsRefused(err), IsNotFound(err))
		}
	}
}
