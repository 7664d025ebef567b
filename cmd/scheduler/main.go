// Command scheduler enqueues ghlsync's periodic tasks from the schedules
// table, and administers that table. Any number may run; each due slot is
// enqueued once among them.
//
//	scheduler                                run the scheduler loop
//	scheduler setup [--reset]                create or update the default schedules
//	scheduler list                           show the schedules
//	scheduler set NAME --every 30s           change a schedule to an interval
//	scheduler set NAME --cron "0 3 * * *" [--tz Europe/Berlin]
//	scheduler enable NAME | disable NAME
//
// Configuration flags (--database-url, --redis-url, --metrics-addr, ...) may
// come before or after the subcommand; see DESIGN.md for the environment.
// Exit status 2 means bad input or configuration, and nothing was changed.
package main

import (
	"context"
	"errors"
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
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `usage:
  scheduler [flags]                          run the scheduler loop
  scheduler setup [--reset]                  create or update the default schedules
  scheduler list                             name, task, schedule, enabled, last run, next run, runs
  scheduler set NAME --every DURATION        run NAME at an interval, such as 30s or 10m
  scheduler set NAME --cron "SPEC" [--tz ZONE]  run NAME at cron times, such as "0 3 * * *"
  scheduler enable NAME | disable NAME

flags (anywhere on the line; each also read from its environment variable):
`

// run is main without the process: it returns the exit status, so that tests
// drive the real command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("scheduler", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	loader := config.NewLoader(fs, getenv, ":9092")
	reset := fs.Bool("reset", false, "setup: restore every default, including schedules an operator changed")
	every := fs.String("every", "", "set: the interval, such as 30s, 10m or 1h")
	cronSpec := fs.String("cron", "", `set: a five-field cron expression, such as "0 3 * * *" (CRON_TZ=ZONE prefix allowed)`)
	tz := fs.String("tz", "", "set: the IANA time zone of --cron, such as Europe/Berlin (default UTC)")

	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		// Asked for: the usage on stdout, and success.
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return app.ExitOK
	}
	if err != nil {
		return app.Exit(stderr, "scheduler", app.Usagef("%v (see scheduler -h)", err))
	}
	cmd := "run"
	if len(pos) > 0 {
		cmd, pos = pos[0], pos[1:]
	}
	prog := "scheduler " + cmd
	if err := checkArgs(cmd, pos, fs); err != nil {
		return app.Exit(stderr, prog, err)
	}
	// The subcommand is chosen, and a bad spec refused, before anything
	// is opened, let alone changed.
	var act func(*config.Config) error
	switch cmd {
	case "setup":
		act = func(cfg *config.Config) error { return app.SetupSchedules(ctx, cfg, *reset, stdout) }
	case "list":
		act = func(cfg *config.Config) error { return app.ListSchedules(ctx, cfg, stdout) }
	case "set":
		spec, err := app.ParseScheduleSpec(*every, *cronSpec, *tz)
		if err != nil {
			return app.Exit(stderr, prog+" "+pos[0], err)
		}
		act = func(cfg *config.Config) error { return app.SetSchedule(ctx, cfg, pos[0], spec, stdout) }
	case "enable", "disable":
		act = func(cfg *config.Config) error { return app.EnableSchedule(ctx, cfg, pos[0], cmd == "enable", stdout) }
	default:
		act = func(cfg *config.Config) error {
			return app.RunScheduler(ctx, cfg, app.NewLogger(stderr, cfg.LogLevel))
		}
	}
	cfg, err := loader.Load()
	if err != nil {
		return app.Exit(stderr, "scheduler", err)
	}
	return app.Exit(stderr, prog, act(cfg))
}

// checkArgs refuses positional arguments and flags that do not belong to
// the subcommand, so that a mistyped line changes nothing.
func checkArgs(cmd string, pos []string, fs *flag.FlagSet) error {
	want := map[string]int{"run": 0, "setup": 0, "list": 0, "set": 1, "enable": 1, "disable": 1}
	n, ok := want[cmd]
	if !ok {
		return app.Usagef("unknown subcommand (one of setup, list, set, enable, disable; none runs the loop)")
	}
	if len(pos) != n {
		if n == 1 {
			return app.Usagef("needs exactly one schedule NAME")
		}
		return app.Usagef("takes no arguments, got %q", strings.Join(pos, " "))
	}
	own := map[string]string{"reset": "setup", "every": "set", "cron": "set", "tz": "set"}
	var err error
	fs.Visit(func(f *flag.Flag) {
		if sub, ok := own[f.Name]; ok && sub != cmd && err == nil {
			err = app.Usagef("--%s belongs to scheduler %s", f.Name, sub)
		}
	})
	return err
}

// parseInterspersed parses flags anywhere among the positional arguments,
// as in `scheduler set token-refresh --every 30s`; the flag package alone
// stops at the first positional one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
