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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// maxErrorBodySize bounds how much of an error body is read.
	maxErrorBodySize = 64 << 10
	// maxMessageLen bounds ErrorResponse.Message and RateLimitError.Message,
	// in bytes.
	maxMessageLen = 512
	// defaultRetryAfter is the wait after a 429 that says nothing of when to
	// come back: GHL's burst window.
	defaultRetryAfter = 10 * time.Second
	// maxRetryAfter caps what a Retry-After header can ask for: a day, the
	// longest of GHL's windows.
	maxRetryAfter = 24 * time.Hour

	redacted = "[redacted]"
)

// Kinds of GHL error, matched with errors.Is. They come wrapped in an
// *ErrorResponse, which holds GHL's status and message.
var (
	// ErrInvalidGrant: GHL rejected the refresh token (or code) for good: it
	// was used already, revoked, or the app was uninstalled. Permanent: the
	// location must be connected again; retrying cannot help.
	ErrInvalidGrant = errors.New("ghl: invalid grant")

	// ErrLocationInactive: the location is deactivated. Not permanent: the
	// same refresh token works again once the location is reactivated, so
	// keep it and try again later (hours, not seconds).
	ErrLocationInactive = errors.New("ghl: location is not active")

	// ErrUnauthorized: an API call's bearer token was rejected (expired or
	// invalid). Refresh the token and call again. A 401 from the token
	// endpoint, which takes no bearer token, is not this, nor are the 401s
	// of ErrScopeDenied and ErrUserMissing, which no refresh can cure.
	ErrUnauthorized = errors.New("ghl: unauthorized")

	// ErrInvalidClient: the token endpoint refused the app's credentials
	// (a 401 there, or RFC 6749's invalid_client): the client id or secret
	// is wrong. Configuration, not a token: nothing was spent.
	ErrInvalidClient = errors.New("ghl: invalid client credentials")

	// ErrRedirectMismatch: the token endpoint refused the redirect URI,
	// which must be the one the consent was asked with and one the app
	// has registered.
	ErrRedirectMismatch = errors.New("ghl: redirect URI refused")

	// ErrScopeDenied: GHL's 401 "The token is not authorized for this
	// scope.": the token is valid but was not granted the scope the call
	// needs (MissingScope names it). A refresh keeps the token's scopes, so
	// only connecting the location again, with the scope added to the app,
	// helps.
	ErrScopeDenied = errors.New("ghl: the token is not authorized for this scope")

	// ErrUserMissing: GHL's 401 "The user does not exist.", its answer
	// for a user the call names that was deleted or never existed (GET
	// /users/{id}, GHL issue #205): a missing record, not a token problem,
	// so a refresh cannot help.
	ErrUserMissing = errors.New("ghl: the user does not exist")

	// ErrNotFound: GHL says the record does not exist. GHL documents no 404
	// for contacts and events and answers an unknown one with 400 "Contact
	// with id … not found", so a 404 or a 400 whose message says "not
	// found" is this.
	ErrNotFound = errors.New("ghl: not found")
)

// DuplicateContactError is GHL's 400 "This location does not allow
// duplicated contacts.": the email or phone of a create or update is
// another contact's. It is the Err of the *ErrorResponse, so
// errors.As(err, &dup) finds it.
type DuplicateContactError struct {
	// ContactID is the contact that holds the value (GHL's meta.contactId).
	ContactID string
	// MatchingField is the field that matched: "email" or "phone".
	MatchingField string
}

func (e *DuplicateContactError) Error() string {
	return fmt.Sprintf("ghl: duplicate of contact %s by %s", e.ContactID, e.MatchingField)
}

// duplicateOf reads the meta of GHL's duplicate-contact 400, nil for any
// other answer. The values are ids and field names, kept only when short
// and printable.
func duplicateOf(status int, data []byte) *DuplicateContactError {
	if status != http.StatusBadRequest {
		return nil
	}
	var body struct {
		Meta struct {
			ContactID     string `json:"contactId"`
			MatchingField string `json:"matchingField"`
		} `json:"meta"`
	}
	if json.Unmarshal(data, &body) != nil || body.Meta.ContactID == "" {
		return nil
	}
	id, field := cleanMessage(body.Meta.ContactID, nil), cleanMessage(body.Meta.MatchingField, nil)
	if id != body.Meta.ContactID || len(id) > 255 || len(field) > 64 {
		return nil
	}
	return &DuplicateContactError{ContactID: id, MatchingField: field}
}

