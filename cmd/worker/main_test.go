package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

func TestMain(m *testing.M) {
	testenv.RunProcess("worker", func() int {
		ctx, stop := app.SignalContext(context.Background())
		defer stop()
		return run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	})
	os.Exit(m.Run())
}

type bundle struct {
	*storetest.Stack
	client *asynq.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	opt, err := asynq.ParseRedisURI(stack.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{Stack: stack, client: asynq.NewClient(opt), insp: asynq.NewInspector(opt)}
	t.Cleanup(func() {
		b.client.Close()
		b.insp.Close()
	})
	return b
}

func (b *bundle) startWorker(t *testing.T, extraEnv ...string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, "worker", b.Env(extraEnv...), "--token-concurrency", "10")
}

func (b *bundle) enqueueRefresh(t *testing.T, loc string) *asynq.TaskInfo {
	t.Helper()
	task, err := tasks.NewRefreshTask(loc, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func (b *bundle) completed(t *testing.T) int {
	t.Helper()
	qi, err := b.insp.GetQueueInfo(tasks.QueueCritical)
	if err != nil {
		return 0
	}
	if qi.Archived > 0 {
		t.Fatalf("%d tasks failed for good", qi.Archived)
	}
	return qi.Completed
}

// Three worker processes, 50 refresh tasks of one location enqueued before
// they start: one GHL call, no spent token presented again, every task
// succeeds; a refresh asked for after that one completed makes a new call.
func TestSingleFlightAcrossWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Connect(t, "loc1", time.Now().Add(time.Hour))
	// A slow GHL widens the window in which the workers race.
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: 200 * time.Millisecond})
	for range 50 {
		b.enqueueRefresh(t, "loc1")
	}
	for range 3 {
		b.startWorker(t)
	}
	testenv.Eventually(t, 60*time.Second, "50 refresh tasks to complete", func() bool { return b.completed(t) == 50 })
	if calls, reuses := b.Fake.TokenCalls("loc1"), b.Fake.SpentReuses("loc1"); calls != 1 || reuses != 0 {
		t.Fatalf("GHL saw %d token calls and %d spent-token reuses; want 1 and 0", calls, reuses)
	}
	if !b.HoldsCurrent(t, "loc1") {
		t.Fatal("the database does not hold the current token")
	}

	b.enqueueRefresh(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "the later refresh to complete", func() bool { return b.completed(t) == 51 })
	if calls := b.Fake.TokenCalls("loc1"); calls != 2 {
		t.Fatalf("token calls = %d after a later request, want 2", calls)
	}
	if !b.HoldsCurrent(t, "loc1") {
		t.Fatal("the database does not hold the current token")
	}
}

// A worker killed while its refresh call waits at GHL, before GHL acted on
// it: another worker runs the refresh again and it succeeds.
func TestCrashBeforeGHLActed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Connect(t, "loc1", time.Now().Add(time.Hour))
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc1", Latency: time.Minute, Times: 1})
	w1 := b.startWorker(t)
	b.enqueueRefresh(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "the refresh call to reach GHL", func() bool {
		return b.Fake.Requests("/oauth/token", "loc1") == 1
	})
	w1.Kill()
	if n := b.Fake.Rotations("loc1"); n != 0 {
		t.Fatalf("GHL rotated the token %d times before the crash; the test wants 0", n)
	}
	b.startWorker(t)
	testenv.Eventually(t, 40*time.Second, "another worker to complete the refresh", func() bool {
		return b.Fake.Rotations("loc1") == 1 && b.HoldsCurrent(t, "loc1")
	})
	if n := b.Fake.InvalidGrants("loc1"); n != 0 {
		t.Fatalf("invalid grants = %d", n)
	}
}

