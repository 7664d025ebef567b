// Command worker runs ghlsync's task handlers: token refreshes and syncs.
//
//	worker [--concurrency N] [--token-concurrency N] [--standalone] [--sandbox] [--redis-addr HOST:PORT]
//
// --standalone runs worker, scheduler and web in one process on an embedded
// Redis and the configured database (an SQLite file by default); --sandbox
// adds an in-process fake GHL with demo locations, patients and
// appointments, so it works with no GHL app at all.
//
// Secrets come only from the environment (or NAME_FILE); worker -h lists
// the flags. Exit status 2 means bad input or configuration; 1 that it
// could not start or stopped on an error.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/cli"
	"github.com/ghlsync/ghlsync/internal/config"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

const synopsis = `usage: worker [--concurrency N] [--token-concurrency N] [--standalone] [--sandbox] [--redis-addr HOST:PORT]

Runs ghlsync's task handlers: token refreshes and syncs; as many replicas
as you like. --standalone runs worker, scheduler and web in one process on
an embedded Redis; --sandbox adds a fake GHL with demo data.`

// run is main without the process: it returns the exit status, so that
// tests drive the real command line.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := cli.NewFlagSet("worker")
	// The worker reads every variable: --standalone runs the web too.
	loader := config.NewLoader(fs, getenv, ":9091")
	var o app.WorkerOptions
	fs.IntVar(&o.Concurrency, "concurrency", app.DefaultSyncConcurrency, "sync tasks run at once")
	fs.IntVar(&o.TokenConcurrency, "token-concurrency", app.DefaultTokenConcurrency, "token calls to GHL made at once (twice as many token tasks run, in slots of their own)")
	standalone := fs.Bool("standalone", false, "run worker, scheduler and web in one process on an embedded Redis")
	sandbox := fs.Bool("sandbox", false, "with --standalone: add a fake GHL with demo data (implies --standalone)")
	redisAddr := fs.String("redis-addr", app.DefaultRedisAddr, "with --standalone: where the embedded Redis listens, the same at every start")
	pos, err := cli.ParseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cli.Help(stderr, synopsis, fs, loader.Secrets())
		return cli.ExitOK
	}
	if err == nil {
		err = cli.WantArgs(fs, pos)
	}
	if err == nil && (o.Concurrency <= 0 || o.TokenConcurrency <= 0) {
		err = cli.UsageHelp("worker", "--concurrency and --token-concurrency must be positive")
	}
	if err != nil {
		return cli.Exit(stderr, "worker", err)
	}
	if *standalone || *sandbox {
		// One machine's demo: nothing listens beyond it unless told to.
		loader.Default(config.VarWebAddr, "127.0.0.1:8080")
		loader.Default(config.VarMetricsAddr, "127.0.0.1:9091")
	}
	switch {
	case *sandbox:
		// The sandbox is its own GHL app; the standalone mode makes a key.
	case *standalone:
		loader.Require(config.VarClientID, config.VarClientSecret)
	default:
		loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	}
	cfg, err := loader.Load()
	if err != nil {
		return cli.Exit(stderr, "worker", err)
	}
	if *standalone || *sandbox {
		return cli.Exit(stderr, "worker", app.RunStandalone(ctx, cfg, app.StandaloneOptions{Sandbox: *sandbox, RedisAddr: *redisAddr, Worker: o}, stderr))
	}
	return cli.Exit(stderr, "worker", app.RunWorkerProcess(ctx, cfg, o, app.NewLogger(stderr, cfg.LogLevel)))
}
