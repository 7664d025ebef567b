package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/tasks"
)

// The queue commands of `enqueue`: Celery's `celery result`, `inspect`,
// `control revoke` and `purge`, on asynq's Inspector. They need only
// REDIS_URL.

// DefaultWaitTimeout is how long `enqueue wait TASK_ID` waits unless told:
// the longest an enqueue command waits by default.
const DefaultWaitTimeout = 10 * time.Minute

// inspector connects to the Redis of cfg; close closes the connection.
func inspector(ctx context.Context, cfg *config.Config) (insp *asynq.Inspector, close func(), err error) {
	rc, err := ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	// The inspector shares rc: closing rc closes it.
	return asynq.NewInspectorFromRedisClient(rc), func() { rc.Close() }, nil
}

// findTask is tasks.Find for the command line: an id that no queue holds
// is bad input.
func findTask(insp *asynq.Inspector, id string) (*asynq.TaskInfo, error) {
	info, err := tasks.Find(insp, id)
	if errors.Is(err, asynq.ErrTaskNotFound) {
		return nil, Usagef("no task %s in any queue (asynq keeps a task's id until a day after it ended; enqueue inspect lists the queues)", id)
	}
	return info, err
}

// TaskView is how the command line shows a task: its state and result,
// never its payload (which names a location, never a secret, but a task
// of another program's might carry anything).
type TaskView struct {
	TaskID        string          `json:"task_id"`
	Queue         string          `json:"queue"`
	Type          string          `json:"type"`
	State         string          `json:"state"`
	Retried       int             `json:"retried"`
	MaxRetry      int             `json:"max_retry"`
	LastError     string          `json:"last_error,omitempty"`
	LastFailedAt  *time.Time      `json:"last_failed_at,omitempty"`
	NextProcessAt *time.Time      `json:"next_process_at,omitempty"`
	CompletedAt   *time.Time      `json:"completed_at,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
}

func viewTask(info *asynq.TaskInfo) TaskView {
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	v := TaskView{
		TaskID: info.ID, Queue: info.Queue, Type: info.Type, State: info.State.String(),
		Retried: info.Retried, MaxRetry: info.MaxRetry, LastError: config.RedactText(info.LastErr),
		LastFailedAt: at(info.LastFailedAt), NextProcessAt: at(info.NextProcessAt), CompletedAt: at(info.CompletedAt),
	}
	switch {
	case len(info.Result) == 0:
	case json.Valid(info.Result):
		v.Result = info.Result
	default:
		v.Result, _ = json.Marshal(string(info.Result))
	}
	return v
}

// TaskResult is `enqueue result TASK_ID`: the task's state and result as
// JSON on stdout, whichever queue holds it. Its error says why the task
// did not succeed: it failed, its location needs attention, or it is not
// done yet.
func TaskResult(ctx context.Context, cfg *config.Config, id string, stdout, stderr io.Writer) error {
	insp, closeRedis, err := inspector(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	info, err := findTask(insp, id)
	if err != nil {
		return err
	}
	printJSON(stdout, viewTask(info))
	switch info.State {
	case asynq.TaskStateCompleted, asynq.TaskStateArchived:
	default:
		return fmt.Errorf("task %s is %s, not done yet (enqueue wait %s waits for it)", id, info.State, id)
	}
	if next := tasks.ContinuedBy(info); next != "" {
		fmt.Fprintf(stderr, "enqueue result: task %s handed the rest of its pass to task %s (enqueue wait %s waits for the whole pass)\n", id, next, id)
	}
	if err := tasks.Failure(info); err != nil {
		return fmt.Errorf("task %s failed: %w", id, err)
	}
	return nil
}

// WaitForTask is `enqueue wait TASK_ID`: it waits, up to timeout, for the
// task (a sync pass's follow-ups, a fan-out's children) as `enqueue
// ... --wait` does, and prints the same.
func WaitForTask(ctx context.Context, cfg *config.Config, id string, timeout time.Duration, stdout, stderr io.Writer) error {
	if timeout <= 0 {
		return Usagef("--timeout must be positive")
	}
	insp, closeRedis, err := inspector(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	info, err := findTask(insp, id)
	if err != nil {
		return err
	}
	var p struct {
		LocationID string `json:"location_id"`
	}
	json.Unmarshal(info.Payload, &p)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return waitAndPrint(ctx, insp, info.Queue, info.ID, p.LocationID, tasks.IsFanOut(info.Type, info.Payload), stdout, stderr)
}

// waitAndPrint waits for the task id in queue until ctx is done and prints
// its result as JSON on stdout, retries on stderr as they happen; for a
// fan-out, it waits for each task it enqueued and prints their results.
// The task's failure (or each failed child's, joined) is the error.
func waitAndPrint(ctx context.Context, insp *asynq.Inspector, queue, id, loc string, fanOut bool, stdout, stderr io.Writer) error {
	onRetry := func(i *asynq.TaskInfo) {
		fmt.Fprintf(stderr, "enqueue: task %s failed (attempt %d of %d), will retry: %s\n", i.ID, i.Retried, i.MaxRetry, config.RedactText(i.LastErr))
	}
	if !fanOut {
		w := tasks.Wait(ctx, insp, queue, id, loc, onRetry)
		printJSON(stdout, w.Result)
		return waitFailure(w)
	}
	fan, err := tasks.WaitFanOut(ctx, insp, queue, id, onRetry)
	if err != nil {
		return err
	}
	if fan.FanOut.Err != nil {
		printJSON(stdout, fan.FanOut.Result)
		return waitFailure(fan.FanOut)
	}
	out := struct {
		Results []json.RawMessage `json:"results"`
		Skipped []tasks.Skipped   `json:"skipped,omitempty"`
	}{Results: []json.RawMessage{}, Skipped: fan.Result.Skipped}
	var errs []error
	for _, c := range fan.Children {
		if c.Result != nil {
			out.Results = append(out.Results, c.Result)
		}
		errs = append(errs, waitFailure(c))
	}
	printJSON(stdout, out)
	return errors.Join(errs...)
}

// Inspect sections, as `enqueue inspect [SECTION]` names them.
const (
	InspectQueues     = "queues"
	InspectActive     = "active"
	InspectWorkers    = "workers"
	InspectRegistered = "registered"
)

// InspectSections are the sections `enqueue inspect` shows, in order.
var InspectSections = []string{InspectQueues, InspectActive, InspectWorkers, InspectRegistered}

// QueueView is one queue with its task counts by state.
type QueueView struct {
	Queue     string `json:"queue"`
	Paused    bool   `json:"paused"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
	// ProcessedToday and FailedToday count the tasks asynq processed and
	// saw fail today (UTC).
	ProcessedToday int `json:"processed_today"`
	FailedToday    int `json:"failed_today"`
	// LatencySeconds is how long the oldest pending task has waited.
	LatencySeconds float64 `json:"latency_seconds"`
}

// ActiveView is a task a worker runs now.
type ActiveView struct {
	TaskID string `json:"task_id"`
	Queue  string `json:"queue"`
	Type   string `json:"type"`
	// Location is the location the task is for, "" for a fan-out.
	Location string `json:"location,omitempty"`
	// StartedAt and Server are those of the worker that runs it, as
	// workers report them every few seconds: unset for a task that started
	// since, or whose worker died (asynq recovers it once its lease ends).
	StartedAt *time.Time `json:"started_at,omitempty"`
	Server    string     `json:"server,omitempty"`
}

// WorkerView is an asynq server of a worker process. A ghlsync worker runs
// two, one with the critical queue's slots and one with default's, so that
// syncs never starve token work; Host and PID tell its process.
type WorkerView struct {
	ID          string         `json:"id"`
	Host        string         `json:"host"`
	PID         int            `json:"pid"`
	Status      string         `json:"status"`
	Concurrency int            `json:"concurrency"`
	Queues      map[string]int `json:"queues"`
	StartedAt   time.Time      `json:"started_at"`
	Active      int            `json:"active"`
}

// TypeView is a task type the workers of this build handle.
type TypeView struct {
	Type  string `json:"type"`
	Queue string `json:"queue"`
	About string `json:"about"`
}

// InspectView is what `enqueue inspect` shows; a section not asked for is
// left out.
type InspectView struct {
	Queues     []QueueView  `json:"queues,omitempty"`
	Active     []ActiveView `json:"active,omitempty"`
	Workers    []WorkerView `json:"workers,omitempty"`
	Registered []TypeView   `json:"registered,omitempty"`
}

// Inspect is `enqueue inspect [SECTION] [--json]`: the queues with their
// sizes by state, the tasks running now, the workers, and the task types
// they handle; one section when section is not "". asJSON prints the
// InspectView as JSON instead of tables.
func Inspect(ctx context.Context, cfg *config.Config, section string, asJSON bool, stdout io.Writer) error {
	if section != "" && !slices.Contains(InspectSections, section) {
		return Usagef("unknown section %q (one of %s)", section, strings.Join(InspectSections, ", "))
	}
	insp, closeRedis, err := inspector(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	v, err := inspect(insp, section)
	if err != nil {
		return err
	}
	if asJSON {
		printJSON(stdout, v)
		return nil
	}
	return printInspect(stdout, v, section)
}

func inspect(insp *asynq.Inspector, section string) (*InspectView, error) {
	want := func(s string) bool { return section == "" || section == s }
	v := &InspectView{}
	queues, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(queues)
	var servers []*asynq.ServerInfo
	if want(InspectActive) || want(InspectWorkers) {
		if servers, err = insp.Servers(); err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
	}
	if want(InspectQueues) {
		v.Queues = []QueueView{}
		for _, q := range queues {
			qi, err := insp.GetQueueInfo(q)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", q, err)
			}
			v.Queues = append(v.Queues, QueueView{
				Queue: q, Paused: qi.Paused, Pending: qi.Pending, Active: qi.Active, Scheduled: qi.Scheduled,
				Retry: qi.Retry, Archived: qi.Archived, Completed: qi.Completed,
				ProcessedToday: qi.Processed, FailedToday: qi.Failed, LatencySeconds: qi.Latency.Seconds(),
			})
		}
	}
	if want(InspectActive) {
		// The queue's active list is the truth (it holds a dead worker's
		// task too); the servers say who runs each since when.
		type running struct {
			server  string
			started time.Time
		}
		runs := map[string]running{}
		for _, s := range servers {
			for _, w := range s.ActiveWorkers {
				runs[w.TaskID] = running{server: s.ID, started: w.Started}
			}
		}
		v.Active = []ActiveView{}
		for _, q := range queues {
			infos, err := insp.ListActiveTasks(q, asynq.PageSize(1000))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("active tasks of %s: %w", q, err)
			}
			for _, t := range infos {
				var p struct {
					LocationID string `json:"location_id"`
				}
				json.Unmarshal(t.Payload, &p)
				a := ActiveView{TaskID: t.ID, Queue: t.Queue, Type: t.Type, Location: p.LocationID}
				if r, ok := runs[t.ID]; ok {
					started := r.started.UTC()
					a.StartedAt, a.Server = &started, r.server
				}
				v.Active = append(v.Active, a)
			}
		}
	}
	if want(InspectWorkers) {
		v.Workers = []WorkerView{}
		for _, s := range servers {
			v.Workers = append(v.Workers, WorkerView{
				ID: s.ID, Host: s.Host, PID: s.PID, Status: s.Status, Concurrency: s.Concurrency,
				Queues: s.Queues, StartedAt: s.Started.UTC(), Active: len(s.ActiveWorkers),
			})
		}
		slices.SortFunc(v.Workers, func(a, b WorkerView) int {
			return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID), strings.Compare(a.ID, b.ID))
		})
	}
	if want(InspectRegistered) {
		for _, t := range tasks.Types() {
			v.Registered = append(v.Registered, TypeView{Type: t.Type, Queue: t.Queue, About: t.About})
		}
	}
	return v, nil
}

// printInspect prints v as aligned tables, one per section.
func printInspect(w io.Writer, v *InspectView, section string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	want := func(s string) bool { return section == "" || section == s }
	gap := ""
	head := func(s string) {
		fmt.Fprint(tw, gap)
		gap = "\n"
		fmt.Fprintln(tw, s)
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	if want(InspectQueues) {
		head("QUEUE\tPAUSED\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tCOMPLETED\tPROCESSED TODAY\tFAILED TODAY\tLATENCY")
		for _, q := range v.Queues {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", q.Queue, yesNo[q.Paused], q.Pending, q.Active,
				q.Scheduled, q.Retry, q.Archived, q.Completed, q.ProcessedToday, q.FailedToday,
				time.Duration(q.LatencySeconds*float64(time.Second)).Round(time.Millisecond))
		}
		if len(v.Queues) == 0 {
			fmt.Fprintln(tw, "(no queue yet: nothing was ever enqueued on this Redis)")
		}
	}
	if want(InspectActive) {
		head("ACTIVE TASK\tQUEUE\tTYPE\tLOCATION\tSTARTED\tWORKER")
		for _, a := range v.Active {
			// Workers report every few seconds: a task that started since
			// has no worker yet, as has one whose worker died.
			started, server := "-", "-"
			if a.StartedAt != nil {
				started, server = a.StartedAt.Format(time.RFC3339), a.Server
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.TaskID, a.Queue, a.Type, orDash(a.Location), started, server)
		}
		if len(v.Active) == 0 {
			fmt.Fprintln(tw, "(none running)")
		}
	}
	if want(InspectWorkers) {
		head("HOST\tPID\tWORKER\tSTATUS\tCONCURRENCY\tQUEUES\tACTIVE\tSTARTED")
		for _, s := range v.Workers {
			var qs []string
			for q, prio := range s.Queues {
				qs = append(qs, q+"="+strconv.Itoa(prio))
			}
			slices.Sort(qs)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Host, s.PID, s.ID, s.Status, s.Concurrency,
				strings.Join(qs, ","), s.Active, s.StartedAt.Format(time.RFC3339))
		}
		if len(v.Workers) == 0 {
			fmt.Fprintln(tw, "(no worker running)")
		}
	}
	if want(InspectRegistered) {
		head("TASK TYPE\tQUEUE\tWHAT IT DOES")
		for _, t := range v.Registered {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Type, t.Queue, t.About)
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Task actions, as `enqueue task ACTION TASK_ID` names them.
const (
	TaskRetry  = "retry"
	TaskCancel = "cancel"
	TaskDelete = "delete"
)

// TaskActions are the actions of `enqueue task`.
var TaskActions = []string{TaskRetry, TaskCancel, TaskDelete}

// cancelWait bounds how long `enqueue task cancel` waits for the task to
// stop: a handler stops within a GHL round trip of its context's end.
const cancelWait = 30 * time.Second

// ActOnTask is `enqueue task retry | cancel | delete TASK_ID`, on the task
// wherever it is queued:
//   - retry runs a task that waits for a retry, is scheduled or archived
//     (failed for good) now;
//   - cancel stops a running task; asynq then retries it by its policy,
//     like any failed attempt (delete it then to drop it);
//   - delete removes a task that is not running.
//
// It says on stdout what it did. A task in a state the action does not
// apply to is bad input, and nothing changes.
func ActOnTask(ctx context.Context, cfg *config.Config, action, id string, stdout io.Writer) error {
	if !slices.Contains(TaskActions, action) {
		return Usagef("unknown action %q (one of %s)", action, strings.Join(TaskActions, ", "))
	}
	insp, closeRedis, err := inspector(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	info, err := findTask(insp, id)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("task %s (%s, queue %s)", id, info.Type, info.Queue)
	switch action {
	case TaskRetry:
		switch info.State {
		case asynq.TaskStateRetry, asynq.TaskStateScheduled, asynq.TaskStateArchived:
		case asynq.TaskStateCompleted:
			return Usagef("%s completed: there is nothing to retry (enqueue a new task to run it again)", what)
		default:
			return Usagef("%s is %s: it runs without being retried", what, info.State)
		}
		if err := insp.RunTask(info.Queue, id); err != nil {
			return fmt.Errorf("retry %s: %w", what, err)
		}
		fmt.Fprintf(stdout, "%s: was %s, now pending: a worker takes it next\n", what, info.State)
	case TaskDelete:
		if info.State == asynq.TaskStateActive {
			return Usagef("%s is running: enqueue task cancel %s stops it first", what, id)
		}
		if err := insp.DeleteTask(info.Queue, id); err != nil {
			return fmt.Errorf("delete %s: %w", what, err)
		}
		fmt.Fprintf(stdout, "%s: was %s, now deleted\n", what, info.State)
	case TaskCancel:
		if info.State != asynq.TaskStateActive {
			return Usagef("%s is %s, not running: cancel stops a running task (enqueue task delete %s removes a waiting one)", what, info.State, id)
		}
		if err := insp.CancelProcessing(id); err != nil {
			return fmt.Errorf("cancel %s: %w", what, err)
		}
		after, err := waitNotActive(ctx, insp, info.Queue, id)
		if err != nil {
			return fmt.Errorf("cancel %s: %w", what, err)
		}
		switch after.State {
		case asynq.TaskStateRetry:
			fmt.Fprintf(stdout, "%s: cancelled; asynq retries it at %s (enqueue task delete %s drops it)\n",
				what, after.NextProcessAt.UTC().Format(time.RFC3339), id)
		default:
			fmt.Fprintf(stdout, "%s: cancelled, now %s\n", what, after.State)
		}
	}
	return nil
}

// waitNotActive polls the task until it is no longer active, for at most
// cancelWait.
func waitNotActive(ctx context.Context, insp *asynq.Inspector, queue, id string) (*asynq.TaskInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	for {
		info, err := insp.GetTaskInfo(queue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound):
			// A task without retention leaves Redis when it ends.
			return &asynq.TaskInfo{ID: id, Queue: queue, State: asynq.TaskStateCompleted}, nil
		case err != nil:
			return nil, err
		case info.State != asynq.TaskStateActive:
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("asked to stop, but still running after %s (its worker may be stuck; asynq recovers the task when its lease ends)", cancelWait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PurgeStates are the states `enqueue queue purge --state` empties. Active
// tasks are running and cannot be deleted: `enqueue task cancel` stops
// one.
var PurgeStates = []string{"archived", "retry", "scheduled", "pending", "completed"}

// PurgeQueue is `enqueue queue purge NAME --state STATE`: it deletes every
// task of queue in state and prints how many.
func PurgeQueue(ctx context.Context, cfg *config.Config, queue, state string, stdout io.Writer) error {
	if state == "active" {
		return Usagef("--state active: running tasks cannot be purged; enqueue task cancel TASK_ID stops one")
	}
	if !slices.Contains(PurgeStates, state) {
		return Usagef("--state %q: give one of %s", state, strings.Join(PurgeStates, ", "))
	}
	insp, closeRedis, err := inspector(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeRedis()
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	if !slices.Contains(queues, queue) {
		if len(queues) == 0 {
			return Usagef("no queue %q: nothing was ever enqueued on this Redis", queue)
		}
		slices.Sort(queues)
		return Usagef("no queue %q (the queues are: %s)", queue, strings.Join(queues, ", "))
	}
	purge := map[string]func(string) (int, error){
		"archived":  insp.DeleteAllArchivedTasks,
		"retry":     insp.DeleteAllRetryTasks,
		"scheduled": insp.DeleteAllScheduledTasks,
		"pending":   insp.DeleteAllPendingTasks,
		"completed": insp.DeleteAllCompletedTasks,
	}[state]
	n, err := purge(queue)
	if err != nil {
		return fmt.Errorf("purge the %s tasks of %s: %w", state, queue, err)
	}
	fmt.Fprintf(stdout, "queue %s: deleted %d %s tasks\n", queue, n, state)
	return nil
}
