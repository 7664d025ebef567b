package app_test

import (
	"context"
	"encoding/base64"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// asynqmonWrites are every state-changing route of asynqmon v0.7.2's API
// (handler.go), under /monitoring/api.
var asynqmonWrites = []struct{ method, path string }{
	{"DELETE", "/queues/critical"},
	{"POST", "/queues/critical:pause"},
	{"POST", "/queues/critical:resume"},
	{"POST", "/queues/critical/active_tasks/t1:cancel"},
	{"POST", "/queues/critical/active_tasks:cancel_all"},
	{"POST", "/queues/critical/active_tasks:batch_cancel"},
	{"DELETE", "/queues/critical/pending_tasks/t1"},
	{"DELETE", "/queues/critical/pending_tasks:delete_all"},
	{"POST", "/queues/critical/pending_tasks:batch_delete"},
	{"POST", "/queues/critical/pending_tasks/t1:archive"},
	{"POST", "/queues/critical/pending_tasks:archive_all"},
	{"POST", "/queues/critical/pending_tasks:batch_archive"},
	{"DELETE", "/queues/critical/scheduled_tasks/t1"},
	{"DELETE", "/queues/critical/scheduled_tasks:delete_all"},
	{"POST", "/queues/critical/scheduled_tasks:batch_delete"},
	{"POST", "/queues/critical/scheduled_tasks/t1:run"},
	{"POST", "/queues/critical/scheduled_tasks:run_all"},
	{"POST", "/queues/critical/scheduled_tasks:batch_run"},
	{"POST", "/queues/critical/scheduled_tasks/t1:archive"},
	{"POST", "/queues/critical/scheduled_tasks:archive_all"},
	{"POST", "/queues/critical/scheduled_tasks:batch_archive"},
	{"DELETE", "/queues/critical/retry_tasks/t1"},
	{"DELETE", "/queues/critical/retry_tasks:delete_all"},
	{"POST", "/queues/critical/retry_tasks:batch_delete"},
	{"POST", "/queues/critical/retry_tasks/t1:run"},
	{"POST", "/queues/critical/retry_tasks:run_all"},
	{"POST", "/queues/critical/retry_tasks:batch_run"},
	{"POST", "/queues/critical/retry_tasks/t1:archive"},
	{"POST", "/queues/critical/retry_tasks:archive_all"},
	{"POST", "/queues/critical/retry_tasks:batch_archive"},
	{"DELETE", "/queues/critical/archived_tasks/t1"},
	{"DELETE", "/queues/critical/archived_tasks:delete_all"},
	{"POST", "/queues/critical/archived_tasks:batch_delete"},
	{"POST", "/queues/critical/archived_tasks/t1:run"},
	{"POST", "/queues/critical/archived_tasks:run_all"},
	{"POST", "/queues/critical/archived_tasks:batch_run"},
	{"DELETE", "/queues/critical/completed_tasks/t1"},
	{"DELETE", "/queues/critical/completed_tasks:delete_all"},
	{"POST", "/queues/critical/completed_tasks:batch_delete"},
	{"DELETE", "/queues/critical/groups/g1/aggregating_tasks/t1"},
	{"DELETE", "/queues/critical/groups/g1/aggregating_tasks:delete_all"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks:batch_delete"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks/t1:run"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks:run_all"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks:batch_run"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks/t1:archive"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks:archive_all"},
	{"POST", "/queues/critical/groups/g1/aggregating_tasks:batch_archive"},
}

// ghlsyncPaths are ghlsync's own routes on WEB_ADDR. None changes state
// on an unsafe method today but the webhook; the guard must still refuse
// every unsafe method on each, so that a route added later is covered.
var ghlsyncPaths = []string{"/", "/api/locations", "/alerts", "/api/auth/connect", "/api/auth/callback?state=s&code=c",
	"/metrics", "/readyz", "/healthz", "/monitoring/", "/api/anything",
	"/locations/locA/refresh", "/locations/locA/sync-patients", "/schedules/token-refresh/set", "/schedules/token-refresh/run"}

// crossSite are what browsers send with a request another site's page
// makes: a modern browser's Sec-Fetch-Site, an older one's Origin only.
var crossSite = map[string]map[string]string{
	"cross-site form":       {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "text/plain"},
	"cross-site fetch":      {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "application/json"},
	"sibling site":          {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.ghlsync.example"},
	"older browser":         {"Origin": "https://evil.example", "Content-Type": "text/plain"},
	"sandboxed iframe":      {"Origin": "null"},
	"no proof of an origin": {},
}

// webMode is one way the admin pages can be set up: the environment, and
// what the operator's browser adds to each request.
type webMode struct {
	name   string
	env    []string
	remote string
	auth   map[string]string
}

var webModes = []webMode{
	{"loopback without password", nil, "127.0.0.1:4000", nil},
	{"basic auth, right password", []string{config.VarAdminUser, "ops", config.VarAdminPassword, "s3cret"}, "203.0.113.9:4000",
		map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))}},
}

