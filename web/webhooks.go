package web

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// WebhookStore is what GHL's app webhooks need of the store beyond
// Connector; *store.Store is one.
type WebhookStore interface {
	Credential(ctx context.Context, id string) (*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
	SetStatus(ctx context.Context, loc string, st store.Status, lastError string) error
	SetCompanyStatus(ctx context.Context, companyID string, st store.Status, lastError string) (int64, error)
}

// Webhooks configures POST /api/webhooks/ghl. Without Key or RSAKey the
// endpoint answers 503: an unverifiable webhook is never acted on.
type Webhooks struct {
	Store WebhookStore
	// Key verifies the x-ghl-signature header (Ed25519 over the raw body).
	Key ed25519.PublicKey
	// RSAKey, when set, also accepts the legacy x-wh-signature header
	// (RSA PKCS #1 v1.5 over SHA-256 of the raw body).
	RSAKey *rsa.PublicKey
	// AppID, when set, is the marketplace app whose webhooks are acted on;
	// GHL signs every app's webhooks with the same key, so a webhook of
	// another app, replayed here, must change nothing. See AppID.
	AppID string
	// Clock is what the timestamps are checked against.
	Clock clock.Clock
	// Events records the contact and appointment webhooks (the inbox's
	// intake); without it they are ignored.
	Events EventRecorder
	// Process enqueues the processing of a recorded event.
	Process func(ctx context.Context, eventID int64) error
}

// AppID returns the marketplace app id of a client id, which GHL issues as
// "<appId>-<suffix>" (the official SDK reads it so), or "" when clientID
// has no such form.
func AppID(clientID string) string {
	if id, _, ok := strings.Cut(clientID, "-"); ok {
		return id
	}
	return ""
}

const (
	maxWebhookBody = 1 << 20
	// webhookTolerance is how far a webhook's timestamp may be from now,
	// either way, as GHL advises.
	webhookTolerance = 5 * time.Minute
	// webhookSeenTTL outlives the time a timestamp is accepted (twice the
	// tolerance), so a replay is refused by its id or by its age.
	webhookSeenTTL = 3 * webhookTolerance
	keyWebhookSeen = "ghlsync:webhook:seen:"
)

// appEvent is an INSTALL or UNINSTALL webhook; other fields are ignored.
type appEvent struct {
	Type        string          `json:"type"`
	AppID       string          `json:"appId"`
	InstallType string          `json:"installType"`
	CompanyID   string          `json:"companyId"`
	LocationID  string          `json:"locationId"`
	LocationIDs []string        `json:"locationIds"` // bulk installs
	WebhookID   string          `json:"webhookId"`
	Timestamp   json.RawMessage `json:"timestamp"`
}

// webhook serves POST /api/webhooks/ghl. Every refusal comes before any
// change: the signature (401), the body (400), the timestamp (400) and the
// webhook id (409). GHL retries a non-2xx answer, so a webhook that was
// understood but needs nothing done still gets 200, and one that failed on
// something passing (GHL or the database) gets 503 with its id forgotten,
// so that GHL's retry is not refused as a replay.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	wh := &s.Webhooks
	if len(wh.Key) == 0 && wh.RSAKey == nil {
		http.Error(w, "webhooks not configured: set GHL_WEBHOOK_PUBLIC_KEY", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if !wh.verify(r.Header, body) {
		s.Log.Warn("webhook refused: bad or missing signature", "remote", r.RemoteAddr)
		http.Error(w, "bad or missing signature", http.StatusUnauthorized)
		return
	}
	var ev appEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "body is not a JSON webhook", http.StatusBadRequest)
		return
	}
	data := isDataEvent(ev.Type)
	if data && wh.Events == nil {
		s.Log.Debug("webhook ignored: the inbox is not configured", "type", ev.Type)
		io.WriteString(w, "ignored\n")
		return
	}
	if !data && ev.Type != "INSTALL" && ev.Type != "UNINSTALL" {
		s.Log.Debug("webhook ignored", "type", ev.Type)
		io.WriteString(w, "ignored\n")
		return
	}
	if wh.AppID != "" && ev.AppID != "" && ev.AppID != wh.AppID {
		s.Log.Warn("webhook of another app ignored", "type", ev.Type, "app_id", ev.AppID, "want", wh.AppID)
		io.WriteString(w, "ignored: another app\n")
		return
	}
	if msg := ev.check(); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	if data {
		s.dataWebhook(w, r, &ev, body)
		return
	}
	ts, err := parseTimestamp(ev.Timestamp)
	if err != nil {
		http.Error(w, "timestamp is not an ISO 8601 time", http.StatusBadRequest)
		return
	}
	if d := clock.Since(wh.Clock, ts); d > webhookTolerance || d < -webhookTolerance {
		s.Log.Warn("webhook refused: stale timestamp", "type", ev.Type, "webhook_id", ev.WebhookID, "timestamp", ts)
		http.Error(w, "timestamp is more than 5 minutes from now", http.StatusBadRequest)
		return
	}
	seen := keyWebhookSeen + ev.WebhookID
	fresh, err := s.Redis.SetNX(r.Context(), seen, ts.UTC().Format(time.RFC3339), webhookSeenTTL).Result()
	if err != nil {
		s.Log.Error("webhook: recording its id", "err", err)
		http.Error(w, "cannot take webhooks now; try again", http.StatusServiceUnavailable)
		return
	}
	if !fresh {
		s.Log.Warn("webhook refused: replayed id", "type", ev.Type, "webhook_id", ev.WebhookID)
		http.Error(w, "webhook already received", http.StatusConflict)
		return
	}
	if ev.Type == "INSTALL" {
		err = s.install(r.Context(), &ev)
	} else {
		err = s.uninstall(r.Context(), &ev)
	}
	if err != nil {
		s.Log.Error("webhook failed; GHL will retry it", "type", ev.Type, "webhook_id", ev.WebhookID, "err", err)
		s.Redis.Del(context.WithoutCancel(r.Context()), seen)
		http.Error(w, "could not handle the webhook now; try again", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

// verify checks the Ed25519 signature, or the legacy RSA one when there is
// none and an RSA key is configured.
func (wh *Webhooks) verify(h http.Header, body []byte) bool {
	if sig := h.Get("x-ghl-signature"); sig != "" && len(wh.Key) == ed25519.PublicKeySize {
		b, err := base64.StdEncoding.DecodeString(sig)
		return err == nil && ed25519.Verify(wh.Key, body, b)
	}
	if sig := h.Get("x-wh-signature"); sig != "" && wh.RSAKey != nil {
		b, err := base64.StdEncoding.DecodeString(sig)
		sum := sha256.Sum256(body)
		return err == nil && rsa.VerifyPKCS1v15(wh.RSAKey, crypto.SHA256, sum[:], b) == nil
	}
	return false
}

// check says what a webhook lacks, or "".
func (ev *appEvent) check() string {
	switch {
	case ev.WebhookID == "":
		return "webhookId is missing"
	case len(ev.Timestamp) == 0 || bytes.Equal(ev.Timestamp, []byte("null")):
		return "timestamp is missing"
	case ev.LocationID == "" && ev.CompanyID == "":
		return "neither locationId nor companyId is given"
	}
	return ""
}

// parseTimestamp reads an ISO 8601 time, or Unix seconds or milliseconds.
func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > 1e11 {
			return time.UnixMilli(n), nil
		}
		return time.Unix(n, 0), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// install handles INSTALL. ghlsync can only connect a location itself
// when it holds the agency's token, from which it mints the location's;
// otherwise someone must connect the location through the OAuth flow. A
// location already active keeps its tokens: a retried webhook mints nothing
// twice. The error is non-nil only for what a retry may mend.
func (s *Server) install(ctx context.Context, ev *appEvent) error {
	locs := slices.DeleteFunc(slices.Compact(slices.Sorted(slices.Values(append([]string{ev.LocationID}, ev.LocationIDs...)))),
		func(id string) bool { return id == "" })
	agency, err := s.agencyToken(ctx, ev.CompanyID)
	if err != nil {
		return err
	}
	log := s.Log.With("webhook_id", ev.WebhookID, "company", ev.CompanyID, "install_type", ev.InstallType)
	if len(locs) == 0 {
		if agency == nil {
			log.Warn("the agency installed the app, but ghlsync holds no token of it: connect the agency at /api/auth/connect?user_type=Company")
		} else {
			log.Info("the agency installed the app; its locations are connected as GHL reports their installs")
		}
		return nil
	}
	var retry error
	for _, loc := range locs {
		c, err := s.Webhooks.Store.Credential(ctx, loc)
		switch {
		case err == nil && c.Status == store.StatusActive:
			log.Info("installed location is already connected", "location", loc)
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			retry = errors.Join(retry, err)
			continue
		case agency == nil:
			log.Warn("a location installed the app, but ghlsync holds no agency token to mint its token: connect the location at /api/auth/connect", "location", loc)
			continue
		}
		tok, _, err := s.OAuth.LocationToken(ctx, agency.AccessToken, ev.CompanyID, loc)
		if err != nil {
			if ghl.Temporary(err) || ghl.IsTokenRejected(err) {
				retry = errors.Join(retry, fmt.Errorf("location token for %s: %w", loc, err))
				continue
			}
			log.Warn("GHL refused a token for an installed location: connect it at /api/auth/connect", "location", loc, "err", err)
			continue
		}
		tok.LocationID = loc
		if tok.CompanyID == "" {
			tok.CompanyID = ev.CompanyID
		}
		if tok.UserType == "" {
			tok.UserType = store.UserTypeLocation
		}
		if err := s.store(ctx, tok, loc); err != nil {
			retry = errors.Join(retry, err)
		}
	}
	return retry
}

// agencyToken returns the tokens of the company's active agency
// credential, or nil when ghlsync holds none it can use.
func (s *Server) agencyToken(ctx context.Context, companyID string) (*store.Tokens, error) {
	if companyID == "" {
		return nil, nil
	}
	c, err := s.Webhooks.Store.Credential(ctx, companyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if c.UserType != store.UserTypeCompany || c.Status != store.StatusActive {
		return nil, nil
	}
	toks, err := s.Webhooks.Store.Tokens(c)
	if err != nil {
		// A key problem, which a retry cannot mend.
		s.Log.Error("cannot decrypt the agency token", "company", companyID, "err", err)
		return nil, nil
	}
	return &toks, nil
}

// uninstall handles UNINSTALL: the location, or the agency and every
// location of it, is marked uninstalled, which stops its refreshes and
// syncs. Its tokens stay (encrypted) until it is connected again, which
// replaces them.
func (s *Server) uninstall(ctx context.Context, ev *appEvent) error {
	log := s.Log.With("webhook_id", ev.WebhookID)
	if ev.LocationID != "" {
		err := s.Webhooks.Store.SetStatus(ctx, ev.LocationID, store.StatusUninstalled,
			"the app was uninstalled from this location in GHL; install it again, then connect the location at /api/auth/connect")
		if errors.Is(err, store.ErrNotFound) {
			log.Info("a location ghlsync does not hold uninstalled the app", "location", ev.LocationID)
			return nil
		}
		if err == nil {
			log.Warn("location uninstalled the app: no more refreshes or syncs", "location", ev.LocationID)
		}
		return err
	}
	n, err := s.Webhooks.Store.SetCompanyStatus(ctx, ev.CompanyID, store.StatusUninstalled,
		"the app was uninstalled from the agency in GHL; install it again, then connect the agency at /api/auth/connect?user_type=Company")
	if err == nil {
		log.Warn("agency uninstalled the app: no more refreshes or syncs for it or its locations", "company", ev.CompanyID, "credentials", n)
	}
	return err
}