// A worker killed after GHL rotated the token but before the answer
// arrived: another worker retries with the same refresh token inside GHL's
// 30 s grace window and the location keeps a valid token.
func TestCrashAfterGHLRotated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Connect(t, "loc1", time.Now().Add(time.Hour))
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc1", LatencyAfter: time.Minute, Times: 1})
	rotated := make(chan time.Time, 1)
	b.Fake.SetOnTokenIssued(func(loc string) {
		select {
		case rotated <- time.Now():
		default:
		}
	})
	w1 := b.startWorker(t)
	b.enqueueRefresh(t, "loc1")
	var at time.Time
	select {
	case at = <-rotated:
	case <-time.After(30 * time.Second):
		t.Fatal("GHL never saw the refresh")
	}
	w1.Kill()
	b.startWorker(t)
	testenv.Eventually(t, 40*time.Second, "the location to hold a valid token again", func() bool {
		return b.HoldsCurrent(t, "loc1")
	})
	if d := time.Since(at); d > 30*time.Second {
		t.Fatalf("recovered %s after the rotation: outside GHL's grace", d)
	}
	if g, inv := b.Fake.GraceReuses("loc1"), b.Fake.InvalidGrants("loc1"); g != 1 || inv != 0 {
		t.Fatalf("grace reuses %d, invalid grants %d; want 1 and 0", g, inv)
	}
}

// A worker's refresh lock is lost (Redis forgets it, as a restart without
// persistence would) while GHL holds its call; two newer refreshes run and
// are stored; then GHL answers the held call, with the older rotation (its
// grace window gives the spent token's successor). That late answer is
// discarded: the newest token stays stored and the location active.
func TestLateAnswerAfterLostLock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Connect(t, "loc1", time.Now().Add(time.Hour))
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "loc1", Latency: 10 * time.Second, Times: 1})
	w := b.startWorker(t)
	b.enqueueRefresh(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "the first refresh call to wait at GHL", func() bool {
		return b.Fake.Requests("/oauth/token", "loc1") == 1
	})
	if err := b.Redis(t).Del(context.Background(), "ghlsync:refresh:lock:loc1").Err(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		b.enqueueRefresh(t, "loc1")
		testenv.Eventually(t, 8*time.Second, fmt.Sprintf("newer refresh %d to be stored", i), func() bool {
			return b.Fake.Rotations("loc1") == i && b.completed(t) == i && b.HoldsCurrent(t, "loc1")
		})
	}
	newest, _ := b.StoredTokens(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "the late answer to be handled", func() bool { return b.completed(t) == 3 })
	if n := b.Fake.GraceReuses("loc1"); n != 1 {
		t.Fatalf("grace reuses = %d, want 1: the late call must have got the older rotation", n)
	}
	if !b.HoldsCurrent(t, "loc1") {
		t.Fatal("after the late answer the database does not hold the current token of an active location")
	}
	if got, _ := b.StoredTokens(t, "loc1"); got.RefreshToken != newest.RefreshToken {
		t.Fatal("the late answer replaced the newest stored token")
	}
	if !strings.Contains(w.Output.String(), "level=WARN msg=\"GHL answered after a newer token was stored") {
		t.Fatalf("no WARN line about the discarded answer:\n%s", w.Output)
	}
	// The newest token works.
	b.enqueueRefresh(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "a refresh with the stored token", func() bool {
		return b.completed(t) == 4 && b.Fake.Rotations("loc1") == 3 && b.HoldsCurrent(t, "loc1")
	})
	if n := b.Fake.InvalidGrants("loc1"); n != 0 {
		t.Fatalf("invalid grants = %d", n)
	}
}

