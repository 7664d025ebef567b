package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/app"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/tasks"
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
	*testenv.Stack
	client *asynq.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	stack := testenv.NewStack(t, ghltest.Options{})
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
		"client secret": testenv.ClientSecret,
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
	if err := b.Store.DB.Table(table).Find(&rows).Error; err != nil {
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
