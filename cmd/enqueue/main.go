// Command enqueue is ghlsync's queue command line: it puts a task into the
// queue now (and with --wait waits for its result), shows a task's result,
// the queues, the running tasks and the workers, and retries, cancels or
// deletes a task or purges a queue. It needs only REDIS_URL.
//
//	enqueue refresh           [--location ID] [--wait] [--timeout 60s]
//	enqueue sync-patients     [--location ID] [--full] [--dry-run] [--since TIME] [--wait] [--timeout 10m]
//	enqueue sync-appointments [--location ID] [--full] [--dry-run] [--since TIME] [--wait] [--timeout 10m]
//	enqueue result TASK_ID
//	enqueue wait TASK_ID [--timeout 10m]
//	enqueue inspect [queues | active | workers | registered] [--json]
//	enqueue task retry | cancel | delete TASK_ID
//	enqueue queue purge NAME --state archived | retry | scheduled | pending | completed
//
// Without --location a task covers every connected location. A result is
// printed as JSON on stdout; the exit status is 0 when the task succeeded
// and 1 when it failed (or, for result, is not done yet), with the reason
// on stderr. Exit status 2 means bad input or configuration, and nothing
// was enqueued or changed. enqueue COMMAND -h lists a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const overview = `usage: enqueue COMMAND [flags]

