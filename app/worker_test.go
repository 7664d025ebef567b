package app_test

import (
	"context"
	"flag"
	"io"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// A worker's Redis pool has a connection for every task it runs at once,
// in both servers' slots, and more for asynq's own loops: with go-redis's
// default (ten per CPU, 20 on two cores) a sweep's 40 token tasks queued
// for connections.
func TestWorkerRedisPoolFitsItsTasks(t *testing.T) {
	t.Parallel()
	for _, o := range []app.WorkerOptions{{}, {Concurrency: 30, TokenConcurrency: 5}} {
		tasks := o.Concurrency + app.TokenTasksPerCall*o.TokenConcurrency
		if o.Concurrency == 0 {
			tasks = app.DefaultSyncConcurrency + app.TokenTasksPerCall*app.DefaultTokenConcurrency
		}
		if got := o.RedisPool(); got <= tasks {
			t.Errorf("%+v: a pool of %d for %d tasks at once", o, got, tasks)
		}
	}
	stack := storetest.NewStack(t, ghltest.Options{})
	cfg, err := config.NewLoader(flag.NewFlagSet("w", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(io.Discard, cfg.LogLevel), false, app.RedisPool(77))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.Redis.(*redis.Client).Options().PoolSize; got != 77 {
		t.Errorf("Open with RedisPool(77): a pool of %d", got)
	}
}
