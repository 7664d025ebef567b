package app_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/store"
)

// The alerts page lists the alerts with each delivery's state and last
// error, behind the admin guard, and escapes what it shows.
func TestWebHandlerAlertsPage(t *testing.T) {
	t.Parallel()
	h, d, _, _ := setupWeb(t, "WEB_ADMIN_USER", "ops", "WEB_ADMIN_PASSWORD", "s3cret")
	ctx := context.Background()
	now := time.Now()
	if rec := request(h, http.MethodGet, "/alerts", "", nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("/alerts without credentials: %d", rec.Code)
	}
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))}
	if rec := request(h, http.MethodGet, "/alerts", "", auth); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "No alert so far") {
		t.Errorf("/alerts, empty: %d %s", rec.Code, rec.Body)
	}

	a := &store.Alert{Kind: "location_problem", Subject: "loc<1>/needs_reauth", Episode: 1,
		Summary: "Location loc<1> is needs_reauth", Detail: "connect the location again at /api/auth/connect", StartedAt: now}
	if ok, err := d.Store.FireAlert(ctx, a, []store.AlertReceiver{{Key: "slack:0123456789ab", Name: "slack https://hooks.slack.com/xxxxx"}}); err != nil || !ok {
		t.Fatalf("fire: %v %v", ok, err)
	}
	due, err := d.Store.DueAlertDeliveries(ctx, now, []string{"slack:0123456789ab"}, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due: %v %v", due, err)
	}
	if ok, err := d.Store.ClaimAlertDelivery(ctx, due[0].ID, now, now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if err := d.Store.AlertDeliveryFailed(ctx, due[0].ID, "slack https://hooks.slack.com/xxxxx answered 500 Internal Server Error", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	rec := request(h, http.MethodGet, "/alerts", "", auth)
	page := rec.Body.String()
	for _, want := range []string{"Location loc&lt;1&gt; is needs_reauth", `class="firing">firing`, "firing to slack https://hooks.slack.com/xxxxx",
		`class="pending">pending`, "1 attempts; last error: slack https://hooks.slack.com/xxxxx answered 500"} {
		if !strings.Contains(page, want) {
			t.Errorf("/alerts (%d) lacks %q:\n%s", rec.Code, want, page)
		}
	}
	if strings.Contains(page, "loc<1>") {
		t.Errorf("/alerts does not escape the alert's text")
	}
}
