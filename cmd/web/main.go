// Command web serves ghlsync's HTTP side: the OAuth connect flow and its
// callback, GHL's webhooks, the status page and its JSON at /api/locations,
// asynqmon at /monitoring, and /metrics, /healthz and /readyz.
//
// It takes no arguments, only configuration; web -h lists the flags, and
// secrets come only from the environment (or NAME_FILE). Exit status 2
// means bad configuration; 1 that it could not start or stopped on an
// error.
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

const synopsis = `usage: web

Serves ghlsync's HTTP side: the OAuth connect flow and its callback, GHL's
webhooks, the status page, asynqmon at /monitoring, /metrics, /healthz and
/readyz; as many replicas as you like.`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := cli.NewFlagSet("web")
	loader := config.NewLoader(fs, getenv, "")
	pos, err := cli.ParseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cli.Help(stderr, synopsis, fs, loader.Secrets())
		return cli.ExitOK
	}
	if err == nil {
		err = cli.WantArgs(fs, pos)
	}
	if err != nil {
		return cli.Exit(stderr, "web", err)
	}
	loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	cfg, err := loader.Load()
	if err != nil {
		return cli.Exit(stderr, "web", err)
	}
	return cli.Exit(stderr, "web", app.RunWeb(ctx, cfg, app.NewLogger(stderr, cfg.LogLevel)))
}
