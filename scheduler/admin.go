package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ghlsync/ghlsync/store"
)

// Default is a schedule that Setup creates. The caller defines the
// defaults: they name tasks, and the scheduler enqueues what a row names
// without knowing the tasks.
type Default struct {
	Name     string
	TaskType string
	Queue    string
	// Payload is the task's payload, "" for none.
	Payload string
	Spec    Spec
}

// SetupResult says what Setup did to one default schedule.
type SetupResult struct {
	Name string
	// Action is "created", "updated" or "unchanged".
	Action string
	// Detail lists what was updated, or what an operator changed that
	// Setup kept.
	Detail string
}

// Setup creates the schedules of defaults that do not exist. Of one that
// does, it brings the task type and queue (which the code defines) in line
// with the defaults, and keeps what an operator may have chosen: the
// schedule, the payload and whether it is enabled. With reset it restores
// those to the defaults as well (enabled, the default's payload). A second run
// changes nothing, not even changed_at. A new interval schedule is due at once, so
// the first scheduler to start refreshes tokens and syncs right away.
func Setup(ctx context.Context, st *store.Store, defaults []Default, now time.Time, reset bool) ([]SetupResult, error) {
	var out []SetupResult
	for _, d := range defaults {
		p, err := d.Spec.plan()
		if err != nil {
			return out, fmt.Errorf("scheduler.Setup %s: %w", d.Name, err)
		}
		next := p.resume(nil, now)
		row := store.Schedule{Name: d.Name, TaskType: d.TaskType, Queue: d.Queue, Payload: d.Payload, Enabled: true, NextRunAt: &next}
		d.Spec.applyTo(&row)
		created, err := st.CreateSchedule(ctx, row)
		if err != nil {
			return out, err
		}
		if created {
			out = append(out, SetupResult{Name: d.Name, Action: "created", Detail: d.Spec.String() + ", queue " + d.Queue})
			continue
		}
		var changes, kept []string
		updated, err := st.UpdateSchedule(ctx, d.Name, func(r *store.Schedule) error {
			changes, kept = nil, nil
			if r.TaskType != d.TaskType {
				changes = append(changes, "task "+r.TaskType+" -> "+d.TaskType)
				r.TaskType = d.TaskType
			}
			if r.Queue != d.Queue {
				changes = append(changes, "queue "+r.Queue+" -> "+d.Queue)
				r.Queue = d.Queue
			}
			if sp := SpecOf(r); sp != d.Spec {
				if reset {
					changes = append(changes, sp.String()+" -> "+d.Spec.String())
					d.Spec.applyTo(r)
					next := p.resume(r.LastRunAt, now)
					r.NextRunAt = &next
				} else {
					kept = append(kept, sp.String()+" (default "+d.Spec.String()+")")
				}
			}
			if r.Payload != d.Payload {
				if reset {
					changes = append(changes, "payload "+cmp.Or(d.Payload, "cleared"))
					r.Payload = d.Payload
				} else {
					kept = append(kept, "payload "+r.Payload)
				}
			}
			if !r.Enabled {
				if reset {
					changes = append(changes, "enabled")
					r.Enabled = true
				} else {
					kept = append(kept, "disabled")
				}
			}
			if len(changes) == 0 {
				return store.ErrUnchanged
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		res := SetupResult{Name: updated.Name, Action: "unchanged"}
		if len(changes) > 0 {
			res.Action = "updated"
			res.Detail = strings.Join(changes, ", ")
		}
		if len(kept) > 0 {
			if res.Detail != "" {
				res.Detail += "; "
			}
			res.Detail += "kept " + strings.Join(kept, ", ") + " (--reset restores the defaults)"
		}
		out = append(out, res)
	}
	return out, nil
}

// Set changes the spec of the schedule called name. Its next slot follows
// its last run under the new spec, so a shorter interval whose slot has
// passed runs at once; one that never ran runs at once (interval) or at the
// next cron time. It reports whether anything changed; an unknown name
// gives an error wrapping store.ErrNotFound, a bad spec one wrapping
// ErrBadSpec, and neither changes anything.
func Set(ctx context.Context, st *store.Store, name string, sp Spec, now time.Time) (*store.Schedule, bool, error) {
	p, err := sp.plan()
	if err != nil {
		return nil, false, err
	}
	changed := false
	row, err := st.UpdateSchedule(ctx, name, func(r *store.Schedule) error {
		if SpecOf(r) == sp {
			return store.ErrUnchanged
		}
		sp.applyTo(r)
		next := p.resume(r.LastRunAt, now)
		r.NextRunAt = &next
		changed = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return row, changed, nil
}

// ErrExists is wrapped by the error of Add for a name already in use.
var ErrExists = errors.New("schedule exists")

// ErrBadName is wrapped by the error of Add for a name no schedule may
// have.
var ErrBadName = errors.New("bad schedule name")

// validName is a schedule's name: it becomes part of asynq task ids
// (TaskID) and of metric labels, and fits the column (64).
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Add creates the schedule d, enabled, with payload (the task's JSON, ""
// for none). Like a schedule of Setup, an interval one is due at once and
// a cron one at its next time. A name in use gives an error wrapping
// ErrExists, a bad name one wrapping ErrBadName, a bad spec one wrapping
// ErrBadSpec; none of them changes anything. The task type is the
// caller's to check: the scheduler enqueues whatever a row names.
func Add(ctx context.Context, st *store.Store, d Default, payload string, now time.Time) (*store.Schedule, error) {
	if !validName.MatchString(d.Name) {
		return nil, fmt.Errorf("%w %q: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadName, d.Name)
	}
	p, err := d.Spec.plan()
	if err != nil {
		return nil, err
	}
	next := p.resume(nil, now)
	row := store.Schedule{Name: d.Name, TaskType: d.TaskType, Queue: d.Queue, Payload: payload, Enabled: true, NextRunAt: &next}
	d.Spec.applyTo(&row)
	created, err := st.CreateSchedule(ctx, row)
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, fmt.Errorf("scheduler.Add %s: %w", d.Name, ErrExists)
	}
	return st.Schedule(ctx, d.Name)
}

// Delete deletes the schedule called name; an unknown name gives an error
// wrapping store.ErrNotFound. Tasks it enqueued stay queued.
func Delete(ctx context.Context, st *store.Store, name string) error {
	return st.DeleteSchedule(ctx, name)
}

// SetEnabled enables or disables the schedule called name and reports
// whether that changed anything. Enabling keeps next_run_at: a slot that
// passed while the schedule was disabled runs once, at once, as one missed
// while the schedulers were down would.
func SetEnabled(ctx context.Context, st *store.Store, name string, enabled bool) (*store.Schedule, bool, error) {
	changed := false
	row, err := st.UpdateSchedule(ctx, name, func(r *store.Schedule) error {
		if r.Enabled == enabled {
			return store.ErrUnchanged
		}
		r.Enabled = enabled
		changed = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return row, changed, nil
}

// List writes the schedules as an aligned table. NEXT RUN is when the
// scheduler will enqueue it (see plan.due), "-" when disabled. known, when
// not nil, tells the task types a worker handles: a row naming another
// (inserted by SQL, or left by an older release) is flagged in its TASK
// column, since its tasks would only fail.
func List(ctx context.Context, st *store.Store, w io.Writer, now time.Time, known func(taskType string) bool) error {
	rows, err := st.Schedules(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTASK\tQUEUE\tSCHEDULE\tENABLED\tLAST RUN\tNEXT RUN\tRUNS")
	for i := range rows {
		r := &rows[i]
		sp := SpecOf(r)
		next := "-"
		if p, err := sp.plan(); err != nil {
			next = "invalid: " + err.Error()
		} else if r.Enabled && r.NextRunAt != nil {
			next = when(p.due(r), now)
		} else if r.Enabled {
			next = "at once"
		}
		last := "never"
		if r.LastRunAt != nil {
			last = when(*r.LastRunAt, now)
		}
		enabled := "yes"
		if !r.Enabled {
			enabled = "no"
		}
		task := r.TaskType
		if known != nil && !known(task) {
			task += " (UNKNOWN: no worker handles it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, task, r.Queue, sp, enabled, last, next, strconv.FormatInt(r.TotalRuns, 10))
	}
	return tw.Flush()
}

// when formats t in UTC with how far it is from now: 2024-11-29 04:10:00Z (in 3m20s).
func when(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	rel := "now"
	switch {
	case d > 0:
		rel = "in " + formatDuration(d)
	case d < 0:
		rel = formatDuration(-d) + " ago"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z") + " (" + rel + ")"
}
