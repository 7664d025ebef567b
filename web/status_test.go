package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

func TestStatusShowsNeedsReauth(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	stack.Connect(t, "locOK", time.Now().Add(10*time.Hour))
	stack.Connect(t, "locBad", time.Now().Add(time.Hour))
	ctx := context.Background()
	if err := stack.Store.SetStatus(ctx, "locBad", store.StatusNeedsReauth, "GHL refused the refresh token"); err != nil {
		t.Fatal(err)
	}
	finished := time.Now()
	run := &store.SyncRun{Kind: "patients", LocationID: "locOK", StartedAt: finished.Add(-time.Minute)}
	if err := stack.Store.StartSyncRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	run.FinishedAt, run.Outcome, run.Scanned, run.Created, run.Failed = &finished, "completed", 120, 100, 2
	if err := stack.Store.FinishSyncRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	h := (&web.Status{Source: stack.Store, Log: slog.New(slog.DiscardHandler)}).Handler()

	rec := get(t, h, "/api/locations")
	if rec.Code != http.StatusOK {
		t.Fatalf("/api/locations: %d", rec.Code)
	}
	var body struct{ Locations []web.LocationStatus }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	got := map[string]web.LocationStatus{}
	for _, l := range body.Locations {
		got[l.LocationID] = l
	}
	bad, ok := got["locBad"], got["locOK"]
	if bad.Status != store.StatusNeedsReauth || bad.ReconnectURL != "/api/auth/connect" || bad.LastError == "" {
		t.Fatalf("locBad = %+v", bad)
	}
	if ok.Status != store.StatusActive || ok.ReconnectURL != "" || ok.ExpiresInSeconds < 9*3600 {
		t.Fatalf("locOK = %+v", ok)
	}
	if p := ok.Syncs["patients"]; p == nil || p.Created != 100 || p.Failed != 2 || p.Outcome != "completed" {
		t.Fatalf("locOK patient sync = %+v", p)
	}
	if strings.Contains(rec.Body.String(), "token\":") {
		t.Fatal("the JSON carries a token field")
	}

	rec = get(t, h, "/")
	page := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(page, `<a href="/api/auth/connect">Reconnect</a>`) ||
		!strings.Contains(page, "needs_reauth") || !strings.Contains(page, "100 created") {
		t.Fatalf("status page (%d) lacks the reconnect link or the sync counts:\n%s", rec.Code, page)
	}
}
