// Command web serves ghlsync's HTTP side: the OAuth connect flow and its
// callback, GHL's webhooks, the status page and its JSON at /api/locations,
// asynqmon at /monitoring, and /metrics, /healthz and /readyz.
package main

import (
	"context"
	"flag"
	"io"
	"net/http"
	"os"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs, getenv, "")
	if err := fs.Parse(args); err != nil {
		return app.ConfigFailure(stderr, "web", err)
	}
	loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	cfg, err := loader.Load()
	if err != nil {
		return app.ConfigFailure(stderr, "web", err)
	}
	d, code := app.OpenProcess(ctx, "web", cfg, stderr)
	if d == nil {
		return code
	}
	defer d.Close()
	log := d.Log
	wait, err := ops.Serve(ctx, cfg.WebAddr, app.WebHandler(d), log)
	if err != nil {
		log.Error("web cannot listen", "addr", cfg.WebAddr, "err", err)
		return 1
	}
	if err := wait(); err != nil && err != http.ErrServerClosed {
		log.Error("web stopped", "err", err)
		return 1
	}
	return 0
}
