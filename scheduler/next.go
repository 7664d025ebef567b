package scheduler

import (
	"time"

	"github.com/ghlsync/ghlsync/store"
)

// NextRun is when a scheduler enqueues row next, as `scheduler list` says:
// nil when the schedule is disabled, or has no next_run_at yet (a row
// inserted by SQL, which the next tick fills in and runs at once). The
// error, wrapping ErrBadSpec, says why the row's spec cannot run at all.
func NextRun(row *store.Schedule) (*time.Time, error) {
	p, err := SpecOf(row).plan()
	if err != nil {
		return nil, err
	}
	if !row.Enabled || row.NextRunAt == nil {
		return nil, nil
	}
	due := p.due(row)
	return &due, nil
}
