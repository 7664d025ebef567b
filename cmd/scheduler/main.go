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
//	scheduler add NAME --task TYPE [--payload JSON] --every D | --cron SPEC [--tz ZONE]
//	scheduler delete NAME
//	scheduler run NAME                       enqueue the schedule's task now
//	scheduler settings list | get LOCATION | set LOCATION KEY VALUE
//
// Flags may come before or after the subcommand; scheduler SUBCOMMAND -h
// lists a subcommand's own. Exit status 2 means bad input or
// configuration, and nothing was changed.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/cli"
	"github.com/ghlsync/ghlsync/internal/config"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const overview = `usage:
  scheduler [flags]                          run the scheduler loop
  scheduler setup [--reset]                  create or update the default schedules
  scheduler list                             name, task, schedule, enabled, last run, next run, runs
  scheduler set NAME --every DURATION        run NAME at an interval, such as 30s or 10m
  scheduler set NAME --cron "SPEC" [--tz ZONE]  run NAME at cron times, such as "0 3 * * *"
  scheduler enable NAME | disable NAME
  scheduler add NAME --task TYPE [--payload JSON] --every DURATION | --cron "SPEC" [--tz ZONE]
  scheduler delete NAME
  scheduler run NAME                         enqueue NAME's task now, through the scheduler's path
  scheduler settings list | get LOCATION | set LOCATION KEY VALUE   a location's sync settings

scheduler SUBCOMMAND -h lists the flags of SUBCOMMAND; below are the loop's.`

// subcommand is one scheduler command line.
type subcommand struct {
	synopsis string
	// vars are the configuration variables it reads.
	vars []string
	// args names its positional arguments.
	args []string
	// checkArgs, when set, checks the positional arguments instead of
	// args: for a subcommand whose arguments depend on the first.
	checkArgs func(fs *flag.FlagSet, pos []string) error
	// bind registers its own flags on fs and returns check, which refuses
	// bad flag values before anything is opened, and act.
	bind func(fs *flag.FlagSet) (check func() error, act action)
}

type action func(ctx context.Context, cfg *config.Config, pos []string, stdout, stderr io.Writer) error

// specFlags registers --every, --cron and --tz; spec parses them.
func specFlags(fs *flag.FlagSet, what string) (spec func() (app.ScheduleSpec, error)) {
	every := fs.String("every", "", what+" at this interval, such as 30s, 10m or 1h")
	cronSpec := fs.String("cron", "", what+` at the times of a five-field cron expression, such as "0 3 * * *" (CRON_TZ=ZONE prefix allowed)`)
	tz := fs.String("tz", "", "the IANA time zone of --cron, such as Europe/Berlin (default UTC)")
	return func() (app.ScheduleSpec, error) { return app.ParseScheduleSpec(*every, *cronSpec, *tz) }
}

