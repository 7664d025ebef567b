package refresh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// AgencyMinter mints a location's token from its agency's token
// (POST /oauth/locationToken); *ghl.OAuthService is one.
type AgencyMinter interface {
	LocationToken(ctx context.Context, agencyAccessToken, companyID, locationID string) (*ghl.Token, *ghl.Response, error)
}

// remint is what a refresh refused for good tries before the location is
// marked needs_reauth, as GHL's SDK does: with Agency set and an active
// agency credential of the location's company held, a new location token
// is minted from the agency's token and stored in place of the refused
// one, under the location's lock and the same compare-and-set on the
// version spent. The agency's token is renewed first when it is about to
// expire, or when GHL rejects it, through this Refresher (under the
// agency's own lock).
//
// tried is false when there is no agency to ask, or it did not mint: the
// location then needs reconnecting as before. A temporary failure of the
// agency's call is the refresh's error: the task retries, and the refused
// refresh token costs nothing to present again. marked is the time of the
// refresh's in-flight mark, from which answeredAt tells when the minted
// token came.
func (r *Refresher) remint(ctx context.Context, lk *lock, c *store.Credential, spent int64, marked markTime) (res Result, settled, tried bool, err error) {
	loc := c.LocationID
	res = Result{LocationID: loc}
	if r.Agency == nil || c.UserType == store.UserTypeCompany || c.CompanyID == "" {
		return res, false, false, nil
	}
	agency, err := r.Store.Credential(ctx, c.CompanyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return res, false, false, nil
	case err != nil:
		return res, true, true, fmt.Errorf("refresh %s: reading the agency's token: %w", loc, err)
	case agency.UserType != store.UserTypeCompany || agency.Status != store.StatusActive:
		return res, false, false, nil
	}
	src := &Source{Location: c.CompanyID, Store: r.Store, Renewer: r, Clock: r.Clock}
	var tok *ghl.Token
	for attempt := 0; ; attempt++ {
		access, err := src.Token(ctx)
		if err != nil {
			r.log().Warn("GHL refused the location's refresh token, and the agency's token cannot be had to mint a new one",
				"location", loc, "company", c.CompanyID, "err", err)
			return res, false, false, nil
		}
		free, err := r.callSlot(ctx)
		if err != nil {
			return res, true, true, fmt.Errorf("refresh %s: waiting to call GHL: %w", loc, err)
		}
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDefault(r.CallTimeout, 20*time.Second))
		tok, _, err = r.Agency.LocationToken(callCtx, access, c.CompanyID, loc)
		cancel()
		free()
		switch {
		case err == nil:
		case ghl.IsTokenRejected(err) && attempt == 0:
			if err := src.Rejected(ctx, access); err != nil {
				r.log().Warn("the agency's token was rejected and could not be renewed", "company", c.CompanyID, "err", err)
				return res, false, false, nil
			}
			continue
		case ghl.Temporary(err):
			return res, true, true, fmt.Errorf("refresh %s: GHL refused the refresh token; minting a new one from the agency's token failed for now: %w", loc, err)
		default:
			r.log().Warn("GHL refused the location's refresh token, and would not mint one from the agency's token",
				"location", loc, "company", c.CompanyID, "err", err)
			return res, false, false, nil
		}
		break
	}
	next := store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry}
	if _, err := r.save(ctx, lk, loc, spent, next, answeredAt(marked), nil); errors.Is(err, store.ErrStale) {
		res, settled, err := r.discarded(ctx, loc, spent, "a token minted from the agency's came after a newer token was stored; not storing it")
		return res, settled, true, err
	} else if err != nil {
		return res, false, true, err
	}
	res.Outcome, res.ExpiresAt, res.ExpiresIn = Reminted, next.ExpiresAt.UTC(), r.expiresIn(next.ExpiresAt)
	res.Message = "GHL refused the location's refresh token; a new token was minted from the agency's token"
	r.log().Warn("GHL refused the location's refresh token; minted a new one from the agency's token",
		"location", loc, "company", c.CompanyID, "expires_in", time.Duration(tok.ExpiresIn)*time.Second)
	return res, true, true, nil
}
