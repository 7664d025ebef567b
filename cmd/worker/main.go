// Command worker runs ghlsync's task handlers: token refreshes and syncs.
//
//	worker [--concurrency N] [--token-concurrency N]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ghlsync/ghlsync/internal/app"
	"github.com/ghlsync/ghlsync/internal/config"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs, getenv, ":9091")
	var o app.WorkerOptions
	fs.IntVar(&o.Concurrency, "concurrency", 10, "sync tasks run at once")
	fs.IntVar(&o.TokenConcurrency, "token-concurrency", 20, "token tasks run at once, in slots of their own")
	if err := fs.Parse(args); err != nil {
		return app.ConfigFailure(stderr, "worker", err)
	}
	if o.Concurrency <= 0 || o.TokenConcurrency <= 0 {
		return app.ConfigFailure(stderr, "worker", fmt.Errorf("--concurrency and --token-concurrency must be positive"))
	}
	loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	cfg, err := loader.Load()
	if err != nil {
		return app.ConfigFailure(stderr, "worker", err)
	}
	log := app.NewLogger(stderr, cfg.LogLevel)
	d, err := app.Open(ctx, cfg, log, true)
	if err != nil {
		if app.IsConfigError(err) {
			return app.ConfigFailure(stderr, "worker", err)
		}
		log.Error("worker cannot start", "err", err)
		return 1
	}
	defer d.Close()
	if err := app.RunWorker(ctx, d, o); err != nil {
		log.Error("worker stopped", "err", err)
		return 1
	}
	return 0
}
