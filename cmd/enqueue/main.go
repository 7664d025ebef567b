// Command enqueue puts a ghlsync task into the queue now and, with --wait,
// waits for its result.
//
//	enqueue refresh           [--location ID] [--wait] [--timeout 60s]
//	enqueue sync-patients     [--location ID] [--wait] [--timeout 10m]
//	enqueue sync-appointments [--location ID] [--wait] [--timeout 10m]
//
// Without --location the task covers every connected location. With --wait
// the result is printed as JSON on stdout; the exit status is 0 when the
// task succeeded and 1 when it failed, with the reason on stderr. Exit
// status 2 means bad input or configuration, and nothing was enqueued.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: enqueue COMMAND [--location ID] [--wait] [--timeout D]
commands: refresh, sync-patients, sync-appointments`

// run is main without the process: it returns the exit status, so that
// tests drive the real command line.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, usage)
		return app.ExitUsage
	}
	defaultTimeout, ok := app.EnqueueTimeout(args[0])
	if !ok {
		return app.Exit(stderr, "enqueue", app.Usagef("unknown command %q\n%s", args[0], usage))
	}
	fs := flag.NewFlagSet("enqueue "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs, getenv, "")
	req := app.EnqueueRequest{Command: args[0]}
	fs.StringVar(&req.Location, "location", "", "location id (default: every connected location)")
	fs.BoolVar(&req.Wait, "wait", false, "wait for the result and print it as JSON")
	fs.DurationVar(&req.Timeout, "timeout", defaultTimeout, "how long --wait waits")
	if err := fs.Parse(args[1:]); err != nil {
		return app.Exit(stderr, "enqueue", app.Usage(err))
	}
	if fs.NArg() > 0 {
		return app.Exit(stderr, "enqueue", app.Usagef("unexpected argument %q", fs.Arg(0)))
	}
	if req.Timeout <= 0 {
		return app.Exit(stderr, "enqueue", app.Usagef("--timeout must be positive"))
	}
	cfg, err := loader.Load()
	if err != nil {
		return app.Exit(stderr, "enqueue", err)
	}
	return app.Exit(stderr, "enqueue", app.RunEnqueue(ctx, cfg, req, stdout, stderr))
}