// The only worker is killed while eight refreshes wait for GHL's answers
// (GHL has rotated each token), and is started again 20 s later, while GHL
// takes 2 s per token call (as under load). Each location's refresh is
// retried with the spent refresh token inside GHL's 30 s grace window,
// counted from its rotation, and ends active: the returning worker takes
// up everything in flight at start and side by side (one after another,
// eight 2 s calls would end outside the window).
func TestOnlyWorkerBackAfter20s(t *testing.T) {
	t.Parallel()
	b := setup(t)
	locs := []string{"loc1", "loc2", "loc3", "loc4", "loc5", "loc6", "loc7", "loc8"}
	for _, loc := range locs {
		b.Connect(t, loc, time.Now().Add(time.Hour))
	}
	// The first call of each location is acted on and its answer never
	// arrives; every later token call takes 2 s.
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", LatencyAfter: time.Minute, Times: len(locs)})
	b.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: 2 * time.Second})
	var mu sync.Mutex
	rotatedAt := map[string]time.Time{}
	b.Fake.SetOnTokenIssued(func(loc string) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := rotatedAt[loc]; !ok {
			rotatedAt[loc] = time.Now()
		}
	})
	w1 := b.startWorker(t)
	for _, loc := range locs {
		b.enqueueRefresh(t, loc)
	}
	testenv.Eventually(t, 30*time.Second, "GHL to rotate every token", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(rotatedAt) == len(locs)
	})
	w1.Kill()
	killed := time.Now()
	for _, loc := range locs {
		if b.HoldsCurrent(t, loc) {
			t.Fatalf("%s holds its rotated token before the restart: the test did not interrupt the refresh\n%s", loc, w1.Output)
		}
	}
	// The worker stays away for 20 s: the outage being simulated.
	time.Sleep(20*time.Second - time.Since(killed))
	restarted := time.Now()
	b.startWorker(t)
	testenv.Eventually(t, 15*time.Second, "every location to hold a valid token again", func() bool {
		for _, loc := range locs {
			if !b.HoldsCurrent(t, loc) {
				return false
			}
		}
		return true
	})
	t.Logf("every location recovered %.1f s after the restart", time.Since(restarted).Seconds())
	mu.Lock()
	defer mu.Unlock()
	for _, loc := range locs {
		if g, inv := b.Fake.GraceReuses(loc), b.Fake.InvalidGrants(loc); g != 1 || inv != 0 {
			t.Errorf("%s: grace reuses %d, invalid grants %d; want 1 and 0", loc, g, inv)
		}
		if d := time.Since(rotatedAt[loc]); d > 30*time.Second {
			t.Errorf("%s: recovered %s after its rotation, outside GHL's grace", loc, d)
		}
	}
}

// After connect and refresh with debug logging, no token and not the client
// secret appear in a log line, a task payload or result, Redis, or a
// database column.
func TestSecretsNeverLeave(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Fake.AddLocation("loc1", "comp1")
	env := b.Env("LOG_LEVEL", "debug")

	// The web side, in process, with its log captured.
	webLog := &testenv.Buffer{}
	loader := config.NewLoader(flag.NewFlagSet("web", flag.ContinueOnError), testenv.Getenv(env), "")
	cfg, err := loader.Load()
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(webLog, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := app.WebHandler(d)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/auth/connect", nil))
	consent, _ := url.Parse(rec.Header().Get("Location"))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/auth/callback?"+url.Values{
		"code": {b.Fake.AuthorizeCode("Location", "loc1")}, "state": {consent.Query().Get("state")}}.Encode(), nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	first, _ := b.StoredTokens(t, "loc1")

	w := testenv.StartProcess(t, "worker", env)
	b.enqueueRefresh(t, "loc1")
	testenv.Eventually(t, 30*time.Second, "the refresh to complete", func() bool { return b.completed(t) == 1 })
	second, _ := b.StoredTokens(t, "loc1")
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("the token was not refreshed")
	}
	if code := w.Stop(15 * time.Second); code != 0 {
		t.Fatalf("worker exit status %d after SIGTERM, want 0", code)
	}

	secrets := map[string]string{
		"first access token": first.AccessToken, "first refresh token": first.RefreshToken,
		"second access token": second.AccessToken, "second refresh token": second.RefreshToken,
		"client secret": storetest.ClientSecret,
	}
	places := map[string]string{
		"web log":    webLog.String(),
		"worker log": w.Output.String(),
		"redis":      dumpRedis(t, b),
		"database":   dumpTable(t, b, "credentials"),
	}
	for _, ti := range listCompleted(t, b) {
		places["task "+ti.ID] = string(ti.Payload) + string(ti.Result)
	}
	if !strings.Contains(places["worker log"], "GHL token refreshed for location loc1") {
		t.Fatalf("the worker log does not show the refresh:\n%s", places["worker log"])
	}
	for where, text := range places {
		for what, secret := range secrets {
			if secret == "" {
				t.Fatalf("%s is empty", what)
			}
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
}

func listCompleted(t *testing.T, b *bundle) []*asynq.TaskInfo {
	t.Helper()
	tis, err := b.insp.ListCompletedTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if len(tis) == 0 {
		t.Fatal("no completed tasks")
	}
	return tis
}

func dumpRedis(t *testing.T, b *bundle) string {
	t.Helper()
	ctx := context.Background()
	rc := b.Redis(t)
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, k := range keys {
		switch rc.Type(ctx, k).Val() {
		case "string":
			fmt.Fprintln(&out, k, rc.Get(ctx, k).Val())
		case "hash":
			fmt.Fprintln(&out, k, rc.HGetAll(ctx, k).Val())
		case "list":
			fmt.Fprintln(&out, k, rc.LRange(ctx, k, 0, -1).Val())
		case "set":
			fmt.Fprintln(&out, k, rc.SMembers(ctx, k).Val())
		case "zset":
			fmt.Fprintln(&out, k, rc.ZRange(ctx, k, 0, -1).Val())
		}
	}
	return out.String()
}

func dumpTable(t *testing.T, b *bundle, table string) string {
	t.Helper()
	var rows []map[string]any
	if err := storetest.DB(t, b.DatabaseURL).Table(table).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s is empty", table)
	}
	return fmt.Sprint(rows)
}