Puts ghlsync tasks into the queue, and looks at and acts on tasks and
queues (Celery's call, result, inspect, revoke and purge). Every command
reads only REDIS_URL.

commands:
  refresh [--location ID] [--wait] [--timeout 60s]     refresh tokens now
  sync-patients [--location ID] [--full] [--dry-run] [--since TIME] [--wait] [--timeout 10m]
  sync-appointments [--location ID] [--full] [--dry-run] [--since TIME] [--wait] [--timeout 10m]
  result TASK_ID                        a task's state and result, as JSON
  wait TASK_ID [--timeout 10m]          wait for a task, print its result
  inspect [queues | active | workers | registered] [--json]
  task retry | cancel | delete TASK_ID
  queue purge NAME --state archived | retry | scheduled | pending | completed

enqueue COMMAND -h lists the flags of COMMAND.`

// command is one enqueue command line.
type command struct {
	synopsis string
	// bind registers the command's own flags on fs and returns check,
	// which refuses bad positional arguments before anything is opened,
	// and act, which runs the command.
	bind func(fs *flag.FlagSet) (check func(pos []string) error, act action)
}

type action func(ctx context.Context, cfg *config.Config, pos []string, stdout, stderr io.Writer) error

func enqueueCommand(name string) command {
	timeout, _ := app.EnqueueTimeout(name)
	sync := app.IsSyncCommand(name)
	full, fullHelp := "", ""
	if sync {
		full = " [--full] [--dry-run] [--since TIME]"
		fullHelp = `

A sync reads the rows changed since the location's last completed pass.
--full reads every row and sends every record again whatever GHL was last
sent (a repair: a contact or appointment deleted in GHL is created again,
the rest updated in place). --dry-run counts what the sync would create,
update, delete and refuse, and makes no GHL call. --since TIME reads only
the rows changed at or after TIME: 2026-12-01T09:00:00Z, 2026-12-01 09:00
(UTC), 2026-12-01, or a duration before now such as 2h.`
	}
	return command{
		synopsis: fmt.Sprintf(`usage: enqueue %s [--location ID]%s [--wait] [--timeout %s]

Enqueues the task now, for one location or (without --location) for every
connected one, and prints its id. With --wait it waits for the result and
prints it as JSON: exit status 0 when the task succeeded, 1 when it failed.%s`, name, full, timeout, fullHelp),
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			req := app.EnqueueRequest{Command: name}
			fs.StringVar(&req.Location, "location", "", "location id (default: every connected location)")
			fs.BoolVar(&req.Wait, "wait", false, "wait for the result and print it as JSON")
			fs.DurationVar(&req.Timeout, "timeout", timeout, "how long --wait waits")
			if sync {
				fs.BoolVar(&req.Full, "full", false, "send every record again, whatever its hash (a repair)")
				fs.BoolVar(&req.DryRun, "dry-run", false, "count what the sync would create, update, delete and refuse; send nothing")
				fs.StringVar(&req.Since, "since", "", "read only the rows changed at or after `TIME` (RFC 3339, a UTC date, or a duration before now such as 2h)")
			}
			check := func(pos []string) error {
				if err := cli.WantArgs(fs, pos); err != nil {
					return err
				}
				if req.Timeout <= 0 {
					return cli.UsageHelp(fs.Name(), "--timeout must be positive")
				}
				return nil
			}
			return check, func(ctx context.Context, cfg *config.Config, _ []string, stdout, stderr io.Writer) error {
				return app.RunEnqueue(ctx, cfg, req, stdout, stderr)
			}
		},
	}
}

var commands = map[string]command{
	"refresh":           enqueueCommand("refresh"),
	"sync-patients":     enqueueCommand("sync-patients"),
	"sync-appointments": enqueueCommand("sync-appointments"),
	"result": {
		synopsis: `usage: enqueue result TASK_ID

Prints the task's state and result as JSON, whichever queue holds it
(Celery's celery result). Exit status 0 when it succeeded, 1 when it failed
or is not done yet.`,
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			return func(pos []string) error { return cli.WantArgs(fs, pos, "TASK_ID") },
				func(ctx context.Context, cfg *config.Config, pos []string, stdout, stderr io.Writer) error {
					return app.TaskResult(ctx, cfg, pos[0], stdout, stderr)
				}
		},
	},
	"wait": {
		synopsis: `usage: enqueue wait TASK_ID [--timeout 10m]

Waits for the task, as enqueue ... --wait does (following a sync pass's
follow-ups and a fan-out's tasks), and prints its result as JSON. Exit
status 0 when it succeeded, 1 when it failed or --timeout passed first.`,
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			timeout := fs.Duration("timeout", app.DefaultWaitTimeout, "how long to wait")
			check := func(pos []string) error {
				if *timeout <= 0 {
					return cli.UsageHelp(fs.Name(), "--timeout must be positive")
				}
				return cli.WantArgs(fs, pos, "TASK_ID")
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, stderr io.Writer) error {
				return app.WaitForTask(ctx, cfg, pos[0], *timeout, stdout, stderr)
			}
		},
	},
	"inspect": {
		synopsis: `usage: enqueue inspect [queues | active | workers | registered] [--json]

Shows the queues with their tasks by state, the tasks running now, the
workers, and the task types they handle (Celery's celery inspect and
status); one section when named.`,
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			asJSON := fs.Bool("json", false, "print JSON instead of tables")
			check := func(pos []string) error {
				if len(pos) > 1 {
					return cli.UsageHelp(fs.Name(), "unexpected argument %q", pos[1])
				}
				if len(pos) == 1 && !slices.Contains(app.InspectSections, pos[0]) {
					return cli.UsageHelp(fs.Name(), "unknown section %q (one of %s)", pos[0], strings.Join(app.InspectSections, ", "))
				}
				return nil
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				section := ""
				if len(pos) == 1 {
					section = pos[0]
				}
				return app.Inspect(ctx, cfg, section, *asJSON, stdout)
			}
		},
	},
	"task": {
		synopsis: `usage: enqueue task retry | cancel | delete TASK_ID

Acts on the task, whichever queue holds it:
  retry   runs a task that waits for a retry, is scheduled, or failed for good, now
  cancel  stops a running task (Celery's revoke --terminate); asynq retries it
          by its policy, as any failed attempt: delete it then to drop it
  delete  removes a task that is not running`,
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			check := func(pos []string) error {
				if len(pos) > 0 && !slices.Contains(app.TaskActions, pos[0]) {
					return cli.UsageHelp(fs.Name(), "unknown action %q (one of %s)", pos[0], strings.Join(app.TaskActions, ", "))
				}
				return cli.WantArgs(fs, pos, "retry|cancel|delete", "TASK_ID")
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.ActOnTask(ctx, cfg, pos[0], pos[1], stdout)
			}
		},
	},
	"queue": {
		synopsis: `usage: enqueue queue purge NAME --state archived | retry | scheduled | pending | completed

Deletes every task of the queue NAME in the state (Celery's celery purge is
--state pending) and prints how many. Running (active) tasks cannot be
purged: enqueue task cancel stops one.`,
		bind: func(fs *flag.FlagSet) (func([]string) error, action) {
			state := fs.String("state", "", "the state to empty: "+strings.Join(app.PurgeStates, ", ")+" (required)")
			check := func(pos []string) error {
				if len(pos) > 0 && pos[0] != "purge" {
					return cli.UsageHelp(fs.Name(), "unknown action %q (purge is the one)", pos[0])
				}
				if err := cli.WantArgs(fs, pos, "purge", "NAME"); err != nil {
					return err
				}
				if *state == "" {
					return cli.UsageHelp(fs.Name(), "needs --state (one of %s)", strings.Join(app.PurgeStates, ", "))
				}
				return nil
			}
			return check, func(ctx context.Context, cfg *config.Config, pos []string, stdout, _ io.Writer) error {
				return app.PurgeQueue(ctx, cfg, pos[1], *state, stdout)
			}
		},
	},
}

// bound is a command's flag set with everything registered on it.
type bound struct {
	fs     *flag.FlagSet
	loader *config.Loader
	check  func([]string) error
	act    action
}

func bind(name string, getenv func(string) string) bound {
	fs := cli.NewFlagSet("enqueue " + name)
	// Every command talks to Redis only.
	loader := config.NewLoader(fs, getenv, "", config.VarRedisURL)
	check, act := commands[name].bind(fs)
	return bound{fs, loader, check, act}
}

// run is main without the process: it returns the exit status, so that
// tests drive the real command line.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var sets []*flag.FlagSet
	for name := range commands {
		sets = append(sets, bind(name, getenv).fs)
	}
	name, rest := cli.SplitCommand(args, sets...)
	if name == "" {
		top := cli.NewFlagSet("enqueue")
		_, err := cli.ParseArgs(top, rest)
		if errors.Is(err, flag.ErrHelp) {
			cli.Help(stderr, overview, top, nil)
			return cli.ExitOK
		}
		if err == nil {
			err = cli.UsageHelp("enqueue", "needs a COMMAND (refresh, sync-patients, sync-appointments, result, wait, inspect, task, queue)")
		}
		return cli.Exit(stderr, "enqueue", err)
	}
	if _, ok := commands[name]; !ok {
		return cli.Exit(stderr, "enqueue", cli.UsageHelp("enqueue", "unknown command %q", name))
	}
	b := bind(name, getenv)
	prog := b.fs.Name()
	pos, err := cli.ParseArgs(b.fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		cli.Help(stderr, commands[name].synopsis, b.fs, b.loader.Secrets())
		return cli.ExitOK
	}
	if err == nil {
		err = cli.WithHelp(prog, b.check(pos))
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