func (m webMode) do(h http.Handler, method, target, host string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, publicURL+target, strings.NewReader(`{"task_ids":["t1"]}`))
	req.RemoteAddr = m.remote
	if host != "" {
		req.Host = host
	}
	for k, v := range m.auth {
		req.Header.Set(k, v)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// queues puts a task in each of ghlsync's queues, so that asynq knows them
// and there is something to pause, delete or run, and returns an
// inspector.
func queues(t *testing.T, d *app.Deps) *asynq.Inspector {
	t.Helper()
	client := asynq.NewClientFromRedisClient(d.Redis)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if _, err := client.Enqueue(asynq.NewTask("ghl:test", []byte(`{"location_id":"locA"}`)), asynq.Queue(q), asynq.TaskID("t1")); err != nil {
			t.Fatal(err)
		}
	}
	return asynq.NewInspectorFromRedisClient(d.Redis)
}

// untouched fails the test when a queue was paused or lost its task.
func untouched(t *testing.T, insp *asynq.Inspector, after string) {
	t.Helper()
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("after %s: queue %s: %v", after, q, err)
		}
		if info.Paused || info.Pending != 1 {
			t.Errorf("after %s: queue %s paused %v with %d pending, want running with 1", after, q, info.Paused, info.Pending)
		}
	}
}

// Test 2 of issue 14: a cross-site request to every state-changing route,
// asynqmon's and ghlsync's own, is refused in every auth mode; a wrong
// Host is refused; a forwarded request in loopback mode is refused. Then
// the operator's own page does pause a queue, which /readyz and the status
// page show.
func TestWebRefusesOtherSites(t *testing.T) {
	t.Parallel()
	for _, m := range webModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			h, d, _, _ := setupWeb(t, m.env...)
			insp := queues(t, d)

			for name, header := range crossSite {
				for _, r := range asynqmonWrites {
					rec := m.do(h, r.method, "/monitoring/api"+r.path, "", header)
					if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "forbidden") {
						t.Errorf("%s: %s %s: %d %q, want 403", name, r.method, r.path, rec.Code, rec.Body)
					}
				}
				for _, path := range ghlsyncPaths {
					for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
						if rec := m.do(h, method, path, "", header); rec.Code != http.StatusForbidden {
							t.Errorf("%s: %s %s: %d, want 403", name, method, path, rec.Code)
						}
					}
				}
			}
			untouched(t, insp, "cross-site requests")

			// DNS rebinding: the attacker's name points at this server, so
			// its page is "same-origin" with it, but sends its own Host.
			rebound := "attacker.example:8080"
			for _, path := range []string{"/", "/api/locations", "/monitoring/", "/monitoring/api/queues", "/metrics"} {
				if rec := m.do(h, http.MethodGet, path, rebound, nil); rec.Code != http.StatusMisdirectedRequest {
					t.Errorf("GET %s for Host %s: %d, want 421", path, rebound, rec.Code)
				}
			}
			if rec := m.do(h, http.MethodPost, "/monitoring/api/queues/critical:pause", rebound,
				map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + rebound}); rec.Code != http.StatusMisdirectedRequest {
				t.Errorf("a rebound page's pause: %d, want 421", rec.Code)
			}
			untouched(t, insp, "requests for another Host")

			// The operator's own page.
			own := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": publicURL, "Content-Type": "application/json"}
			if rec := m.do(h, http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusOK {
				t.Fatalf("/readyz before the pause: %d %s", rec.Code, rec.Body)
			}
			if rec := m.do(h, http.MethodPost, "/monitoring/api/queues/critical:pause", "", own); rec.Code != http.StatusNoContent {
				t.Fatalf("pause from asynqmon's own page: %d %s", rec.Code, rec.Body)
			}
			rec := m.do(h, http.MethodGet, "/readyz", "", nil)
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "queue critical is paused") || strings.Contains(rec.Body.String(), "default") {
				t.Errorf("/readyz with critical paused: %d %q, want 503 naming critical only", rec.Code, rec.Body)
			}
			if rec := m.do(h, http.MethodGet, "/", "", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Queue critical is paused") {
				t.Errorf("status page with critical paused: %d, does not say so:\n%s", rec.Code, rec.Body)
			}
			if rec := m.do(h, http.MethodPost, "/monitoring/api/queues/critical:resume", "", own); rec.Code != http.StatusNoContent {
				t.Fatalf("resume: %d %s", rec.Code, rec.Body)
			}
			if rec := m.do(h, http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusOK {
				t.Errorf("/readyz after the resume: %d %s", rec.Code, rec.Body)
			}
			if rec := m.do(h, http.MethodGet, "/", "", nil); strings.Contains(rec.Body.String(), "is paused") {
				t.Errorf("status page after the resume still says paused")
			}
		})
	}
}

