package refresh_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// Every refresh that called GHL or failed is logged in History with its
// outcome, and why it failed; a request that needed no call is not.
func TestRefreshHistory(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	r.History = b.store
	ctx := context.Background()
	runs := func() []store.RefreshRun {
		t.Helper()
		rs, err := b.store.RefreshRuns(ctx, "loc1", 10)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}

	res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	got := runs()
	if len(got) != 1 || got[0].Outcome != "refreshed" || got[0].ExpiresAt == nil ||
		got[0].ExpiresAt.Sub(res.ExpiresAt).Abs() > time.Millisecond { // PostgreSQL keeps microseconds
		t.Fatalf("after a refresh, history = %+v; want one refreshed run with the new expiry %s", got, res.ExpiresAt)
	}

	if res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1"}); err != nil || res.Outcome != refresh.Fresh {
		t.Fatalf("unforced refresh of a fresh token: %+v, %v", res, err)
	}
	if n := len(runs()); n != 1 {
		t.Errorf("a request that called nobody was logged: %d runs", n)
	}

	remove := b.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Status: http.StatusServiceUnavailable})
	if _, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", Force: true}); err == nil {
		t.Fatal("refresh during a GHL outage succeeded")
	}
	remove()
	got = runs()
	if len(got) != 2 || got[0].Outcome != store.RefreshFailed || got[0].Reason != refresh.ReasonGHLUnavailable || got[0].Message == "" {
		t.Fatalf("after a 503, latest run = %+v; want failed, ghl_unavailable, with the error", got[0])
	}

	b.fake.Revoke("loc1")
	if _, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", Force: true}); err == nil {
		t.Fatal("refresh of a revoked location succeeded")
	}
	got = runs()
	if len(got) != 3 || got[0].Outcome != "needs_reauth" || got[0].Reason != refresh.ReasonNeedsReauth || got[0].Message == "" {
		t.Fatalf("after a revocation, latest run = %+v; want needs_reauth with what to do", got[0])
	}
}
