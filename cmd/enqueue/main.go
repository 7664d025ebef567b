// Command enqueue puts a ghlsync task into the queue now and, with --wait,
// waits for its result.
//
//	enqueue refresh           [--location ID] [--wait] [--timeout 60s]
//	enqueue sync-patients     [--location ID] [--wait] [--timeout 10m]
//	enqueue sync-appointments [--location ID] [--wait] [--timeout 10m]
//
// Without --location the task covers every connected location. With --wait
// the result is printed as JSON on stdout; the exit status is 0 when the
// task succeeded and 1 when it failed, with the reason on stderr.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/tasks"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one kind of task the CLI can enqueue.
type command struct {
	timeout time.Duration
	// one builds the task for a single location; all the fan-out task.
	one func(loc string, now time.Time) (*asynq.Task, error)
	all func() (*asynq.Task, error)
}

var commands = map[string]command{
	"refresh": {
		timeout: 60 * time.Second,
		one:     func(loc string, now time.Time) (*asynq.Task, error) { return tasks.NewRefreshTask(loc, true, now) },
		all:     func() (*asynq.Task, error) { return tasks.NewRefreshDueTask(true, true) },
	},
	"sync-patients": {
		timeout: 10 * time.Minute,
		one:     func(loc string, _ time.Time) (*asynq.Task, error) { return tasks.NewPatientsSyncTask(loc) },
		all:     func() (*asynq.Task, error) { return tasks.NewPatientsSyncTask("") },
	},
	"sync-appointments": {
		timeout: 10 * time.Minute,
		one:     func(loc string, _ time.Time) (*asynq.Task, error) { return tasks.NewAppointmentsSyncTask(loc) },
		all:     func() (*asynq.Task, error) { return tasks.NewAppointmentsSyncTask("") },
	},
}

const usage = `usage: enqueue COMMAND [--location ID] [--wait] [--timeout D]
commands: refresh, sync-patients, sync-appointments`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, usage)
		return app.ExitConfig
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return app.ConfigFailure(stderr, "enqueue", fmt.Errorf("unknown command %q\n%s", args[0], usage))
	}
	fs := flag.NewFlagSet("enqueue "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs, getenv, "")
	loc := fs.String("location", "", "location id (default: every connected location)")
	wait := fs.Bool("wait", false, "wait for the result and print it as JSON")
	timeout := fs.Duration("timeout", cmd.timeout, "how long --wait waits")
	if err := fs.Parse(args[1:]); err != nil {
		return app.ConfigFailure(stderr, "enqueue", err)
	}
	if fs.NArg() > 0 {
		return app.ConfigFailure(stderr, "enqueue", fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *timeout <= 0 {
		return app.ConfigFailure(stderr, "enqueue", errors.New("--timeout must be positive"))
	}
	cfg, err := loader.Load()
	if err != nil {
		return app.ConfigFailure(stderr, "enqueue", err)
	}
	redisOpt, rc, err := app.ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		fmt.Fprintf(stderr, "enqueue: %v\n", err)
		return 1
	}
	rc.Close()
	client := asynq.NewClient(redisOpt)
	defer client.Close()

	var task *asynq.Task
	if *loc != "" {
		task, err = cmd.one(*loc, time.Now())
	} else {
		task, err = cmd.all()
	}
	if err != nil {
		return app.ConfigFailure(stderr, "enqueue", err)
	}
	info, err := client.EnqueueContext(ctx, task)
	if err != nil {
		fmt.Fprintf(stderr, "enqueue: %v\n", err)
		return 1
	}
	if !*wait {
		fmt.Fprintf(stdout, "{\"task_id\":%q,\"queue\":%q,\"type\":%q}\n", info.ID, info.Queue, info.Type)
		return 0
	}
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	w := waiter{insp: insp, stderr: stderr}
	if *loc != "" {
		r := w.wait(ctx, info.Queue, info.ID, *loc)
		printJSON(stdout, r.Result)
		return r.exit(stderr)
	}
	// A fan-out: wait for it, then for every task it enqueued.
	r := w.wait(ctx, info.Queue, info.ID, "")
	if r.Err != "" {
		printJSON(stdout, r.Result)
		return r.exit(stderr)
	}
	var fan tasks.FanOutResult
	if err := json.Unmarshal(r.Result, &fan); err != nil {
		fmt.Fprintf(stderr, "enqueue: unreadable result of task %s: %v\n", info.ID, err)
		return 1
	}
	out := struct {
		Results []json.RawMessage `json:"results"`
		Skipped []tasks.Skipped   `json:"skipped,omitempty"`
	}{Results: []json.RawMessage{}, Skipped: fan.Skipped}
	code := 0
	for _, c := range fan.Enqueued {
		cr := w.wait(ctx, c.Queue, c.TaskID, c.LocationID)
		if cr.Result != nil {
			out.Results = append(out.Results, cr.Result)
		}
		if cr.exit(stderr) != 0 {
			code = 1
		}
	}
	printJSON(stdout, out)
	return code
}

type waiter struct {
	insp   *asynq.Inspector
	stderr io.Writer
}

type waited struct {
	ID     string
	Loc    string
	Result json.RawMessage
	Err    string
}

func (w waiter) wait(ctx context.Context, queue, id, loc string) waited {
	r := waited{ID: id, Loc: loc}
	info, err := app.WaitTask(ctx, w.insp, queue, id, func(i *asynq.TaskInfo) {
		fmt.Fprintf(w.stderr, "enqueue: task %s failed (attempt %d of %d), will retry: %s\n", id, i.Retried, i.MaxRetry, i.LastErr)
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		r.Err = fmt.Sprintf("still not done after --timeout; it stays queued, see task %s in /monitoring", id)
	case err != nil:
		r.Err = err.Error()
	case info.State == asynq.TaskStateArchived:
		r.Err = strings.TrimSuffix(info.LastErr, ": "+asynq.SkipRetry.Error())
	}
	if info != nil && len(info.Result) > 0 {
		r.Result = info.Result
	}
	var res struct {
		Outcome     string `json:"outcome"`
		Message     string `json:"message"`
		ContinuedBy string `json:"continued_by"`
	}
	if r.Err != "" || json.Unmarshal(r.Result, &res) != nil {
		return r
	}
	switch {
	case res.ContinuedBy != "":
		// A sync too big for one task continues in a follow-up; the last
		// one's result covers the whole pass.
		return w.wait(ctx, queue, res.ContinuedBy, loc)
	case res.Outcome == "inactive" || res.Outcome == "needs_reauth":
		// The task did its job, but the location needs attention.
		r.Err = cmp.Or(res.Message, "the location is "+res.Outcome)
	}
	return r
}

func (r waited) exit(stderr io.Writer) int {
	if r.Err == "" {
		return 0
	}
	what := "task " + r.ID
	if r.Loc != "" {
		what += " (location " + r.Loc + ")"
	}
	fmt.Fprintf(stderr, "enqueue: %s failed: %s\n", what, r.Err)
	return 1
}

func printJSON(w io.Writer, v any) {
	if v == nil {
		return
	}
	if raw, ok := v.(json.RawMessage); ok && raw == nil {
		return
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}