// Without a password, a request a proxy on this host passed on is refused:
// its loopback peer address says nothing about who sent it.
func TestWebLoopbackRefusesProxied(t *testing.T) {
	t.Parallel()
	m := webModes[0]
	h, d, _, _ := setupWeb(t)
	insp := queues(t, d)
	for _, header := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		for _, path := range []string{"/", "/api/locations", "/monitoring/api/queues", "/metrics"} {
			if rec := m.do(h, http.MethodGet, path, "", map[string]string{header: "203.0.113.9"}); rec.Code != http.StatusForbidden {
				t.Errorf("GET %s with %s: %d, want 403", path, header, rec.Code)
			}
		}
		rec := m.do(h, http.MethodPost, "/monitoring/api/queues/critical:pause", "",
			map[string]string{header: "203.0.113.9", "Sec-Fetch-Site": "same-origin", "Origin": publicURL})
		if rec.Code != http.StatusForbidden {
			t.Errorf("pause with %s: %d, want 403", header, rec.Code)
		}
	}
	untouched(t, insp, "proxied requests")
	if rec := m.do(h, http.MethodGet, "/metrics", "", nil); rec.Code != http.StatusOK {
		t.Errorf("/metrics on loopback: %d", rec.Code)
	}
	if rec := (webMode{remote: "203.0.113.9:4000"}).do(h, http.MethodGet, "/metrics", "", nil); rec.Code != http.StatusForbidden {
		t.Errorf("/metrics from another host without a password: %d, want 403", rec.Code)
	}
}

// With METRICS_ADDR, the web process serves /metrics and /readyz there,
// without credentials, and no longer on WEB_ADDR.
func TestWebHandlersSplitMetrics(t *testing.T) {
	t.Parallel()
	_, d, stack, _ := setupWeb(t, config.VarAdminPassword, "s3cret")
	stack.Connect(t, "locA", time.Now().Add(time.Hour))
	public, private := app.WebHandlers(d)
	anyone := webMode{remote: "203.0.113.9:4000"}
	for _, path := range []string{"/metrics", "/readyz"} {
		if rec := anyone.do(public, http.MethodGet, path, "", nil); rec.Code != http.StatusNotFound {
			t.Errorf("WEB_ADDR %s: %d, want 404", path, rec.Code)
		}
	}
	if rec := anyone.do(public, http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("WEB_ADDR /healthz: %d", rec.Code)
	}
	if rec := anyone.do(public, http.MethodGet, "/", "", nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("WEB_ADDR status page without credentials: %d", rec.Code)
	}
	if rec := anyone.do(private, http.MethodGet, "/metrics", "10.0.0.5:9090", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `location="locA"`) {
		t.Errorf("METRICS_ADDR /metrics: %d %.200s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/readyz", "/healthz"} {
		if rec := anyone.do(private, http.MethodGet, path, "10.0.0.5:9090", nil); rec.Code != http.StatusOK {
			t.Errorf("METRICS_ADDR %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// RunWeb with a METRICS_ADDR serves /metrics there, open, and not on
// WEB_ADDR; it stops when its context ends.
func TestRunWebMetricsAddr(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	webAddr, metricsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg, err := config.NewLoader(flag.NewFlagSet("web", flag.ContinueOnError),
		testenv.Getenv(stack.Env(config.VarWebAddr, webAddr, config.VarMetricsAddr, metricsAddr)), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunWeb(ctx, cfg, app.NewLogger(&testenv.Buffer{}, cfg.LogLevel)) }()
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.Eventually(t, 10*time.Second, "METRICS_ADDR to serve /metrics", func() bool {
		return status("http://"+metricsAddr+"/metrics") == http.StatusOK
	})
	for path, want := range map[string]int{"/metrics": http.StatusNotFound, "/readyz": http.StatusNotFound, "/healthz": http.StatusOK} {
		if got := status("http://" + webAddr + path); got != want {
			t.Errorf("WEB_ADDR %s: %d, want %d", path, got, want)
		}
	}
	if got := status("http://" + metricsAddr + "/readyz"); got != http.StatusOK {
		t.Errorf("METRICS_ADDR /readyz: %d", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunWeb: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunWeb did not stop after its context ended")
	}
}
