package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// cmdline runs the scheduler command line against one database and Redis,
// given in an environment of their own so that the machine's DATABASE_URL
// cannot leak in.
type cmdline struct {
	dbURL, redisURL string
}

func setup(t *testing.T) (*cmdline, *store.Store) {
	t.Helper()
	c := &cmdline{dbURL: storetest.DatabaseURL(t), redisURL: testenv.RedisURL(t)}
	// The command migrates; the test's own connection reads the rows.
	if code, _, stderr := c.run(t, "list"); code != 0 {
		t.Fatalf("scheduler list: exit %d: %s", code, stderr)
	}
	st, err := store.Open(context.Background(), c.dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return c, st
}

func (c *cmdline) getenv(k string) string {
	return map[string]string{"DATABASE_URL": c.dbURL, "REDIS_URL": c.redisURL}[k]
}

func (c *cmdline) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, c.getenv)
	return code, out.String(), errOut.String()
}

func rows(t *testing.T, st *store.Store) []store.Schedule {
	t.Helper()
	rs, err := st.Schedules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func byName(rs []store.Schedule, name string) store.Schedule {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return store.Schedule{}
}

// Test 5: setup twice gives the same rows; set with bad input exits 2 and
// changes nothing; an operator's interval survives setup, not --reset.
func TestSetupAndSet(t *testing.T) {
	t.Parallel()
	c, st := setup(t)

	code, out, stderr := c.run(t, "setup")
	if code != 0 {
		t.Fatalf("setup: exit %d: %s", code, stderr)
	}
	first := rows(t, st)
	if len(first) != 6 {
		t.Fatalf("setup created %d schedules, want 6:\n%s", len(first), out)
	}
	want := map[string][]any{
		"token-refresh":    {tasks.TypeTokenRefreshDue, tasks.QueueCritical, int64(600)},
		"patient-sync":     {tasks.TypePatientsSync, tasks.QueueDefault, int64(3600)},
		"appointment-sync": {tasks.TypeAppointmentsSync, tasks.QueueDefault, int64(3600)},
		"alerts":           {tasks.TypeAlertsEvaluate, tasks.QueueCritical, int64(60)},
		// The nightly full passes: every row read, only changes sent.
		"patient-sync-full":     {tasks.TypePatientsSync, tasks.QueueDefault, `{"full":true}`, "30 2 * * *"},
		"appointment-sync-full": {tasks.TypeAppointmentsSync, tasks.QueueDefault, `{"full":true}`, "45 2 * * *"},
	}
	for _, r := range first {
		got := []any{r.TaskType, r.Queue, r.EverySeconds}
		if r.Cron != "" {
			got = []any{r.TaskType, r.Queue, r.Payload, r.Cron}
		}
		if d := cmp.Diff(want[r.Name], got); d != "" || !r.Enabled || r.NextRunAt == nil {
			t.Errorf("schedule %s: enabled %t, next %v, (-want +got):\n%s", r.Name, r.Enabled, r.NextRunAt, d)
		}
	}

	code, out, stderr = c.run(t, "setup")
	if code != 0 {
		t.Fatalf("second setup: exit %d: %s", code, stderr)
	}
	if d := cmp.Diff(first, rows(t, st)); d != "" {
		t.Errorf("second setup changed rows (-first +second):\n%s", d)
	}
	if strings.Count(out, ": unchanged") != 6 {
		t.Errorf("second setup said:\n%s", out)
	}

	for _, args := range [][]string{
		{"set", "no-such-schedule", "--every", "30s"},
		{"set", "token-refresh", "--every", "0s"},
		{"set", "token-refresh", "--every", "-5m"},
		{"set", "token-refresh", "--every", "1500ms"},
		{"set", "token-refresh", "--every", "often"},
		{"set", "token-refresh", "--cron", "not a cron"},
		{"set", "token-refresh", "--cron", "61 * * * *"},
		{"set", "token-refresh", "--cron", "0 3 * * *", "--tz", "Mars/Olympus_Mons"},
		{"set", "token-refresh", "--every", "30s", "--cron", "* * * * *"},
		{"set", "token-refresh"},
		{"set", "--every", "30s"},
		{"set", "token-refresh", "patient-sync", "--every", "30s"},
		{"set", "token-refresh", "--every", "30s", "--no-such-flag"},
		{"setup", "--every", "30s"},
		{"enable", "no-such-schedule"},
		{"disable", "no-such-schedule"},
		{"disable"},
		{"frobnicate"},
		{"--database-url", "mysql://db", "set", "token-refresh", "--every", "30s"},
	} {
		code, out, stderr := c.run(t, args...)
		if code != 2 {
			t.Errorf("scheduler %q: exit %d, want 2 (stdout %q, stderr %q)", args, code, out, stderr)
		}
		if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.HasSuffix(stderr, "\n") {
			t.Errorf("scheduler %q: stderr is not one line: %q", args, stderr)
		}
		if d := cmp.Diff(first, rows(t, st)); d != "" {
			t.Fatalf("scheduler %q changed rows (-want +got):\n%s", args, d)
		}
	}
	if _, _, stderr := c.run(t, "--database-url", "mysql://db", "list"); !strings.Contains(stderr, "DATABASE_URL") {
		t.Errorf("a bad DATABASE_URL is reported as %q, which does not name it", stderr)
	}

	// An operator's interval is kept by setup, and --reset restores it.
	if code, _, stderr := c.run(t, "set", "token-refresh", "--every", "30s"); code != 0 {
		t.Fatalf("set: exit %d: %s", code, stderr)
	}
	if got := byName(rows(t, st), "token-refresh"); got.EverySeconds != 30 {
		t.Fatalf("after set --every 30s: every %ds", got.EverySeconds)
	}
	code, out, _ = c.run(t, "setup")
	if got := byName(rows(t, st), "token-refresh"); code != 0 || got.EverySeconds != 30 || !strings.Contains(out, "kept every 30s") {
		t.Errorf("setup after set: exit %d, every %ds, said:\n%s", code, got.EverySeconds, out)
	}
	code, out, _ = c.run(t, "setup", "--reset")
	if got := byName(rows(t, st), "token-refresh"); code != 0 || got.EverySeconds != 600 {
		t.Errorf("setup --reset: exit %d, every %ds, said:\n%s", code, got.EverySeconds, out)
	}

	// A cron schedule with a time zone, given either way.
	for _, args := range [][]string{
		{"set", "patient-sync", "--cron", "0 3 * * *", "--tz", "Europe/Berlin"},
		{"set", "patient-sync", "--cron", "CRON_TZ=Europe/Berlin 0 3 * * *"},
	} {
		if code, _, stderr := c.run(t, args...); code != 0 {
			t.Fatalf("scheduler %q: exit %d: %s", args, code, stderr)
		}
		got := byName(rows(t, st), "patient-sync")
		if got.Cron != "0 3 * * *" || got.TZ != "Europe/Berlin" || got.EverySeconds != 0 {
			t.Errorf("scheduler %q: stored cron %q tz %q every %d", args, got.Cron, got.TZ, got.EverySeconds)
		}
		if h := got.NextRunAt.In(mustZone(t, "Europe/Berlin")).Hour(); h != 3 {
			t.Errorf("scheduler %q: next run %s is not at 03:00 in Berlin", args, got.NextRunAt)
		}
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestList(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	if code, _, stderr := c.run(t, "setup"); code != 0 {
		t.Fatalf("setup: exit %d: %s", code, stderr)
	}
	if code, _, stderr := c.run(t, "disable", "appointment-sync"); code != 0 {
		t.Fatalf("disable: exit %d: %s", code, stderr)
	}
	code, out, stderr := c.run(t, "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("list printed %d lines, want a header and 6:\n%s", len(lines), out)
	}
	for _, col := range []string{"TASK", "QUEUE", "SCHEDULE", "ENABLED", "LAST RUN", "NEXT RUN", "RUNS"} {
		i := strings.Index(lines[0], col)
		if i < 0 {
			t.Fatalf("no %s column:\n%s", col, out)
		}
		for _, l := range lines[1:] {
			if len(l) <= i || l[i-2:i] != "  " || l[i] == ' ' {
				t.Errorf("column %s is not aligned:\n%s", col, out)
				break
			}
		}
	}
	for _, s := range []string{"token-refresh", tasks.TypeTokenRefreshDue, "every 10m", "every 1h", "never", "no"} {
		if !strings.Contains(out, s) {
			t.Errorf("list does not show %q:\n%s", s, out)
		}
	}
}

// syncBuffer is a bytes.Buffer that the running command and the test may
// use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Test 4: set and disable on a running scheduler take effect within 5 s,
// and a disabled schedule enqueues nothing while an enabled one keeps
// running; all through the real command line, with /metrics, /healthz and
// /readyz.
func TestChangesReachRunningScheduler(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	if code, _, stderr := c.run(t, "setup"); code != 0 {
		t.Fatalf("setup: exit %d: %s", code, stderr)
	}
	redisOpt, err := asynq.ParseRedisURI(c.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { insp.Close() })
	// pending counts the enqueued tasks of one type; no worker takes them.
	pending := func(queue, taskType string) int {
		infos, err := insp.ListPendingTasks(queue, asynq.PageSize(1000))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, info := range infos {
			if info.Type == taskType {
				n++
			}
		}
		return n
	}
	refreshes := func() int { return pending(tasks.QueueCritical, tasks.TypeTokenRefreshDue) }
	patientSyncs := func() int { return pending(tasks.QueueDefault, tasks.TypePatientsSync) }

	metricsAddr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--metrics-addr", metricsAddr}, io.Discard, &logs, c.getenv)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("scheduler: exit %d:\n%s", code, logs.String())
		}
	})

	// The defaults are due at once after setup.
	testenv.Eventually(t, 10*time.Second, "the first token-refresh", func() bool { return refreshes() == 1 })

	if code, _, stderr := c.run(t, "set", "token-refresh", "--every", "1s"); code != 0 {
		t.Fatalf("set: exit %d: %s", code, stderr)
	}
	set := time.Now()
	testenv.Eventually(t, 5*time.Second, "token-refresh every 1s", func() bool { return refreshes() >= 3 })
	t.Logf("set --every 1s: a second and third run after %s", time.Since(set).Round(time.Millisecond))

	status, body, err := get("http://" + metricsAddr + "/metrics")
	if err != nil || status != 200 || !strings.Contains(body, `ghlsync_scheduler_enqueued_total{schedule="token-refresh"}`) ||
		!strings.Contains(body, `ghlsync_scheduler_lag_seconds_bucket{schedule="token-refresh"`) {
		t.Errorf("/metrics: %d %v:\n%s", status, err, body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body, err := get("http://" + metricsAddr + path); err != nil || status != 200 {
			t.Errorf("%s: %d %v: %s", path, status, err, body)
		}
	}

	if code, _, stderr := c.run(t, "disable", "token-refresh"); code != 0 {
		t.Fatalf("disable: exit %d: %s", code, stderr)
	}
	before := refreshes()
	// The disabled schedule's quiet means something only while the loop
	// demonstrably runs: patient-sync, at the same 1 s, must advance four
	// slots meanwhile. A tick that read token-refresh just before the
	// disable may still enqueue one slot; it must add no other.
	if code, _, stderr := c.run(t, "set", "patient-sync", "--every", "1s"); code != 0 {
		t.Fatalf("set patient-sync: exit %d: %s", code, stderr)
	}
	syncs := patientSyncs()
	testenv.Eventually(t, 10*time.Second, "patient-sync four slots on", func() bool { return patientSyncs() >= syncs+4 })
	if after := refreshes(); after > before+1 {
		t.Errorf("a disabled schedule enqueued %d tasks while an enabled one ran four slots", after-before)
	}

	before = refreshes()
	if code, _, stderr := c.run(t, "enable", "token-refresh"); code != 0 {
		t.Fatalf("enable: exit %d: %s", code, stderr)
	}
	testenv.Eventually(t, 5*time.Second, "token-refresh enabled again", func() bool { return refreshes() > before })
}

// No binary's log holds a password from any URL it was given: the
// scheduler loop at debug level, which logs its configuration, and its
// subcommands, with GHL_API_URL carrying a password too.
func TestNoPasswordInLogs(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	env, secrets := stack.SecretEnv(t, "GHL_API_URL", "https://proxy:ghl-api-pw-5c1@ghl.example")
	secrets["GHL API password"] = "ghl-api-pw-5c1"
	outputs := map[string]string{}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testenv.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, &stdout, &stderr, testenv.Getenv(env)) }()
	testenv.Eventually(t, 30*time.Second, "the scheduler to log its configuration", func() bool {
		return strings.Contains(stderr.String(), "scheduler running")
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("scheduler exit %d:\n%s", code, stderr.String())
	}
	log := stderr.String()
	if !strings.Contains(log, "ghl.example") || !strings.Contains(log, "xxxxx") {
		t.Fatalf("the configuration logged is not the one given, redacted:\n%s", log)
	}
	outputs["scheduler log"] = log + stdout.String()

	for _, args := range [][]string{{"setup"}, {"list"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut, testenv.Getenv(env)); code != 0 {
			t.Fatalf("scheduler %s: exit %d: %s", args[0], code, errOut.String())
		}
		outputs["scheduler "+args[0]+" output"] = out.String() + errOut.String()
	}
	bad := maps.Clone(env)
	bad["REDIS_URL"] = "redis://:redis-unreachable-pw-5c2@127.0.0.1:1/0"
	secrets["unreachable redis password"] = "redis-unreachable-pw-5c2"
	var out, errOut bytes.Buffer
	if code := run(context.Background(), nil, &out, &errOut, testenv.Getenv(bad)); code == 0 {
		t.Fatal("an unreachable Redis: exit 0")
	}
	outputs["scheduler failing start"] = out.String() + errOut.String()
	storetest.RequireNoSecret(t, secrets, outputs)
}
