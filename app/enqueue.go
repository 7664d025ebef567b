package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/tasks"
)

// enqueueCommand is one kind of task `enqueue` puts into the queue.
type enqueueCommand struct {
	// timeout is how long --wait waits unless told otherwise.
	timeout time.Duration
	// one builds the task for a single location, asked for at now (on
	// the shared clock) and kept keep (tasks.WaitRetention) with what it
	// enqueues; all the fan-out task.
	one func(loc string, now time.Time, keep time.Duration) (*asynq.Task, error)
	// all's tasks are kept keep (tasks.WaitRetention), its children too.
	all func(keep time.Duration) (*asynq.Task, error)
	// syncType is the task type of a sync command, "" for the others: it
	// takes --full.
	syncType string
}

var enqueueCommands = map[string]enqueueCommand{
	"refresh": {
		timeout: 60 * time.Second,
		one: func(loc string, now time.Time, _ time.Duration) (*asynq.Task, error) {
			return tasks.NewRefreshTask(loc, true, now)
		},
		all: func(keep time.Duration) (*asynq.Task, error) { return tasks.NewRefreshDueTask(true, true, keep) },
	},
	"sync-patients": {
		timeout: 10 * time.Minute,
		one: func(loc string, _ time.Time, keep time.Duration) (*asynq.Task, error) {
			return tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: loc, KeepSeconds: int64(keep / time.Second)})
		},
		all: func(keep time.Duration) (*asynq.Task, error) {
			return tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{KeepSeconds: int64(keep / time.Second)})
		},
		syncType: tasks.TypePatientsSync,
	},
	"sync-appointments": {
		timeout: 10 * time.Minute,
		one: func(loc string, _ time.Time, keep time.Duration) (*asynq.Task, error) {
			return tasks.NewSyncTask(tasks.TypeAppointmentsSync, tasks.SyncPayload{LocationID: loc, KeepSeconds: int64(keep / time.Second)})
		},
		all: func(keep time.Duration) (*asynq.Task, error) {
			return tasks.NewSyncTask(tasks.TypeAppointmentsSync, tasks.SyncPayload{KeepSeconds: int64(keep / time.Second)})
		},
		syncType: tasks.TypeAppointmentsSync,
	},
	"reconcile": {
		timeout: 30 * time.Minute,
		// The enqueue keeps it for the wait (asynq.Retention); its
		// children are kept minutes, long enough to be followed.
		one: func(loc string, _ time.Time, _ time.Duration) (*asynq.Task, error) {
			return tasks.NewReconcileTask(loc)
		},
		all: func(time.Duration) (*asynq.Task, error) { return tasks.NewReconcileTask("") },
	},
}

// IsSyncCommand reports whether NAME is a sync command, which takes --full
// and --dry-run.
func IsSyncCommand(name string) bool { return enqueueCommands[name].syncType != "" }

// EnqueueTimeout is how long `enqueue NAME --wait` waits by default; ok is
// false when NAME is no enqueue command.
func EnqueueTimeout(name string) (d time.Duration, ok bool) {
	c, ok := enqueueCommands[name]
	return c.timeout, ok
}

// EnqueueRequest is one `enqueue` command line.
type EnqueueRequest struct {
	// Command is refresh, sync-patients or sync-appointments.
	Command string
	// Location is the location to act on; "" means every connected one
	// (through a fan-out task).
	Location string
	// Wait waits for the result and prints it as JSON.
	Wait bool
	// Timeout is how long Wait waits; 0 means the command's default.
	Timeout time.Duration
	// Full, for a sync command, sends every record again whatever its
	// hash (a repair: contacts deleted in GHL are created again, the
	// others updated in place).
	Full bool
	// DryRun, for a sync command, counts what the sync would create,
	// update, delete and refuse, and sends nothing to GHL.
	DryRun bool
	// Since, for a sync command, limits the pass to the rows changed at or
	// after a time (see ParseSince); "" for none.
	Since string
}

