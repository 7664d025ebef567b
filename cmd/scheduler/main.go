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
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
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

// exitUsage is the status of bad input or configuration: nothing changed.
const exitUsage = 2

// usageError is bad input, reported on one line with exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

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
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "scheduler: %v (see scheduler -h)\n", err)
		return exitUsage
	}
	cmd := "run"
	if len(pos) > 0 {
		cmd, pos = pos[0], pos[1:]
	}
	if err := checkArgs(cmd, pos, fs); err != nil {
		fmt.Fprintf(stderr, "scheduler %s: %v\n", cmd, err)
		return exitUsage
	}
	// A bad spec is refused before anything is opened, let alone changed.
	var spec scheduler.Spec
	if cmd == "set" {
		if spec, err = scheduler.ParseSpec(*every, *cronSpec, *tz); err != nil {
			fmt.Fprintf(stderr, "scheduler set %s: %v\n", pos[0], err)
			return exitUsage
		}
	}
	cfg, err := loader.Load()
	if err != nil {
		fmt.Fprintf(stderr, "scheduler: %v\n", err)
		return exitUsage
	}
	log := app.NewLogger(stderr, cfg.LogLevel)

	// Every subcommand migrates: `scheduler setup` must work on a new
	// database, and Migrate is idempotent and locked against other
	// processes.
	st, err := store.Open(ctx, cfg.DatabaseURL, nil)
	if err != nil {
		fmt.Fprintf(stderr, "scheduler: %v\n", err)
		return 1
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		fmt.Fprintf(stderr, "scheduler: %v\n", err)
		return 1
	}

	now := time.Now()
	switch cmd {
	case "run":
		err = serve(ctx, cfg, st, log)
	case "setup":
		var res []scheduler.SetupResult
		res, err = scheduler.Setup(ctx, st, now, *reset)
		for _, r := range res {
			if r.Detail != "" {
				fmt.Fprintf(stdout, "%s: %s: %s\n", r.Name, r.Action, r.Detail)
			} else {
				fmt.Fprintf(stdout, "%s: %s\n", r.Name, r.Action)
			}
		}
	case "list":
		err = scheduler.List(ctx, st, stdout, now)
	case "set":
		var row *store.Schedule
		var changed bool
		if row, changed, err = scheduler.Set(ctx, st, pos[0], spec, now); err == nil {
			report(stdout, row, changed, scheduler.SpecOf(row).String())
		}
	case "enable", "disable":
		var row *store.Schedule
		var changed bool
		if row, changed, err = scheduler.SetEnabled(ctx, st, pos[0], cmd == "enable"); err == nil {
			report(stdout, row, changed, cmd+"d")
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, store.ErrNotFound) && len(pos) == 1:
		fmt.Fprintf(stderr, "scheduler %s: no schedule named %q (scheduler list shows them; scheduler setup creates the defaults)\n", cmd, pos[0])
		return exitUsage
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(stderr, "scheduler %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "scheduler %s: %v\n", cmd, err)
		return 1
	}
}

func report(w io.Writer, row *store.Schedule, changed bool, what string) {
	switch {
	case !changed:
		fmt.Fprintf(w, "%s: unchanged (already %s)\n", row.Name, what)
	case !row.Enabled || row.NextRunAt == nil:
		fmt.Fprintf(w, "%s: %s\n", row.Name, what)
	default:
		fmt.Fprintf(w, "%s: %s; next run %s\n", row.Name, what, row.NextRunAt.UTC().Format(time.RFC3339))
	}
}

// checkArgs refuses positional arguments and flags that do not belong to
// the subcommand, so that a mistyped line changes nothing.
func checkArgs(cmd string, pos []string, fs *flag.FlagSet) error {
	want := map[string]int{"run": 0, "setup": 0, "list": 0, "set": 1, "enable": 1, "disable": 1}
	n, ok := want[cmd]
	if !ok {
		return usagef("unknown subcommand (one of setup, list, set, enable, disable; none runs the loop)")
	}
	if len(pos) != n {
		if n == 1 {
			return usagef("needs exactly one schedule NAME")
		}
		return usagef("takes no arguments, got %q", strings.Join(pos, " "))
	}
	own := map[string]string{"reset": "setup", "every": "set", "cron": "set", "tz": "set"}
	var err error
	fs.Visit(func(f *flag.Flag) {
		if sub, ok := own[f.Name]; ok && sub != cmd && err == nil {
			err = usagef("--%s belongs to scheduler %s", f.Name, sub)
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

// serve runs the scheduler loop with /metrics, /healthz and /readyz until
// ctx is done.
//
// It does not use app.Open: that needs TOKEN_ENCRYPTION_KEY and builds a GHL
// client, and the scheduler reads no token and calls no GHL. It takes from
// app only what fits: ConnectRedis, and Deps.Ready over the store
// and Redis it has.
func serve(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) error {
	// ConnectRedis does not tell a bad URL from a Redis that does not
	// answer; only the first is bad configuration (exit 2).
	if _, err := asynq.ParseRedisURI(cfg.RedisURL); err != nil {
		return &usageError{config.VarRedisURL + ": " + err.Error()}
	}
	_, rc, err := app.ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rc.Close()
	// The client shares rc, so /readyz pings the connections the loop
	// enqueues on; closing rc closes them.
	client := asynq.NewClientFromRedisClient(rc)
	deps := &app.Deps{Store: st, Redis: rc}

	// The scheduler updates none of the worker's and web's metrics, so its
	// /metrics has only its own and the runtime's.
	reg := metrics.NewRegistry()
	sched := scheduler.New(st, client, scheduler.Options{Logger: log, Metrics: scheduler.NewMetrics(reg)})

	ready := func(ctx context.Context) error {
		return errors.Join(deps.Ready(ctx), sched.Check(ctx))
	}
	waitOps, err := ops.Serve(ctx, cfg.MetricsAddr, ops.Handler(reg, ready), log)
	if err != nil {
		return &usageError{config.VarMetricsAddr + ": " + err.Error()}
	}
	if rows, err := st.EnabledSchedules(ctx); err == nil && len(rows) == 0 {
		log.Warn("no enabled schedules: run `scheduler setup` to create the defaults")
	}
	log.Info("scheduler running", "config", cfg)
	// Shutdown: the scheduler only produces, so nothing waits on it. The
	// cancelled ctx stops the loop (which first enqueues and records the
	// slot in hand) and the ops server; only then are Redis and the
	// database closed (deferred), since the loop still uses them.
	runErr := sched.Run(ctx)
	if err := waitOps(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