func TestBadConfigExits2(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"GHL_CLIENT_ID": "id", "GHL_CLIENT_SECRET": "s3cr3t-value", "TOKEN_ENCRYPTION_KEY": testenv.NewKey(t),
		"DATABASE_URL": "sqlite://" + t.TempDir() + "/x.db", "REDIS_URL": "redis://127.0.0.1:1/0",
	}
	for _, tc := range []struct {
		name, key, value, wantVar string
		args                      []string
	}{
		{name: "missing client id", key: "GHL_CLIENT_ID", value: "", wantVar: "GHL_CLIENT_ID"},
		{name: "bad key", key: "TOKEN_ENCRYPTION_KEY", value: "short", wantVar: "TOKEN_ENCRYPTION_KEY"},
		{name: "bad window", key: "REFRESH_WINDOW", value: "soon", wantVar: "REFRESH_WINDOW"},
		{name: "bad database url", key: "DATABASE_URL", value: "mysql://x", wantVar: "DATABASE_URL"},
		{name: "bad flag value", args: []string{"--concurrency", "0"}, wantVar: "--concurrency"},
		{name: "flag overrides env", args: []string{"--refresh-window", "-1h"}, wantVar: "REFRESH_WINDOW"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			if tc.key != "" {
				env[tc.key] = tc.value
			}
			var stderr bytes.Buffer
			code := run(context.Background(), tc.args, testenv.Getenv(env), &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.wantVar) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %s", code, stderr.String(), tc.wantVar)
			}
			if strings.Contains(stderr.String(), "s3cr3t-value") {
				t.Fatal("the client secret is printed")
			}
		})
	}
}

func locations(t *testing.T, webAddr string) []web.LocationStatus {
	t.Helper()
	resp, err := http.Get("http://" + webAddr + "/api/locations")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct{ Locations []web.LocationStatus }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Locations
}

// sandboxSynced reports whether the three demo locations are active with
// live tokens and their first patient and appointment syncs completed. A
// pass of the 120 demo patients spends more than a window of GHL's rate
// limit, so it is often two runs (the first hands the rest over while the
// window frees): what tells that a pass is done is its last run's
// outcome, not one run's count (the counts are checked in GHL).
func sandboxSynced(t *testing.T, webAddr string) bool {
	locs := locations(t, webAddr)
	if len(locs) != 3 {
		return false
	}
	for _, l := range locs {
		p, a := l.Syncs["patients"], l.Syncs["appointments"]
		if l.Status != store.StatusActive || l.ExpiresInSeconds <= 0 || p == nil || a == nil ||
			p.Outcome != "completed" || a.Outcome != "completed" {
			return false
		}
	}
	return true
}

// sandboxContacts reads the contacts and appointments the sandbox's fake GHL
// saved, per location.
func sandboxContacts(t *testing.T, dir string) (contacts, appointments map[string]int) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "ghlsync-sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fake := ghltest.New(ghltest.Options{})
	if err := fake.Load(f); err != nil {
		t.Fatal(err)
	}
	contacts, appointments = map[string]int{}, map[string]int{}
	for _, loc := range fake.Locations() {
		contacts[loc], appointments[loc] = len(fake.Contacts(loc)), len(fake.Appointments(loc))
	}
	return contacts, appointments
}

