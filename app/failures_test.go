package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/web"
)

// Issue 14, test 4: a location whose tokens are sealed with a key the
// process was not given (TOKEN_ENCRYPTION_OLD_KEYS forgotten after a
// rotation) fails its refresh, and within that one refresh a WARN or ERROR
// line says why, the failure metric counts it as key_missing, and the
// status page shows the missing key, while the location is not taken for
// revoked and its token is not spent.
func TestMissingKeyShowsWithinOneRefresh(t *testing.T) {
	t.Parallel()
	// The web process's key is a new one: it cannot open the row sealed
	// with the stack's.
	h, d, stack, logs := setupWeb(t, "TOKEN_ENCRYPTION_KEY", testenv.NewKey(t), "WEB_ADMIN_USER", "ops", "WEB_ADMIN_PASSWORD", "s3cret")
	stack.Connect(t, "loc1", time.Now().Add(time.Hour)) // sealed with stack.Key
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))}

	res, err := d.Refresher().Refresh(context.Background(), refresh.Request{LocationID: "loc1", Force: true})
	if err == nil || errors.Is(err, refresh.ErrNeedsReauth) || res.Outcome == refresh.NeedsReauth {
		t.Fatalf("refresh: %+v, %v; want a failure that is not needs_reauth", res, err)
	}
	if got := refresh.FailureReason(err); got != refresh.ReasonKeyMissing {
		t.Errorf("failure reason %q, want %q (err: %v)", got, refresh.ReasonKeyMissing, err)
	}
	if n := stack.Fake.TokenCalls("loc1"); n != 0 {
		t.Errorf("%d token calls: a token that cannot be read must not reach GHL", n)
	}

	line := regexp.MustCompile(`(?m)^.*level=(WARN|ERROR).*location=loc1.*reason=key_missing.*TOKEN_ENCRYPTION_OLD_KEYS.*$`)
	if !line.MatchString(logs.String()) {
		t.Errorf("no WARN or ERROR line with the reason and the remedy:\n%s", logs)
	}

	metrics := request(h, http.MethodGet, "/metrics", "", auth).Body.String()
	if !strings.Contains(metrics, `ghlsync_token_refresh_failures_total{reason="key_missing"} 1`) {
		t.Errorf("/metrics does not count the failure:\n%s", grepLines(metrics, "ghlsync_token_refresh_failures_total"))
	}

	rec := request(h, http.MethodGet, "/api/locations", "", auth)
	var body struct{ Locations []web.LocationStatus }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Locations) != 1 {
		t.Fatalf("/api/locations: %d %s (%v)", rec.Code, rec.Body, err)
	}
	ls := body.Locations[0]
	if !ls.KeyMissing || !strings.Contains(ls.KeyProblem, "TOKEN_ENCRYPTION_OLD_KEYS") ||
		!strings.Contains(ls.LastError, "TOKEN_ENCRYPTION_OLD_KEYS") || ls.Status != store.StatusActive {
		t.Errorf("/api/locations shows %+v; want key_missing, its remedy and the refresh's error, status still active", ls)
	}
	page := request(h, http.MethodGet, "/", "", auth).Body.String()
	if !strings.Contains(page, "key missing") || !strings.Contains(page, "TOKEN_ENCRYPTION_OLD_KEYS") {
		t.Errorf("the status page does not show the missing key:\n%s", page)
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
