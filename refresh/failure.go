package refresh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/store"
)

// Reasons a refresh failed, as FailureReason names them for metrics.
const (
	// ReasonKeyMissing: the stored tokens are sealed with an encryption
	// key the process does not have. The token itself is fine: the key
	// must be given back (TOKEN_ENCRYPTION_OLD_KEYS), not the location
	// reconnected.
	ReasonKeyMissing = "key_missing"
	// ReasonTokenUnreadable: the stored tokens do not decrypt (corrupt).
	ReasonTokenUnreadable = "token_unreadable"
	// ReasonNeedsReauth, ReasonInactive, ReasonUnknownLocation: as the
	// errors of the same names.
	ReasonNeedsReauth     = "needs_reauth"
	ReasonInactive        = "inactive"
	ReasonUnknownLocation = "unknown_location"
	// ReasonRateLimited: GHL answered 429.
	ReasonRateLimited = "rate_limited"
	// ReasonGHLUnavailable: GHL did not answer, or answered 5xx.
	ReasonGHLUnavailable = "ghl_unavailable"
	// ReasonGHLRefused: GHL refused the call for another reason.
	ReasonGHLRefused = "ghl_refused"
	// ReasonCancelled: the task's context ended (shutdown, timeout).
	ReasonCancelled = "cancelled"
	// ReasonOther: the database, Redis or the lock.
	ReasonOther = "other"
)

// FailureReason names why a refresh failed with err, one of the Reason
// constants; "" for ErrBusy, which is no failure.
func FailureReason(err error) string {
	switch {
	case err == nil, errors.Is(err, ErrBusy):
		return ""
	case errors.Is(err, tokencrypt.ErrUnknownKey):
		return ReasonKeyMissing
	case errors.Is(err, tokencrypt.ErrCorrupt):
		return ReasonTokenUnreadable
	case errors.Is(err, ErrNeedsReauth):
		return ReasonNeedsReauth
	case errors.Is(err, ErrInactive):
		return ReasonInactive
	case errors.Is(err, ErrUnknownLocation):
		return ReasonUnknownLocation
	case ghl.IsRateLimited(err):
		return ReasonRateLimited
	case ghl.Temporary(err):
		return ReasonGHLUnavailable
	case ghl.IsAPIError(err):
		return ReasonGHLRefused
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ReasonCancelled
	}
	return ReasonOther
}

// failed counts a failed refresh by reason and logs it. needs_reauth and
// inactive are logged where GHL said so (or were, when the location got
// that status); a missing key was logged by unreadable.
func (r *Refresher) failed(loc string, err error) {
	reason := FailureReason(err)
	if reason == "" {
		return
	}
	if r.ObserveFailure != nil {
		r.ObserveFailure(reason)
	}
	switch reason {
	case ReasonNeedsReauth, ReasonInactive, ReasonKeyMissing, ReasonTokenUnreadable:
	default:
		r.log().Warn("token refresh failed", "location", loc, "reason", reason, "err", err)
	}
}

// unreadable handles stored tokens that cannot be decrypted: it logs why
// and records it as the location's last error, keeping its status (the
// token may be fine, as with a missing key, and the status page shows the
// error), and returns the refresh's error.
func (r *Refresher) unreadable(ctx context.Context, lk *lock, c *store.Credential, err error) error {
	loc := c.LocationID
	var msg string
	if errors.Is(err, tokencrypt.ErrUnknownKey) {
		msg = fmt.Sprintf("the stored token is sealed with encryption key %s, which this process does not have: "+
			"add that key to TOKEN_ENCRYPTION_OLD_KEYS and restart (the token itself is fine: do not reconnect)", keyIDOf(c))
		r.log().Error("cannot refresh: the location's token is sealed with an encryption key that is not configured",
			"location", loc, "reason", ReasonKeyMissing, "key_id", keyIDOf(c), "remedy", "add the key to TOKEN_ENCRYPTION_OLD_KEYS")
	} else {
		msg = "the stored token cannot be decrypted: " + err.Error()
		r.log().Error("cannot refresh: the location's stored token cannot be decrypted",
			"location", loc, "reason", ReasonTokenUnreadable, "err", err)
	}
	r.setStatus(ctx, lk, loc, c.TokenVersion, c.Status, msg)
	return fmt.Errorf("refresh %s: %s: %w", loc, msg, err)
}

func keyIDOf(c *store.Credential) string {
	if c.KeyID != "" {
		return c.KeyID
	}
	return "(unknown)"
}

// History logs refreshes; *store.Store is one. RecordRefresh must be safe
// for concurrent use.
type History interface {
	RecordRefresh(ctx context.Context, run *store.RefreshRun) error
}

// record logs a refresh's outcome in r.History. A failure to log is only
// logged: the refresh itself is done, whatever its history says.
func (r *Refresher) record(ctx context.Context, loc string, res Result, err error) {
	switch {
	case r.History == nil, errors.Is(err, ErrBusy), errors.Is(err, ErrUnknownLocation):
		return
	case err == nil && (res.Outcome != Refreshed || res.logged):
		return // nothing to log, or logged with the token (save)
	}
	run := &store.RefreshRun{LocationID: loc, At: r.now(), Outcome: string(res.Outcome), Reason: FailureReason(err), Message: res.Message}
	switch {
	case err == nil:
		exp := res.ExpiresAt
		run.ExpiresAt = &exp
	case res.Outcome != NeedsReauth && res.Outcome != Inactive:
		run.Outcome, run.Message = store.RefreshFailed, err.Error()
	}
	// The task's own cancellation (a shutdown) must not lose the entry
	// of a refresh that happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.History.RecordRefresh(ctx, run); err != nil {
		r.log().Warn("could not log the refresh in its history", "location", loc, "err", err)
	}
}