// bannerValue waits for the start-up banner's NAME=value and returns the
// value.
func bannerValue(t *testing.T, p *testenv.Process, name string) string {
	t.Helper()
	var v string
	testenv.Eventually(t, 60*time.Second, "the banner to give "+name, func() bool {
		_, rest, ok := strings.Cut(p.Output.String(), " "+name+"=")
		v, _, _ = strings.Cut(rest, "\n")
		return ok && strings.Contains(rest, "\n")
	})
	return v
}

// The one-command sandbox as a real process: within 60 s the three demo
// locations are connected and synced; SIGTERM ends it with status 0 within
// 10 s; a second start in the same directory resumes, connected, on the
// same Redis address (so the REDIS_URL the first printed still works),
// and a sync then changes nothing in GHL; SIGHUP ends it with status 0.
func TestStandaloneSandbox(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	webAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	env := map[string]string{
		"DATABASE_URL": "sqlite://" + filepath.Join(dir, "ghlsync.db"), "WEB_ADDR": webAddr,
		"METRICS_ADDR": "127.0.0.1:0", "TOKEN_ENCRYPTION_KEY": "", "REDIS_URL": "",
	}
	first := testenv.StartProcess(t, "worker", env, "--standalone", "--sandbox", "--redis-addr", redisAddr)
	firstRedis := bannerValue(t, first, "REDIS_URL")
	if db := bannerValue(t, first, "DATABASE_URL"); db != "sqlite://"+filepath.Join(dir, "ghlsync.db") {
		t.Errorf("the banner gives DATABASE_URL=%s, want the absolute sqlite://%s", db, filepath.Join(dir, "ghlsync.db"))
	}
	testenv.Eventually(t, 60*time.Second, "the demo locations to be connected and synced", func() bool {
		return sandboxSynced(t, webAddr)
	})
	resp, err := http.Get("http://" + webAddr + "/sandbox")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "<td>North Clinic</td><td>119</td><td>60</td>"; resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
		t.Errorf("/sandbox: %d, want a page showing %s:\n%s", resp.StatusCode, want, page)
	}
	before := map[string]web.LocationStatus{}
	for _, l := range locations(t, webAddr) {
		before[l.LocationID] = l
	}
	if code := first.Stop(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0 within 10 s", code)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ghlsync.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token key file: %v, %v; want mode 0600", fi, err)
	}
	contacts, appts := sandboxContacts(t, dir)
	for loc, n := range contacts {
		// One demo patient has an email GHL refuses.
		if n != 119 || appts[loc] != 60 {
			t.Fatalf("%s: GHL holds %d contacts and %d appointments, want 119 and 60", loc, n, appts[loc])
		}
	}

	second := testenv.StartProcess(t, "worker", env, "--standalone", "--sandbox", "--redis-addr", redisAddr)
	if redisURL := bannerValue(t, second, "REDIS_URL"); redisURL != firstRedis || redisURL != "redis://"+redisAddr+"/0" {
		t.Errorf("the second start's REDIS_URL=%s, want the first's, %s, at --redis-addr %s", redisURL, firstRedis, redisAddr)
	}
	testenv.Eventually(t, 30*time.Second, "the locations to show as still connected", func() bool {
		return sandboxSynced(t, webAddr)
	})
	// Sync every location again now, through the REDIS_URL the first
	// start printed: nothing changed, so nothing is sent.
	opt, err := asynq.ParseRedisURI(firstRedis)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	for _, newTask := range []func(string) (*asynq.Task, error){tasks.NewPatientsSyncTask, tasks.NewAppointmentsSyncTask} {
		task, err := newTask("sandbox-clinic-north")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the second syncs to finish", func() bool {
		for _, l := range locations(t, webAddr) {
			if l.LocationID != "sandbox-clinic-north" {
				continue
			}
			p, a := l.Syncs["patients"], l.Syncs["appointments"]
			return p != nil && a != nil && p.FinishedAt != nil && a.FinishedAt != nil &&
				p.StartedAt.After(before[l.LocationID].Syncs["patients"].StartedAt) &&
				a.StartedAt.After(before[l.LocationID].Syncs["appointments"].StartedAt)
		}
		return false
	})
	for _, l := range locations(t, webAddr) {
		if l.Status != store.StatusActive {
			t.Errorf("%s is %s after a restart", l.LocationID, l.Status)
		}
		if l.LocationID == "sandbox-clinic-north" {
			if p, a := l.Syncs["patients"], l.Syncs["appointments"]; p.Created+p.Updated+a.Created+a.Updated != 0 {
				t.Errorf("the second sync sent records: patients %+v, appointments %+v", p, a)
			}
		}
	}
	second.Cmd.Process.Signal(syscall.SIGHUP)
	select {
	case <-second.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the second run did not stop within 10 s of SIGHUP")
	}
	if code := second.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("second run: exit status %d after SIGHUP, want 0", code)
	}
	contacts2, appts2 := sandboxContacts(t, dir)
	if diff := cmp.Diff(contacts, contacts2); diff != "" {
		t.Errorf("contacts per location changed (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(appts, appts2); diff != "" {
		t.Errorf("appointments per location changed (-first +second):\n%s", diff)
	}
}

