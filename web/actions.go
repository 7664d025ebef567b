package web

import (
	"context"
	"time"
)

// Actions start work now, as the enqueue command does; the app implements
// them with the task constructors that command uses (web does not import
// the tasks package). They must be safe for concurrent use.
type Actions interface {
	// Enqueue puts the task of action (one of ActionNames) for the
	// location loc into its queue.
	Enqueue(ctx context.Context, action, loc string) (Enqueued, error)
}

// Enqueued names a task just put into a queue.
type Enqueued struct {
	TaskID string
	Queue  string
}

// The actions of a location's page, named as the enqueue command's
// subcommands.
const (
	ActionRefresh          = "refresh"
	ActionSyncPatients     = "sync-patients"
	ActionSyncAppointments = "sync-appointments"
)

// ActionNames are the actions a location's page offers, with the label of
// each button.
var ActionNames = []struct{ Name, Label string }{
	{ActionRefresh, "Refresh now"},
	{ActionSyncPatients, "Sync patients now"},
	{ActionSyncAppointments, "Sync appointments now"},
}

// Schedules administer the schedules table as the scheduler command does,
// with its validation and its one-line messages; the app implements them
// (web does not import the scheduler package). An error wrapped in an
// *InputError is the operator's mistake (a bad interval, an unknown name)
// and its text is the command line's; any other is the system's. They
// must be safe for concurrent use.
type Schedules interface {
	List(ctx context.Context) ([]ScheduleView, error)
	// Set gives the schedule name an interval (every) or a cron
	// expression in a time zone, as `scheduler set NAME --every | --cron
	// [--tz]`, and says what it did in one line.
	Set(ctx context.Context, name, every, cron, tz string) (string, error)
	// SetEnabled is `scheduler enable NAME` and `scheduler disable NAME`.
	SetEnabled(ctx context.Context, name string, enabled bool) (string, error)
	// RunNow enqueues the schedule's task at once, leaving its slots as
	// they are.
	RunNow(ctx context.Context, name string) (string, error)
}

// ScheduleView is one schedule as the schedules page shows it.
type ScheduleView struct {
	Name, TaskType, Queue string
	// Spec is the schedule as `scheduler list` shows it ("every 10m",
	// "cron 0 3 * * * (Europe/Berlin)"); Every, Cron and TZ are its parts,
	// to fill in the form with.
	Spec            string
	Every, Cron, TZ string
	Enabled         bool
	LastRunAt       *time.Time
	// NextRunAt is when the scheduler enqueues it next; nil when it is
	// disabled, or due at once. Problem says why it cannot run (a spec
	// written by SQL that does not parse), or that its task type is one no
	// worker runs.
	NextRunAt *time.Time
	Problem   string
	TotalRuns int64
}

// InputError is an error in what the operator asked for; its text says
// what is wrong.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }
