package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/store"
)

// missingScopeMessage says which scope GHL refused a call for and what to
// do: GHL grants a token the scopes of the consent, and a refresh keeps
// them, so only a new connection after the app asks for the scope helps.
func missingScopeMessage(err error) string {
	var er *ghl.ErrorResponse
	endpoint := ""
	if errors.As(err, &er) {
		endpoint = er.Endpoint
	}
	scope := ghl.MissingScope(err)
	if scope == "" {
		return fmt.Sprintf("GHL refused %s: the location's token is not authorized for its scope (GHL did not say which); "+
			"check the app's scopes against the README's list, then connect the location again at %s", endpoint, store.ConnectPath)
	}
	return fmt.Sprintf("GHL refused %s: the location's token lacks scope %s. Add %s to the app's scopes in GHL's marketplace "+
		"(and to GHL_SCOPES when it is set), then connect the location again at %s", endpoint, scope, scope, store.ConnectPath)
}

// missingScope records that the location's token lacks a scope: the
// location gets status missing_scope, with the scope named, so it is not
// synced (or refreshed) again until it is connected again, and no task
// retries it. The write is a compare-and-set on the token the run held: a
// connection made meanwhile (with the scope, maybe) is not marked.
func (r *run) missingScope(ctx context.Context, err error) {
	msg := missingScopeMessage(err)
	r.e.log().Error("GHL refused a call for a scope the location's token lacks; the location is not synced until it is connected again",
		"location", r.loc, "scope", ghl.MissingScope(err), "reason", msg)
	held := r.ghl.tokens.Version()
	write := func(ctx context.Context) error {
		return r.e.Credentials.SetRefreshStatus(ctx, r.loc, held, store.StatusMissingScope, msg)
	}
	err = store.Persist(context.WithoutCancel(ctx), r.e.Clock, 10*time.Second, func(err error) bool {
		return errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound)
	}, write)
	if err != nil {
		r.e.log().Warn("could not record the location's missing scope", "location", r.loc, "err", err)
	}
}

// pausedMessage words a run stopped by the limiter's pause of its location.
func pausedMessage(err error) string {
	var pe *ratelimit.PausedError
	errors.As(err, &pe)
	if pe.HandBack && !pe.Daily {
		return fmt.Sprintf("the location's rate limit is spent for now; the task runs again in %s", pe.RetryAfter.Round(time.Millisecond))
	}
	if pe.Daily {
		return fmt.Sprintf("GHL's daily quota for the location is spent (X-RateLimit-Daily-Remaining 0); "+
			"the task runs again in %s to see whether GHL's day has ended", pe.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("the location is paused after GHL's 429; the task runs again in %s", pe.RetryAfter.Round(time.Second))
}