// TestMeasureSandbox prints the standalone sandbox's start-up time to its
// first completed sync and its memory after a stretch of idling. It is a
// measurement, not a check, and runs only when asked:
//
//	GHLSYNC_MEASURE_SANDBOX=1 go test -run TestMeasureSandbox -v -timeout 20m ./cmd/worker/
//
// GHLSYNC_MEASURE_IDLE sets the idle stretch (default 10m).
func TestMeasureSandbox(t *testing.T) {
	if os.Getenv("GHLSYNC_MEASURE_SANDBOX") == "" {
		t.Skip("set GHLSYNC_MEASURE_SANDBOX=1 to measure")
	}
	idle := 10 * time.Minute
	if v := os.Getenv("GHLSYNC_MEASURE_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	dir, webAddr := t.TempDir(), testenv.FreeAddr(t)
	env := map[string]string{
		"DATABASE_URL": "sqlite://" + filepath.Join(dir, "ghlsync.db"), "WEB_ADDR": webAddr,
		"METRICS_ADDR": "127.0.0.1:0", "TOKEN_ENCRYPTION_KEY": "", "REDIS_URL": "",
	}
	start := time.Now()
	p := testenv.StartProcess(t, "worker", env, "--standalone", "--sandbox", "--redis-addr", testenv.FreeAddr(t))
	testenv.Eventually(t, 2*time.Minute, "a first completed sync", func() bool {
		for _, l := range locations(t, webAddr) {
			for _, s := range l.Syncs {
				if s.FinishedAt != nil {
					return true
				}
			}
		}
		return false
	})
	t.Logf("first completed sync %.1f s after start", time.Since(start).Seconds())
	testenv.Eventually(t, 2*time.Minute, "every first sync", func() bool { return sandboxSynced(t, webAddr) })
	t.Logf("every demo location synced %.1f s after start; memory %s", time.Since(start).Seconds(), procMemory(t, p))
	time.Sleep(idle) // the idle stretch being measured
	t.Logf("after %s idle: memory %s", idle, procMemory(t, p))
	if code := p.Stop(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// procMemory reads a process's resident and peak resident memory.
func procMemory(t *testing.T, p *testenv.Process) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}

// Start-up failures that are the configuration's: one line that names the
// variable, exit status 2 for a value that can never work, 1 for one that
// may (a port taken now).
func TestStartFailuresNameTheVariable(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	stack := storetest.NewStack(t, ghltest.Options{})
	for _, tc := range []struct {
		name, key, value, want string
		code                   int
	}{
		{"window too short", "REFRESH_WINDOW", "1ns", "REFRESH_WINDOW", 2},
		{"window longer than a token lives", "REFRESH_WINDOW", "9999h", "REFRESH_WINDOW", 2},
		{"metrics address without a port", "METRICS_ADDR", "localhost", "METRICS_ADDR", 2},
		{"metrics port out of range", "METRICS_ADDR", ":70000", "METRICS_ADDR", 2},
		{"metrics port taken", "METRICS_ADDR", taken.Addr().String(), "METRICS_ADDR", 1},
		{"SQLite directory missing", "DATABASE_URL", "sqlite://" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), "does not exist", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), nil, testenv.Getenv(stack.Env(tc.key, tc.value)), &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != tc.code || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[0], tc.key) {
				t.Fatalf("exit %d, stderr %q; want %d and one line naming %s (%s)", code, stderr.String(), tc.code, tc.key, tc.want)
			}
		})
	}
}