var subcommands = map[string]subcommand{
	"": {
		synopsis: overview,
		vars:     []string{config.VarDatabaseURL, config.VarRedisURL, config.VarMetricsAddr, config.VarLogLevel},
		bind: func(*flag.FlagSet) (func() error, action) {
			return nil, func(ctx context.Context, cfg *config.Config, _ []string, _, stderr io.Writer) error {
				return app.RunScheduler(ctx, cfg, app.NewLogger(stderr, cfg.LogLevel))
			}
		},
	},
	"setup": {
		synopsis: `usage: scheduler setup [--reset]

Creates the default schedules, or brings them up to date; safe to run
again. It keeps an operator's interval or cron, payload and disabled state
unless --reset.`,
		vars: []string{config.VarDatabaseURL},
		bind: func(fs *flag.FlagSet) (func() error, action) {
			reset := fs.Bool("reset", false, "restore every default, including schedules an operator changed")
			return nil, func(ctx context.Context, cfg *config.Config, _ []string, stdout, _ io.Writer) error {
				return app.SetupSchedules(ctx, cfg, *reset, stdout)
			}
		},
	},
	"list": {
		synopsis: `usage: scheduler list

Shows every schedule: name, task, queue, schedule, enabled, last run, next
run and runs. A task type no worker handles is flagged UNKNOWN.`,
		vars: []string{config.VarDatabaseURL},
		bind: func(*flag.FlagSet) (func() error, action) {
			return nil, func(ctx context.Context, cfg *config.Config, _ []string, stdout, _ io.Writer) error {
				return app.ListSchedules(ctx, cfg, stdout)
			}
		},
	},
	"set": {
		synopsis: `usage: scheduler set NAME --every DURATION | --cron "SPEC" [--tz ZONE]

Changes when the schedule NAME runs. Running schedulers pick the change up
within a second.`,
		vars: []string{config.VarDatabaseURL},
		args: []string{"NAME"},
		bind: func(fs *flag.FlagSet) (func() error, action) {
			spec := specFlags(fs, "run")
			var sp app.ScheduleSpec
			check := func() (err error) {
				sp, err = spec()
				return err
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.SetSchedule(ctx, cfg, pos[0], sp, stdout)
			}
		},
	},
	"settings": settingsCommand,
	"enable":   enableCommand(true),
	"disable":  enableCommand(false),
	"add": {
		synopsis: `usage: scheduler add NAME --task TYPE [--payload JSON] --every DURATION | --cron "SPEC" [--tz ZONE]

Creates the schedule NAME, enabled, enqueuing the task TYPE on its queue
(django-celery-beat's "add periodic task"). An interval schedule runs at
once, a cron one at its next time. A task type no worker handles (enqueue
inspect registered lists them) or a payload it would not run is refused.`,
		vars: []string{config.VarDatabaseURL},
		args: []string{"NAME"},
		bind: func(fs *flag.FlagSet) (func() error, action) {
			taskType := fs.String("task", "", "the task type to enqueue, such as ghl:patients:sync (required)")
			payload := fs.String("payload", "", `the task's JSON payload, such as {"location_id":"…"} (default none)`)
			spec := specFlags(fs, "run")
			var n app.NewSchedule
			check := func() error {
				if *taskType == "" {
					return cli.UsageHelp(fs.Name(), "needs --task TYPE")
				}
				sp, err := spec()
				if err != nil {
					return err
				}
				n = app.NewSchedule{TaskType: *taskType, Payload: *payload, Spec: sp}
				_, err = n.Check()
				return err
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				n.Name = pos[0]
				return app.AddSchedule(ctx, cfg, n, stdout)
			}
		},
	},
	"delete": {
		synopsis: `usage: scheduler delete NAME

Deletes the schedule NAME. Tasks it enqueued stay queued. scheduler setup
creates a default schedule again.`,
		vars: []string{config.VarDatabaseURL},
		args: []string{"NAME"},
		bind: func(*flag.FlagSet) (func() error, action) {
			return nil, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.DeleteSchedule(ctx, cfg, pos[0], stdout)
			}
		},
	},
	"run": {
		synopsis: `usage: scheduler run NAME

Enqueues the schedule's task now, enabled or not, as the scheduler enqueues
a due slot (the slot of this second: asking twice within it enqueues one
task), records it as the schedule's last run, and prints the task's id as
JSON (enqueue wait TASK_ID waits for it). An interval schedule's next run
is one interval from now.`,
		vars: []string{config.VarDatabaseURL, config.VarRedisURL},
		args: []string{"NAME"},
		bind: func(*flag.FlagSet) (func() error, action) {
			return nil, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.RunSchedule(ctx, cfg, pos[0], stdout)
			}
		},
	},
}

