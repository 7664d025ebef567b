package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// agencySetup connects agency co1 (its token expiring in expiry) and its
// location loc1, whose stored refresh token GHL no longer honours (lost, as
// after a rotation whose answer went missing).
func agencySetup(t *testing.T, agencyExpiry time.Duration) (*refresh.Refresher, *bundle) {
	t.Helper()
	r, b := setup(t)
	client, err := ghl.NewClient(ghl.Config{BaseURL: b.fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	r.Agency = client.OAuth
	b.fake.AddLocation("loc1", "co1")
	b.fake.InstallApp("co1", "loc1")
	access, rt, _ := b.fake.IssueToken("co1")
	ctx := context.Background()
	if err := b.store.Connect(ctx, store.Connection{LocationID: "co1", CompanyID: "co1", UserType: store.UserTypeCompany,
		Tokens: store.Tokens{AccessToken: access, RefreshToken: rt, ExpiresAt: time.Now().Add(agencyExpiry)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Connect(ctx, store.Connection{LocationID: "loc1", CompanyID: "co1", UserType: store.UserTypeLocation,
		Tokens: store.Tokens{AccessToken: "at-gone", RefreshToken: "rt-gone", ExpiresAt: time.Now().Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	return r, b
}

// With the agency's token held, a location whose refresh token GHL
// refuses gets a token minted from the agency's, and stays active: it is
// not marked needs_reauth.
func TestAgencyRemintsBeforeNeedsReauth(t *testing.T) {
	t.Parallel()
	r, b := agencySetup(t, 20*time.Hour)
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true})
	if err != nil || res.Outcome != refresh.Reminted {
		t.Fatalf("Refresh = %+v, %v; want reminted", res, err)
	}
	if got := b.fake.Stats().LocationTokens["loc1"]; got != 1 {
		t.Errorf("location tokens minted = %d, want 1", got)
	}
	toks, c := b.StoredTokens(t, "loc1")
	if c.Status != store.StatusActive || !b.fake.Valid("loc1", toks.AccessToken) || toks.RefreshToken != b.fake.CurrentRefreshToken("loc1") {
		t.Fatalf("after the re-mint: status %s, the stored token is not GHL's current one", c.Status)
	}
	// The minted token's refresh token works like any other.
	if res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true}); err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("refresh of the minted token = %+v, %v", res, err)
	}
}

// The agency's own token, about to expire, is refreshed (under its own
// lock, by the same refresher) before it mints.
func TestAgencyTokenRefreshedBeforeRemint(t *testing.T) {
	t.Parallel()
	r, b := agencySetup(t, 30*time.Second)
	if res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true}); err != nil || res.Outcome != refresh.Reminted {
		t.Fatalf("Refresh = %+v, %v; want reminted", res, err)
	}
	if got := b.fake.Rotations("co1"); got != 1 {
		t.Errorf("agency token rotations = %d, want 1", got)
	}
	b.requireStoredCurrent(t, "co1")
}

// Where the agency cannot mint (the app was uninstalled from the
// location) or ghlsync holds no agency token, the location needs
// reconnecting as before.
func TestNoRemintMeansNeedsReauth(t *testing.T) {
	t.Parallel()
	t.Run("uninstalled", func(t *testing.T) {
		t.Parallel()
		r, b := agencySetup(t, 20*time.Hour)
		b.fake.Revoke("loc1")
		_, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true})
		if !errors.Is(err, refresh.ErrNeedsReauth) {
			t.Fatalf("Refresh = %v, want needs reauth", err)
		}
		if _, c := b.StoredTokens(t, "loc1"); c.Status != store.StatusNeedsReauth {
			t.Errorf("status %s", c.Status)
		}
	})
	t.Run("no agency token", func(t *testing.T) {
		t.Parallel()
		r, b := agencySetup(t, 20*time.Hour)
		if err := b.store.SetStatus(context.Background(), "co1", store.StatusNeedsReauth, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true}); !errors.Is(err, refresh.ErrNeedsReauth) {
			t.Fatalf("Refresh = %v, want needs reauth", err)
		}
		if got := b.fake.Stats().LocationTokens["loc1"]; got != 0 {
			t.Errorf("%d tokens minted with an agency token that needs reconnecting", got)
		}
	})
}