// ErrorResponse is a non-2xx answer from GHL other than 429.
//
// Message is GHL's message (an array of messages is joined with "; "),
// made printable and cut to a bounded length. When the error comes from a
// Client method, the client secret and the token, refresh token or code sent
// with the call are replaced by "[redacted]" in Message, should GHL echo
// them.
type ErrorResponse struct {
	StatusCode int
	Message    string
	// Endpoint names the call: the name given to Config.OnResponse (such as
	// "contacts.upsert") for errors from Client methods, the request's method
	// and path for errors from CheckResponse.
	Endpoint string
	// Err is the kind of error: ErrInvalidGrant, ErrLocationInactive,
	// ErrUnauthorized, ErrScopeDenied, ErrUserMissing, ErrNotFound, a
	// *DuplicateContactError, or nil for any other.
	Err error
}

func (e *ErrorResponse) Error() string {
	s := strconv.Itoa(e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		s += " " + t
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the kind of error, so that errors.Is(err, ErrInvalidGrant)
// and the like work.
func (e *ErrorResponse) Unwrap() error { return e.Err }

// RateLimitError is GHL's 429: the call was not served. Wait RetryAfter, then
// try again.
type RateLimitError struct {
	// RetryAfter comes from the Retry-After header (seconds or an HTTP date)
	// when GHL sends one, else from Rate.Interval, else it is 10s.
	RetryAfter time.Duration
	Rate       Rate
	Message    string
}

func (e *RateLimitError) Error() string {
	s := "429 Too Many Requests"
	if e.Message != "" {
		s += ": " + e.Message
	}
	return fmt.Sprintf("%s (retry after %s)", s, e.RetryAfter)
}

// CheckResponse returns nil for a 2xx response and a typed error for any
// other: *RateLimitError for 429, else *ErrorResponse whose Err tells
// ErrInvalidGrant, ErrLocationInactive and ErrUnauthorized apart. It reads at
// most 64 KiB of the body and leaves closing it to the caller.
//
// It is the one place that reads GHL's error texts. Client methods call it;
// it is exported for callers that make their own requests.
func CheckResponse(r *http.Response) error {
	var endpoint string
	var secrets []string
	if r.Request != nil {
		endpoint = r.Request.Method + " " + r.Request.URL.Path
		if tok, ok := strings.CutPrefix(r.Request.Header.Get("Authorization"), "Bearer "); ok {
			secrets = append(secrets, tok)
		}
	}
	return checkResponse(r, endpoint, time.Now(), secrets)
}

// checkResponse is CheckResponse with the endpoint name, the time and the
// secrets to scrub from messages supplied by the Client.
func checkResponse(r *http.Response, endpoint string, now time.Time, secrets []string) error {
	if r.StatusCode >= 200 && r.StatusCode < 300 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorBodySize))
	msg, all := parseErrorBody(data)
	if r.StatusCode == http.StatusTooManyRequests {
		rate := parseRate(r.Header)
		return &RateLimitError{
			RetryAfter: retryAfter(r.Header, rate, now),
			Rate:       rate,
			Message:    cleanMessage(msg, secrets),
		}
	}
	kind := errorKind(r, all)
	if dup := duplicateOf(r.StatusCode, data); dup != nil {
		kind = dup
	}
	return &ErrorResponse{
		StatusCode: r.StatusCode,
		Message:    cleanMessage(msg, secrets),
		Endpoint:   endpoint,
		Err:        kind,
	}
}

