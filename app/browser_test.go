package app_test

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// browserEnv is a web process and a worker in this test process, on a
// stack of the test's own, and a headless Chromium to drive the pages.
type browserEnv struct {
	*storetest.Stack
	d       *app.Deps
	url     string
	browser context.Context
}

const (
	browserAdmin  = "ops:adm1n-pw"
	browserViewer = "watch:v1ewer-pw"
)

// setupBrowser starts the web process and a worker on a new stack, and
// Debian's chromium; the test is skipped when there is no chromium.
func setupBrowser(t *testing.T) *browserEnv {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no browser: the browser tests drive Debian's chromium, which is not on PATH (apt-get install chromium; .ci/run installs it)")
	}
	stack := storetest.NewStack(t, ghltest.Options{})
	admin, viewer := strings.SplitN(browserAdmin, ":", 2), strings.SplitN(browserViewer, ":", 2)
	cfg, err := config.NewLoader(flag.NewFlagSet("web", flag.ContinueOnError), testenv.Getenv(stack.Env(
		config.VarAdminUser, admin[0], config.VarAdminPassword, admin[1],
		config.VarViewerUser, viewer[0], config.VarViewerPassword, viewer[1])), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.MetricsAddr = ""
	ctx, cancel := context.WithCancel(context.Background())
	d, err := app.Open(ctx, cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	workerDone := make(chan error, 1)
	go func() { workerDone <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()
	srv := httptest.NewServer(app.WebHandler(d))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-workerDone; err != nil {
			t.Errorf("worker: %v", err)
		}
		d.Close()
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root, as in a container.
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return &browserEnv{Stack: stack, d: d, url: srv.URL, browser: browser}
}

// tab opens a tab logged in as login ("user:password"). When the test
// fails, a screenshot and the HTML of what the tab shows are written to a
// directory that outlives the test, and their paths logged.
func (e *browserEnv) tab(t *testing.T, login string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser)
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel() })
	t.Cleanup(func() {
		if t.Failed() {
			screenshot(t, ctx)
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	auth := network.Headers{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(login))}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: auth}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// screenshot keeps what a failed test's tab shows, in
// $GHLSYNC_SCREENSHOTS or the system's temporary directory.
func screenshot(t *testing.T, ctx context.Context) {
	dir := os.Getenv("GHLSYNC_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ghlsync-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "_") + time.Now().Format("-150405.000")
	shotCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	url, _ := chromedp.Run(shotCtx, chromedp.Location())
	html, _ := chromedp.Run(shotCtx, chromedp.OuterHTML(chromedp.CSS("html")))
	png, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	base := filepath.Join(dir, name)
	if err := os.WriteFile(base+".png", png, 0o644); err == nil {
		os.WriteFile(base+".html", []byte(html), 0o644)
		t.Logf("the page at %s when the test failed: %s.png (and .html)", url, base)
	}
}

// text returns the text of the first element sel matches on the page at
// path, failing the test when there is none within the tab's timeout.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

func (e *browserEnv) open(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(e.url+path)); err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
}

// Issue 12, test 1: the operator's pages in a real browser, with a worker
// behind them.
func TestBrowser(t *testing.T) {
	t.Parallel()
	e := setupBrowser(t)
	ctx := context.Background()

	t.Run("empty overview says how to connect", func(t *testing.T) {
		tab := e.tab(t, browserAdmin)
		e.open(t, tab, "/")
		if got := text(t, tab, "#summary"); got != "No location is connected yet." {
			t.Errorf("summary %q", got)
		}
		if got := text(t, tab, "#empty"); !strings.Contains(got, "To connect the first location, open Connect a location") {
			t.Errorf("the empty state does not say how to connect: %q", got)
		}
	})

	// Three locations: one syncs, one has a patient GHL refuses, one
	// needs reconnecting.
	for _, loc := range []string{"loc-sync", "loc-failed", "loc-revoked"} {
		e.Connect(t, loc, time.Now().Add(20*time.Hour))
	}
	if err := e.Store.SetStatus(ctx, "loc-revoked", store.StatusNeedsReauth, "GHL refused the refresh token"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SetLocationInfo(ctx, "loc-sync", "Downtown Physio", "America/Denver"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc-sync", Notify: true, PhoneRegion: "GB",
		Fields: "appointment.title,patient.email", TitleTemplate: "{{practitioner}}: session", RefuseCustomFields: true}); err != nil {
		t.Fatal(err)
	}
	err := e.Store.InsertPatients(ctx, []store.Patient{
		{LocationID: "loc-sync", ExternalID: "p-1", FirstName: "Ada", Email: "ada@example.com"},
		{LocationID: "loc-failed", ExternalID: "p-good", FirstName: "Alan", Email: "alan@example.com"},
		{LocationID: "loc-failed", ExternalID: "p-bad", FirstName: "Bad", Email: "not-an-email"},
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("overview counts add up", func(t *testing.T) {
		tab := e.tab(t, browserAdmin)
		e.open(t, tab, "/")
		if got := text(t, tab, "#summary"); got != "3 locations: 2 active, 1 needs reconnecting" {
			t.Errorf("summary %q", got)
		}
		revoked := text(t, tab, `tr[data-location="loc-revoked"]`)
		if !strings.Contains(revoked, "needs_reauth") || !strings.Contains(revoked, "Reconnect") || !strings.Contains(revoked, "no live token") {
			t.Errorf("the revoked location's row: %q; want needs_reauth, Reconnect and no expiry", revoked)
		}
		if live := text(t, tab, `tr[data-location="loc-sync"]`); !regexp.MustCompile(`in 19h59m|in 20h0m`).MatchString(live) ||
			!strings.Contains(live, "Downtown Physio") {
			t.Errorf("the active location's row %q; want its GHL name and its token's expiry", live)
		}
	})

	t.Run("sync now produces a run", func(t *testing.T) {
		tab := e.tab(t, browserAdmin)
		e.open(t, tab, "/locations/loc-sync")
		if got := text(t, tab, "h1"); got != "Downtown Physio loc-sync" {
			t.Errorf("the page's title %q; want the GHL name and the id", got)
		}
		if got := text(t, tab, "#settings"); !regexp.MustCompile(`appointments ghlsync writes\s+on`).MatchString(got) || !strings.Contains(got, "GB") ||
			!strings.Contains(got, "appointment.title,patient.email") || !strings.Contains(got, "{{practitioner}}: session") ||
			!regexp.MustCompile(`custom_fields\)\s+refused`).MatchString(got) {
			t.Errorf("settings %q; want automations on, phone region GB, the allow-list, the title template and unknown custom field keys refused", got)
		}
		if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`button[value="sync-patients"]`)),
			chromedp.WaitVisible(chromedp.CSS(`p.notice`))); err != nil {
			t.Fatalf("pressing Sync patients now: %v", err)
		}
		if got := text(t, tab, "p.notice"); !strings.Contains(got, "sync-patients of location loc-sync enqueued as task") {
			t.Errorf("notice %q", got)
		}
		var run store.SyncRun
		testenv.Eventually(t, 30*time.Second, "the button's sync run to finish", func() bool {
			runs, err := e.Store.SyncRuns(ctx, "loc-sync", "patients", 1)
			if err != nil || len(runs) == 0 || runs[0].FinishedAt == nil {
				return false
			}
			run = runs[0]
			return true
		})
		e.open(t, tab, "/locations/loc-sync")
		row := text(t, tab, fmt.Sprintf(`#runs tr[data-run="%d"]`, run.ID))
		if !strings.Contains(row, "patients") || !strings.Contains(row, "completed") || !strings.Contains(row, "1 created") {
			t.Errorf("the run's row %q; want a completed patients run that created 1", row)
		}
		if n := len(e.Fake.Contacts("loc-sync")); n != 1 {
			t.Errorf("GHL holds %d contacts of loc-sync, want 1", n)
		}
	})

	t.Run("location page lists its failed record", func(t *testing.T) {
		task, err := tasks.NewPatientsSyncTask("loc-failed")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := asynq.NewClientFromRedisClient(e.d.Redis).EnqueueContext(ctx, task); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "loc-failed's sync to finish", func() bool {
			runs, err := e.Store.SyncRuns(ctx, "loc-failed", "patients", 1)
			return err == nil && len(runs) == 1 && runs[0].FinishedAt != nil
		})
		tab := e.tab(t, browserAdmin)
		e.open(t, tab, "/locations/loc-failed")
		failed := text(t, tab, "#failed")
		if !strings.Contains(failed, "p-bad") || !strings.Contains(failed, "email must be an email") || strings.Contains(failed, "p-good") {
			t.Errorf("failed records %q; want p-bad with GHL's reason, and not p-good", failed)
		}
	})

	t.Run("schedules page changes an interval", func(t *testing.T) {
		if _, err := scheduler.Setup(ctx, e.Store, app.DefaultSchedules, time.Now(), false); err != nil {
			t.Fatal(err)
		}
		tab := e.tab(t, browserAdmin)
		e.open(t, tab, "/schedules")
		every := chromedp.CSS(`tr[data-schedule="patient-sync"] input[name="every"]`)
		change := chromedp.CSS(`tr[data-schedule="patient-sync"] form[action$="/set"] button`)
		if err := chromedp.Do(tab, chromedp.SetValue(every, "soon"), chromedp.Click(change),
			chromedp.WaitVisible(chromedp.CSS(`p.error`))); err != nil {
			t.Fatalf("submitting a bad interval: %v", err)
		}
		if got := text(t, tab, "p.error"); got != `patient-sync: bad schedule: --every "soon" is not a duration such as 30s, 10m or 1h` {
			t.Errorf("error %q; want the command line's one line", got)
		}
		if err := chromedp.Do(tab, chromedp.SetValue(every, "45m"), chromedp.Click(change),
			chromedp.WaitVisible(chromedp.CSS(`p.notice`))); err != nil {
			t.Fatalf("submitting 45m: %v", err)
		}
		if got := text(t, tab, "p.notice"); !strings.HasPrefix(got, "patient-sync: every 45m; next run ") {
			t.Errorf("notice %q", got)
		}
		if got := text(t, tab, `tr[data-schedule="patient-sync"]`); !strings.Contains(got, "every 45m") {
			t.Errorf("the schedule's row %q does not show the new interval", got)
		}
		row, err := e.Store.Schedule(ctx, "patient-sync")
		if err != nil || row.EverySeconds != 45*60 {
			t.Errorf("patient-sync in the database: %+v, %v; want every 2700 s", row, err)
		}
	})

	t.Run("viewer is refused a POST", func(t *testing.T) {
		tab := e.tab(t, browserViewer)
		e.open(t, tab, "/locations/loc-sync")
		buttons, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("form[method=post]").length`))
		if err != nil {
			t.Fatal(err)
		}
		if buttons != 0 {
			t.Errorf("the viewer's page has %d forms", buttons)
		}
		if got := text(t, tab, "nav"); !strings.Contains(got, "read only") {
			t.Errorf("the viewer is not told the pages are read only: %q", got)
		}
		before, err := e.Store.SyncRuns(ctx, "loc-sync", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		// The admin's form, sent by the viewer: its token is the admin's.
		post := `fetch("/locations/loc-sync/sync-patients", {method: "POST", body: new URLSearchParams({csrf: "1.x"})})
			.then(async r => ({status: r.status, body: await r.text()}))`
		res, err := chromedp.Run(tab, chromedp.Evaluate[struct {
			Status int    `json:"status"`
			Body   string `json:"body"`
		}](post, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		status, body := res.Status, res.Body
		if status != 403 || !strings.Contains(body, "changes nothing") {
			t.Errorf("the viewer's POST: %d %q, want 403 saying the viewer changes nothing", status, body)
		}
		e.open(t, tab, "/monitoring/")
		readOnly, err := chromedp.Run(tab, chromedp.Evaluate[string](`window.FLAG_READ_ONLY`))
		if err != nil {
			t.Fatal(err)
		}
		if readOnly != "true" {
			t.Errorf("asynqmon for the viewer: FLAG_READ_ONLY %q, want read-only", readOnly)
		}
		after, err := e.Store.SyncRuns(ctx, "loc-sync", "", 100)
		if err != nil || len(after) != len(before) {
			t.Errorf("%d sync runs after the viewer's POST, %d before (%v)", len(after), len(before), err)
		}
	})
}