// settingsCommand is `scheduler settings`: the per-location settings,
// which live in the database beside the schedules.
var settingsCommand = subcommand{
	synopsis: `usage: scheduler settings list
       scheduler settings get LOCATION
       scheduler settings set LOCATION KEY VALUE

Shows or changes a location's sync settings (README, "Location
settings"): ` + strings.Join(app.SettingKeyNames(), ", ") + `. A location without settings has
the defaults. A key or value that cannot be stored is refused, and nothing
changes. Running workers use a change from their next sync of the
location.`,
	vars: []string{config.VarDatabaseURL},
	checkArgs: func(fs *flag.FlagSet, pos []string) error {
		if len(pos) == 0 {
			return cli.UsageHelp(fs.Name(), "needs list, get LOCATION or set LOCATION KEY VALUE")
		}
		switch pos[0] {
		case "list":
			return cli.WantArgs(fs, pos, "list")
		case "get":
			if err := cli.WantArgs(fs, pos, "get", "LOCATION"); err != nil {
				return err
			}
			return cli.WithHelp(fs.Name(), app.CheckLocation(pos[1]))
		case "set":
			if err := cli.WantArgs(fs, pos, "set", "LOCATION", "KEY", "VALUE"); err != nil {
				return err
			}
			return cli.WithHelp(fs.Name(), app.CheckSetting(pos[1], pos[2], pos[3]))
		}
		return cli.UsageHelp(fs.Name(), "unknown settings command %q (one of list, get, set)", pos[0])
	},
	bind: func(fs *flag.FlagSet) (func() error, action) {
		return nil, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
			switch pos[0] {
			case "list":
				return app.ListSettings(ctx, cfg, stdout)
			case "get":
				return app.GetSettings(ctx, cfg, pos[1], stdout)
			}
			// A value refused against the location's other settings is
			// found only once they are read.
			return cli.WithHelp(fs.Name(), app.SetSetting(ctx, cfg, pos[1], pos[2], pos[3], stdout))
		}
	},
}

func enableCommand(enable bool) subcommand {
	name := map[bool]string{true: "enable", false: "disable"}[enable]
	return subcommand{
		synopsis: "usage: scheduler " + name + " NAME\n\n" + strings.ToUpper(name[:1]) + name[1:] + "s the schedule NAME.",
		vars:     []string{config.VarDatabaseURL},
		args:     []string{"NAME"},
		bind: func(*flag.FlagSet) (func() error, action) {
			return nil, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.EnableSchedule(ctx, cfg, pos[0], enable, stdout)
			}
		},
	}
}

type bound struct {
	fs     *flag.FlagSet
	loader *config.Loader
	check  func() error
	act    action
}

func bind(name string, getenv func(string) string) bound {
	prog := strings.TrimSpace("scheduler " + name)
	fs := cli.NewFlagSet(prog)
	sub := subcommands[name]
	loader := config.NewLoader(fs, getenv, ":9092", sub.vars...)
	check, act := sub.bind(fs)
	return bound{fs, loader, check, act}
}

// run is main without the process: it returns the exit status, so that tests
// drive the real command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var sets []*flag.FlagSet
	for name := range subcommands {
		sets = append(sets, bind(name, getenv).fs)
	}
	name, rest := cli.SplitCommand(args, sets...)
	sub, ok := subcommands[name]
	if !ok {
		var names []string
		for n := range subcommands {
			if n != "" {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		return cli.Exit(stderr, "scheduler", cli.UsageHelp("scheduler",
			"unknown subcommand %q (one of %s; none runs the loop)", name, strings.Join(names, ", ")))
	}
	b := bind(name, getenv)
	prog := b.fs.Name()
	pos, err := cli.ParseArgs(b.fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		cli.Help(stderr, sub.synopsis, b.fs, b.loader.Secrets())
		return cli.ExitOK
	}
	switch {
	case err == nil && sub.checkArgs != nil:
		err = sub.checkArgs(b.fs, pos)
	case err == nil:
		err = cli.WantArgs(b.fs, pos, sub.args...)
	}
	// The subcommand is chosen, and bad input refused, before anything is
	// opened, let alone changed.
	if err == nil && b.check != nil {
		err = cli.WithHelp(prog, b.check())
	}
	if err != nil {
		return cli.Exit(stderr, prog, err)
	}
	cfg, err := b.loader.Load()
	if err != nil {
		return cli.Exit(stderr, prog, err)
	}
	return cli.Exit(stderr, prog, b.act(ctx, cfg, pos, stdout, stderr))
}