// parseErrorBody returns the message to show and, lower-cased with
// underscores as spaces, every text of the body to classify it by. GHL
// answers {"statusCode":…,"message":"…"} where message may be an array of
// strings, the token endpoint may answer RFC 6749's
// {"error":"invalid_grant","error_description":"…"}, and a proxy in front
// may answer plain text.
func parseErrorBody(data []byte) (msg, all string) {
	var body struct {
		Message          json.RawMessage `json:"message"`
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		msg = string(data)
		return msg, normalize(msg)
	}
	message, code, desc := jsonText(body.Message), jsonText(body.Error), jsonText(body.ErrorDescription)
	switch {
	case message != "":
		msg = message
	case desc != "":
		msg = desc
	default:
		msg = code
	}
	return msg, normalize(message + " " + desc + " " + code)
}

func normalize(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", " "))
}

// jsonText reads a JSON string or array of strings; anything else is "".
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		return strings.Join(ss, "; ")
	}
	return ""
}

func errorKind(r *http.Response, all string) error {
	switch {
	case (r.StatusCode == http.StatusBadRequest || r.StatusCode == http.StatusUnauthorized) &&
		strings.Contains(all, "invalid grant"):
		return ErrInvalidGrant
	case r.StatusCode >= 400 && r.StatusCode < 500 && strings.Contains(all, "location is not active"):
		return ErrLocationInactive
	case r.StatusCode == http.StatusUnauthorized && strings.Contains(all, "not authorized for this scope"):
		return ErrScopeDenied
	case r.StatusCode == http.StatusUnauthorized && strings.Contains(all, "user does not exist"):
		return ErrUserMissing
	case r.StatusCode == http.StatusUnauthorized && bearer(r.Request):
		// Any other 401 of an API call is taken for the token's: GHL words
		// an invalid or expired token several ways ("Invalid JWT", "jwt
		// expired", "Unauthorized"), and one refresh settles it.
		return ErrUnauthorized
	case r.StatusCode >= 400 && r.StatusCode < 500 && (r.StatusCode == http.StatusUnauthorized || strings.Contains(all, "invalid client")):
		return ErrInvalidClient
	case r.StatusCode >= 400 && r.StatusCode < 500 && strings.Contains(all, "redirect uri"):
		return ErrRedirectMismatch
	case r.StatusCode == http.StatusNotFound,
		r.StatusCode == http.StatusBadRequest && strings.Contains(all, "not found"):
		return ErrNotFound
	}
	return nil
}

// scopePattern matches a GHL scope name in a message, such as
// "contacts.write" or "calendars/events.readonly".
var scopePattern = regexp.MustCompile(`\b[a-z][a-zA-Z]*(?:/[a-zA-Z]+)*\.(?:readonly|write|read)\b`)

// scopeIn returns the scope a message names, "" when it names none.
func scopeIn(msg string) string { return scopePattern.FindString(msg) }

// bearer reports whether req carried a bearer token; a request we know
// nothing of is taken for an API call.
func bearer(req *http.Request) bool {
	return req == nil || strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ")
}

