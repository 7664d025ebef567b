package scheduler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
)

// NextRun is the slot the loop enqueues next, which an interval shortened
// by SQL puts before next_run_at; none for a disabled row or one without
// next_run_at; an error for a spec that cannot run.
func TestNextRun(t *testing.T) {
	t.Parallel()
	last := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	next := last.Add(time.Hour)
	for _, tc := range []struct {
		name string
		row  store.Schedule
		want *time.Time
	}{
		{"interval", store.Schedule{EverySeconds: 3600, Enabled: true, LastRunAt: &last, NextRunAt: &next}, &next},
		{"shortened by SQL", store.Schedule{EverySeconds: 60, Enabled: true, LastRunAt: &last, NextRunAt: &next}, ptr(last.Add(time.Minute))},
		{"disabled", store.Schedule{EverySeconds: 3600, LastRunAt: &last, NextRunAt: &next}, nil},
		{"inserted by SQL", store.Schedule{EverySeconds: 3600, Enabled: true}, nil},
	} {
		got, err := scheduler.NextRun(&tc.row)
		if err != nil || (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(*tc.want)) {
			t.Errorf("%s: NextRun = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := scheduler.NextRun(&store.Schedule{Cron: "not a cron", Enabled: true, NextRunAt: &next}); !errors.Is(err, scheduler.ErrBadSpec) {
		t.Errorf("a bad cron: %v, want ErrBadSpec", err)
	}
}