// A Redis that does not answer: the one line that says so, not go-redis's
// pool lines before it.
func TestUnreachableRedisIsOneLine(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	p := testenv.StartProcess(t, "worker", stack.Env("REDIS_URL", "redis://127.0.0.1:1/0"))
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("the worker did not give up on an unreachable Redis")
	}
	out := strings.TrimSpace(p.Output.String())
	if lines := strings.Split(out, "\n"); len(lines) != 1 || !strings.Contains(out, "does not answer") {
		t.Fatalf("output:\n%s\nwant one line saying Redis does not answer", out)
	}
}

// No binary's log holds a password from any URL it was given: the worker
// (and worker --standalone) at debug level, through a refresh, its
// shutdown, and the start-up failures that quote a URL.
func TestNoPasswordInLogs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env, secrets := b.SecretEnv(t)
	b.Connect(t, "loc1", time.Now().Add(time.Hour))
	outputs := map[string]string{}

	w := testenv.StartProcess(t, "worker", env)
	opt, err := asynq.ParseRedisURI(env["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	task, err := tasks.NewRefreshTask("loc1", true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the refresh through the worker", func() bool {
		return b.Fake.Rotations("loc1") == 1 && b.HoldsCurrent(t, "loc1")
	})
	if code := w.Stop(15 * time.Second); code != 0 {
		t.Fatalf("worker exit status %d", code)
	}
	outputs["worker log"] = w.Output.String()
	if !strings.Contains(outputs["worker log"], "level=DEBUG") && !strings.Contains(outputs["worker log"], "GHL token refreshed") {
		t.Fatalf("the worker log shows no work:\n%s", outputs["worker log"])
	}

	dir := t.TempDir()
	standaloneEnv := maps.Clone(env)
	standaloneEnv["DATABASE_URL"] = "sqlite://" + filepath.Join(dir, "ghlsync.db") + "?password=" + secrets["database password"]
	standaloneEnv["WEB_ADDR"] = testenv.FreeAddr(t)
	sa := testenv.StartProcess(t, "worker", standaloneEnv, "--standalone", "--redis-addr", testenv.FreeAddr(t))
	testenv.Eventually(t, 30*time.Second, "the standalone start-up lines", func() bool {
		return strings.Contains(sa.Output.String(), "  database:")
	})
	if code := sa.Stop(15 * time.Second); code != 0 {
		t.Fatalf("standalone exit status %d", code)
	}
	outputs["standalone log"] = sa.Output.String()

	// Start-up failures whose errors quote a URL.
	secrets["unreachable database password"] = "pg-unreachable-pw-7a1"
	secrets["unreachable redis password"] = "redis-unreachable-pw-7a2"
	secrets["GHL API password"] = "ghl-api-pw-7a3"
	for name, kv := range map[string][2]string{
		"unreachable PostgreSQL":       {"DATABASE_URL", "postgres://ghl:pg-unreachable-pw-7a1@127.0.0.1:1/ghlsync?connect_timeout=2"},
		"unreachable Redis":            {"REDIS_URL", "redis://:redis-unreachable-pw-7a2@127.0.0.1:1/0"},
		"GHL API URL with credentials": {"GHL_API_URL", "http://proxy:ghl-api-pw-7a3@" + strings.TrimPrefix(b.Fake.URL, "http://")},
	} {
		e := maps.Clone(env)
		e[kv[0]] = kv[1]
		var stderr bytes.Buffer
		if code := run(context.Background(), nil, testenv.Getenv(e), &stderr); code == 0 {
			t.Errorf("%s: exit 0", name)
		}
		outputs[name+" output"] = stderr.String()
	}
	storetest.RequireNoSecret(t, secrets, outputs)
}
