package app_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
)

func basic(login string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(login))}
}

// With METRICS_PASSWORD, /metrics takes its own login, on WEB_ADDR and on
// a separate METRICS_ADDR, and no other; /healthz stays open.
func TestMetricsLogin(t *testing.T) {
	t.Parallel()
	h, d, _, _ := setupWeb(t, config.VarAdminUser, "ops", config.VarAdminPassword, "s3cret",
		config.VarMetricsUser, "prom", config.VarMetricsPass, "scr4pe")
	_, private := app.WebHandlers(d)
	for name, h := range map[string]http.Handler{"WEB_ADDR": h, "METRICS_ADDR": private} {
		for _, tc := range []struct {
			login string
			want  int
		}{{"", http.StatusUnauthorized}, {"ops:s3cret", http.StatusUnauthorized}, {"prom:guess", http.StatusUnauthorized}, {"prom:scr4pe", http.StatusOK}} {
			var auth map[string]string
			if tc.login != "" {
				auth = basic(tc.login)
			}
			if rec := request(h, http.MethodGet, "/metrics", "", auth); rec.Code != tc.want {
				t.Errorf("%s /metrics as %q: %d, want %d", name, tc.login, rec.Code, tc.want)
			}
		}
		if rec := request(h, http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
			t.Errorf("%s /healthz: %d", name, rec.Code)
		}
	}
}

// The viewer reads asynqmon's API and is refused its changes, even from
// ghlsync's own page; the admin is not.
func TestViewerAsynqmonReadOnly(t *testing.T) {
	t.Parallel()
	h, _, _, _ := setupWeb(t, config.VarAdminUser, "ops", config.VarAdminPassword, "s3cret",
		config.VarViewerUser, "watch", config.VarViewerPassword, "v1ew")
	sameOrigin := func(login string) map[string]string {
		m := basic(login)
		m["Sec-Fetch-Site"] = "same-origin"
		return m
	}
	if rec := request(h, http.MethodGet, "/monitoring/api/queues", "", basic("watch:v1ew")); rec.Code != http.StatusOK {
		t.Errorf("the viewer reading the queues: %d", rec.Code)
	}
	rec := request(h, http.MethodPost, "/monitoring/api/queues/critical:pause", "", sameOrigin("watch:v1ew"))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "changes nothing") {
		t.Errorf("the viewer pausing a queue: %d %s", rec.Code, rec.Body)
	}
	page := request(h, http.MethodGet, "/monitoring/", "", basic("watch:v1ew")).Body.String()
	if !strings.Contains(page, `FLAG_READ_ONLY="true"`) {
		t.Errorf("asynqmon is not read-only for the viewer: %.300s", page)
	}
	if page := request(h, http.MethodGet, "/monitoring/", "", basic("ops:s3cret")).Body.String(); !strings.Contains(page, `FLAG_READ_ONLY="false"`) {
		t.Errorf("asynqmon is read-only for the admin: %.300s", page)
	}
}
