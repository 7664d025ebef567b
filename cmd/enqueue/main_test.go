package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// setup returns a stack with a worker running on it, in process.
func setup(t *testing.T) (*storetest.Stack, map[string]string) {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	env := stack.Env()
	cfg, err := config.NewLoader(flag.NewFlagSet("worker", flag.ContinueOnError), testenv.Getenv(env), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		d.Close()
	})
	return stack, env
}

func enqueue(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, testenv.Getenv(env), &out, &errOut)
	return code, out.String(), errOut.String()
}

// One revoked location of three: it ends needs_reauth after one token call,
// `enqueue refresh --location L --wait` exits 1 saying to reconnect, and the
// other two are refreshed.
func TestRefreshWaitInvalidGrant(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	for _, loc := range []string{"loc1", "loc2", "loc3"} {
		stack.Connect(t, loc, time.Now().Add(time.Hour))
	}
	stack.Fake.Revoke("loc2")

	code, stdout, stderr := enqueue(t, env, "refresh", "--location", "loc2", "--wait", "--timeout", "30s")
	if code != 1 || !strings.Contains(stderr, "/api/auth/connect") {
		t.Fatalf("exit %d, stderr %q; want 1 and how to reconnect", code, stderr)
	}
	var res refresh.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Outcome != refresh.NeedsReauth {
		t.Fatalf("stdout %q: want a needs_reauth result (%v)", stdout, err)
	}

	code, stdout, stderr = enqueue(t, env, "refresh", "--wait", "--timeout", "30s")
	if code != 0 {
		t.Fatalf("refresh of every location: exit %d, stderr %q", code, stderr)
	}
	var all struct{ Results []refresh.Result }
	if err := json.Unmarshal([]byte(stdout), &all); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	got := map[string]refresh.Outcome{}
	for _, r := range all.Results {
		got[r.LocationID] = r.Outcome
	}
	if len(got) != 2 || got["loc1"] != refresh.Refreshed || got["loc3"] != refresh.Refreshed {
		t.Fatalf("results %v: want loc1 and loc3 refreshed, loc2 left out", got)
	}
	for _, loc := range []string{"loc1", "loc3"} {
		if !stack.HoldsCurrent(t, loc) {
			t.Errorf("%s does not hold a current token", loc)
		}
	}
	if _, c := stack.StoredTokens(t, "loc2"); c.Status != store.StatusNeedsReauth {
		t.Fatalf("loc2 status %s", c.Status)
	}
	if n := stack.Fake.TokenCalls("loc2"); n != 1 {
		t.Fatalf("token calls for the revoked location = %d, want exactly 1", n)
	}
}

func TestRefreshWaitSuccess(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	code, stdout, stderr := enqueue(t, env, "refresh", "--location", "loc1", "--wait")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var res refresh.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	// On demand means forced: the token did not need it yet.
	if res.Outcome != refresh.Refreshed || res.LocationID != "loc1" || res.ExpiresIn < 86000 {
		t.Fatalf("result %+v", res)
	}
	if strings.Contains(stdout, stack.Fake.CurrentRefreshToken("loc1")) {
		t.Fatal("the result carries the refresh token")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0"}
	for _, args := range [][]string{{}, {"frobnicate"}, {"refresh", "--timeout", "0s"}, {"refresh", "extra"}} {
		code, _, stderr := enqueue(t, env, args...)
		if code != 2 || stderr == "" {
			t.Errorf("enqueue %v: exit %d, stderr %q; want 2 and a message", args, code, stderr)
		}
	}
}

// A location GHL says is not active: the refresh records it and is not
// retried by the queue (the schedule tries again), and --wait says so.
func TestRefreshWaitInactive(t *testing.T) {
	t.Parallel()
	stack, env := setup(t)
	stack.Connect(t, "loc1", time.Now().Add(time.Hour))
	stack.Fake.SetInactive("loc1", true)
	code, stdout, stderr := enqueue(t, env, "refresh", "--location", "loc1", "--wait", "--timeout", "30s")
	if code != 1 || !strings.Contains(stderr, "not active") {
		t.Fatalf("exit %d, stderr %q; want 1 saying the location is not active", code, stderr)
	}
	var res refresh.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Outcome != refresh.Inactive {
		t.Fatalf("stdout %q: want an inactive result (%v)", stdout, err)
	}
	if _, c := stack.StoredTokens(t, "loc1"); c.Status != store.StatusInactive {
		t.Fatalf("status %s, want inactive", c.Status)
	}
	if n := stack.Fake.TokenCalls("loc1"); n != 1 {
		t.Fatalf("token calls = %d, want 1", n)
	}
}

// No binary's log holds a password from any URL it was given: enqueue at
// debug level, enqueuing, waiting in vain, and failing to reach Redis.
func TestNoPasswordInLogs(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	env, secrets := stack.SecretEnv(t, "GHL_API_URL", "https://proxy:ghl-api-pw-3e1@ghl.example")
	secrets["GHL API password"] = "ghl-api-pw-3e1"
	outputs := map[string]string{}
	for name, args := range map[string][]string{
		"enqueue":          {"refresh", "--location", "loc1"},
		"enqueue all":      {"sync-patients"},
		"wait in vain":     {"refresh", "--location", "loc1", "--wait", "--timeout", "300ms"},
		"bad location id":  {"refresh", "--location", "loc\x00"},
		"unknown argument": {"refresh", "extra"},
	} {
		code, stdout, stderr := enqueue(t, env, args...)
		if name == "enqueue" && code != 0 {
			t.Fatalf("enqueue: exit %d: %s", code, stderr)
		}
		outputs[name+" output"] = stdout + stderr
	}
	bad := maps.Clone(env)
	bad["REDIS_URL"] = "redis://:redis-unreachable-pw-3e2@127.0.0.1:1/0"
	secrets["unreachable redis password"] = "redis-unreachable-pw-3e2"
	code, stdout, stderr := enqueue(t, bad, "refresh")
	if code != 1 || !strings.Contains(stderr, "does not answer") {
		t.Fatalf("unreachable Redis: exit %d, %q", code, stderr)
	}
	outputs["unreachable Redis output"] = stdout + stderr
	storetest.RequireNoSecret(t, secrets, outputs)
}