// cleanMessage makes a message from GHL safe to log: secrets are redacted
// (verbatim and form-encoded, as an echoed request body would carry them)
// before anything is cut, control characters and runs of space become one
// space, and the result is cut to maxMessageLen bytes on a rune boundary.
func cleanMessage(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, redacted)
		if q := url.QueryEscape(sec); q != sec {
			s = strings.ReplaceAll(s, q, redacted)
		}
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessageLen {
		cut := maxMessageLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func parseRate(h http.Header) Rate {
	return Rate{
		Max:            headerInt(h, "X-RateLimit-Max"),
		Remaining:      headerInt(h, "X-RateLimit-Remaining"),
		Interval:       time.Duration(headerInt(h, "X-RateLimit-Interval-Milliseconds")) * time.Millisecond,
		DailyLimit:     headerInt(h, "X-RateLimit-Limit-Daily"),
		DailyRemaining: headerInt(h, "X-RateLimit-Daily-Remaining"),
	}
}

func headerInt(h http.Header, key string) int {
	n, err := strconv.Atoi(strings.TrimSpace(h.Get(key)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func retryAfter(h http.Header, rate Rate, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			if secs > int64(maxRetryAfter/time.Second) {
				return maxRetryAfter
			}
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return min(max(t.Sub(now), 0), maxRetryAfter)
		}
	}
	if rate.Interval > 0 {
		return rate.Interval
	}
	return defaultRetryAfter
}

// The predicates below are ghlsync's one vocabulary for what a GHL error
// means; callers use them (and errors.Is with the Err kinds above) rather
// than looking at status codes.

// IsAPIError reports whether GHL answered the call with an error status
// (*ErrorResponse or *RateLimitError), as opposed to giving no answer or one
// that could not be read.
func IsAPIError(err error) bool {
	var er *ErrorResponse
	var rl *RateLimitError
	return errors.As(err, &er) || errors.As(err, &rl)
}

// IsRateLimited reports whether err is GHL's 429; RetryAfter says how long
// to wait.
func IsRateLimited(err error) bool {
	var rl *RateLimitError
	return errors.As(err, &rl)
}

// RetryAfter returns how long a 429 asked to wait, 0 for any other error.
func RetryAfter(err error) time.Duration {
	var rl *RateLimitError
	if errors.As(err, &rl) {
		return rl.RetryAfter
	}
	return 0
}

// IsNotFound reports whether GHL says the record does not exist: a 404, or
// a 400 whose message says not found (ErrNotFound).
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsTokenRejected reports whether an API call's bearer token was rejected
// as invalid or expired (ErrUnauthorized): refresh the token and call
// again. A 401 for a missing scope or a removed user is not this.
func IsTokenRejected(err error) bool { return errors.Is(err, ErrUnauthorized) }

// IsInvalidClient reports whether the token endpoint refused the app's
// client id or secret (ErrInvalidClient).
func IsInvalidClient(err error) bool { return errors.Is(err, ErrInvalidClient) }

// IsRedirectMismatch reports whether the token endpoint refused the
// redirect URI (ErrRedirectMismatch).
func IsRedirectMismatch(err error) bool { return errors.Is(err, ErrRedirectMismatch) }

// IsScopeDenied reports whether GHL refused the call because the token
// lacks the scope it needs (ErrScopeDenied); MissingScope names it. The
// location must be connected again once the app asks for that scope.
func IsScopeDenied(err error) bool { return errors.Is(err, ErrScopeDenied) }

// IsUserMissing reports whether GHL says the user the call names does not
// exist (ErrUserMissing): that record's failure, not the location's.
func IsUserMissing(err error) bool { return errors.Is(err, ErrUserMissing) }

// MissingScope names the scope a call refused with ErrScopeDenied lacked:
// the one GHL's message names, else the one GHL's documentation gives for
// the endpoint called (see Scope), "" when neither is known.
func MissingScope(err error) string {
	var e *ErrorResponse
	if !errors.As(err, &e) || !errors.Is(e.Err, ErrScopeDenied) {
		return ""
	}
	if s := scopeIn(e.Message); s != "" {
		return s
	}
	return Scope(e.Endpoint)
}

// IsAccessDenied reports whether GHL refused the caller rather than the
// request (401 or 403): no change of the record can help.
func IsAccessDenied(err error) bool {
	st := statusOf(err)
	return st == http.StatusUnauthorized || st == http.StatusForbidden
}

// IsRefused reports whether GHL refused the request itself (a 4xx that is
// neither a rate limit, a timeout nor a refusal of the caller): sending the
// same request again cannot help, a changed one may.
func IsRefused(err error) bool {
	st := statusOf(err)
	return st >= 400 && st < 500 && st != http.StatusRequestTimeout && !IsAccessDenied(err)
}

// IsServerError reports whether err is GHL's 5xx.
func IsServerError(err error) bool {
	st := statusOf(err)
	return st >= 500 && st < 600
}

// statusOf is the status of GHL's *ErrorResponse, 0 for other errors.
func statusOf(err error) int {
	var e *ErrorResponse
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// Temporary reports whether the call may succeed if made again after a
// backoff: GHL's 5xx, 408 and 429 (wait RateLimitError.RetryAfter at least),
// timeouts, and connections refused, reset or closed early. Other answers
// from GHL and a canceled context are not temporary.
//
// A temporary error after a write (upsert, create) does not say whether GHL
// applied it: look the record up before creating it again.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		return true
	}
	var er *ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode >= 500 || er.StatusCode == http.StatusRequestTimeout
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && (dns.IsTimeout || dns.IsTemporary) {
		return true
	}
	for _, target := range []error{
		io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
