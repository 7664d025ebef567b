package app_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// A worker whose REDIS_URL names a Redis Cluster serves the queue through
// asynq's cluster client: `enqueue refresh --wait`, for one location and
// fanned out to all, refreshes every token.
func TestWorkerOnRedisCluster(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStackOn(t, ghltest.Options{}, testenv.RedisCluster)
	for _, loc := range []string{"loc1", "loc2", "loc3"} {
		stack.Connect(t, loc, time.Now().Add(time.Hour))
	}
	cfg, err := config.NewLoader(flag.NewFlagSet("w", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.MetricsAddr = ""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := app.Open(ctx, cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !redisconn.IsCluster(d.Redis) {
		t.Fatalf("the worker's Redis is %T, want a cluster client", d.Redis)
	}
	workerDone := make(chan error, 1)
	go func() { workerDone <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()

	for loc, refreshed := range map[string]int{"loc1": 1, "": 3} {
		var stdout, stderr bytes.Buffer
		err := app.RunEnqueue(ctx, cfg, app.EnqueueRequest{Command: "refresh", Location: loc, Wait: true, Timeout: time.Minute}, &stdout, &stderr)
		if err != nil || strings.Count(stdout.String(), `"outcome": "refreshed"`) != refreshed {
			t.Fatalf("enqueue refresh --location %q --wait: %v\nstdout: %s\nstderr: %s", loc, err, stdout.String(), stderr.String())
		}
	}
	for _, loc := range []string{"loc1", "loc2", "loc3"} {
		if !stack.HoldsCurrent(t, loc) {
			t.Errorf("%s: the database does not hold GHL's current token", loc)
		}
	}
	if n := stack.Fake.TokenCalls("loc1"); n != 2 {
		t.Errorf("loc1: %d token calls, want 2 (one forced refresh each)", n)
	}
	cancel()
	if err := <-workerDone; err != nil {
		t.Errorf("worker: %v", err)
	}
}