// ParseSince reads enqueue's --since: an RFC 3339 time, a date and time or
// a date (UTC), or a duration before now (2h: the last two hours).
func ParseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			if t.After(now) {
				return time.Time{}, Usagef("--since %q is in the future: no row has changed after it yet", v)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, Usagef("--since %q is not a time: give an RFC 3339 time (2026-12-01T09:00:00Z, 2026-12-01T10:00:00+01:00), "+
		"a UTC date and time (2026-12-01 09:00) or date (2026-12-01), or a duration before now (90m, 2h)", v)
}

// RunEnqueue enqueues the task of req now. Without req.Wait it prints the
// task's id, queue and type as JSON on stdout. With it, it waits for the
// task (for a fan-out, for every task it enqueued) and prints the result
// as JSON on stdout, and retries on stderr as they happen; the task's
// failure (or each failed child's, joined) is the error. Bad input is a
// *UsageError, returned before anything is enqueued.
func RunEnqueue(ctx context.Context, cfg *config.Config, req EnqueueRequest, stdout, stderr io.Writer) error {
	cmd, ok := enqueueCommands[req.Command]
	if !ok {
		return Usagef("unknown command %q", req.Command)
	}
	timeout := req.Timeout
	if timeout == 0 {
		timeout = cmd.timeout
	}
	if timeout < 0 {
		return Usagef("--timeout must be positive")
	}
	if (req.Full || req.DryRun || req.Since != "") && cmd.syncType == "" {
		return Usagef("--full, --dry-run and --since are for sync-patients and sync-appointments")
	}
	var since *time.Time
	if req.Since != "" {
		t, err := ParseSince(req.Since, time.Now())
		if err != nil {
			return err
		}
		since = &t
	}
	// Someone asked for this task: it is kept for the wait and an hour
	// after, for `enqueue result` and `enqueue wait` (with or without
	// --wait now), where scheduled tasks are kept minutes.
	keep := tasks.WaitRetention(timeout)
	rc, err := ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rc.Close()
	var task *asynq.Task
	switch {
	case req.Full || req.DryRun || since != nil:
		task, err = tasks.NewSyncTask(cmd.syncType, tasks.SyncPayload{LocationID: req.Location, Force: req.Full, DryRun: req.DryRun, Since: since, KeepSeconds: int64(keep / time.Second)})
	case req.Location != "":
		// The request's time is Redis's, the clock the workers compare it
		// with: this machine's may be off.
		var now time.Time
		if now, err = refresh.SharedTime(ctx, rc); err != nil {
			return err
		}
		task, err = cmd.one(req.Location, now, keep)
	default:
		task, err = cmd.all(keep)
	}
	if err != nil {
		return Usage(err)
	}
	info, err := asynq.NewClientFromRedisClient(rc).EnqueueContext(ctx, task, asynq.Retention(keep))
	if err != nil {
		return err
	}
	if !req.Wait {
		fmt.Fprintf(stdout, "{\"task_id\":%q,\"queue\":%q,\"type\":%q}\n", info.ID, info.Queue, info.Type)
		return nil
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return waitAndPrint(ctx, asynq.NewInspectorFromRedisClient(rc), info.Queue, info.ID, req.Location, req.Location == "", stdout, stderr)
}

// waitFailure says which task failed and why, in terms of the enqueue
// command line; nil when w succeeded.
func waitFailure(w tasks.Waited) error {
	if w.Err == nil {
		return nil
	}
	what := "task " + w.TaskID
	if w.LocationID != "" {
		what += " (location " + w.LocationID + ")"
	}
	if errors.Is(w.Err, context.DeadlineExceeded) {
		return fmt.Errorf("%s failed: still not done after --timeout; it stays queued, see task %s in /monitoring", what, w.TaskID)
	}
	return fmt.Errorf("%s failed: %w", what, w.Err)
}

// printJSON prints v indented on w; nothing for nil or an empty result.
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
