// Command web serves ghlsync's HTTP side: the OAuth connect flow and its
// callback, GHL's webhooks, the status page and its JSON at /api/locations,
// asynqmon at /monitoring, and /metrics, /healthz and /readyz.
//
// Exit status 2 means bad configuration; 1 that it could not start or
// stopped on an error.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs, getenv, "")
	if err := fs.Parse(args); err != nil {
		return app.Exit(stderr, "web", app.Usage(err))
	}
	loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	cfg, err := loader.Load()
	if err != nil {
		return app.Exit(stderr, "web", err)
	}
	return app.Exit(stderr, "web", app.RunWeb(ctx, cfg, app.NewLogger(stderr, cfg.LogLevel)))
}
