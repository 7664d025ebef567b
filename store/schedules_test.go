package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func scheduleRow(name string, next time.Time) store.Schedule {
	return store.Schedule{Name: name, TaskType: "ghl:token:refresh-due", Queue: "critical", EverySeconds: 600, Enabled: true, NextRunAt: &next}
}

func getSchedule(t *testing.T, st *store.Store, name string) store.Schedule {
	t.Helper()
	row, err := st.Schedule(context.Background(), name)
	must(t, err)
	return *row
}

func TestCreateSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	next := time.Date(2024, 11, 29, 4, 10, 0, 123, time.FixedZone("CET", 3600))
	row := scheduleRow("token-refresh", next)
	row.Enabled = false // the column's default is true: it must not win
	created, err := st.CreateSchedule(ctx, row)
	must(t, err)
	if !created {
		t.Fatal("CreateSchedule did not create")
	}
	got := getSchedule(t, st, "token-refresh")
	if got.Enabled {
		t.Error("Enabled=false was stored as true")
	}
	if want := next.UTC().Truncate(time.Second); !got.NextRunAt.Equal(want) {
		t.Errorf("NextRunAt = %s, want %s (UTC, whole seconds)", got.NextRunAt, want)
	}

	row.Queue = "default"
	created, err = st.CreateSchedule(ctx, row)
	must(t, err)
	if created {
		t.Error("CreateSchedule of an existing name created")
	}
	if d := cmp.Diff(got, getSchedule(t, st, "token-refresh")); d != "" {
		t.Errorf("second CreateSchedule changed the row (-want +got):\n%s", d)
	}
	if _, err := st.Schedule(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Schedule(nope) = %v, want ErrNotFound", err)
	}
}

// The compare-and-set that records a run succeeds once per read, however
// many schedulers try at once.
func TestClaimScheduleRunOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	slot := time.Now().UTC().Truncate(time.Second)
	_, err := st.CreateSchedule(ctx, scheduleRow("s", slot))
	must(t, err)
	read := getSchedule(t, st, "s")

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := st.ClaimScheduleRun(ctx, &read, slot, slot.Add(10*time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d claims of one read won, want 1", n)
	}
	got := getSchedule(t, st, "s")
	if got.TotalRuns != 1 || !got.LastRunAt.Equal(slot) || !got.NextRunAt.Equal(slot.Add(10*time.Minute)) {
		t.Errorf("after the claim: runs %d, last %v, next %v", got.TotalRuns, got.LastRunAt, got.NextRunAt)
	}

	// A claim from the new read succeeds; one from the old read still not.
	ok, err := st.ClaimScheduleRun(ctx, &got, slot.Add(10*time.Minute), slot.Add(20*time.Minute))
	must(t, err)
	if !ok {
		t.Error("claim from a fresh read failed")
	}
	if ok, _ := st.ClaimScheduleRun(ctx, &read, slot, slot.Add(10*time.Minute)); ok {
		t.Error("claim from a stale read won")
	}
}

// A change between the read and the claim makes the claim fail, even
// when the change leaves next_run_at as it was read.
func TestClaimScheduleRunAfterChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	slot := time.Now().UTC().Truncate(time.Second)
	_, err := st.CreateSchedule(ctx, scheduleRow("s", slot))
	must(t, err)
	read := getSchedule(t, st, "s")
	_, err = st.UpdateSchedule(ctx, "s", func(r *store.Schedule) error {
		next := slot.Add(time.Minute)
		r.NextRunAt = &next
		return nil
	})
	must(t, err)
	if ok, _ := st.ClaimScheduleRun(ctx, &read, slot, slot.Add(time.Hour)); ok {
		t.Error("claim won after next_run_at changed")
	}

	// Another scheduler records a run, and an edit puts next_run_at back
	// where it was when read: total_runs still tells.
	read = getSchedule(t, st, "s")
	fresh := read
	ok, err := st.ClaimScheduleRun(ctx, &fresh, slot, slot.Add(time.Hour))
	must(t, err)
	if !ok {
		t.Fatal("claim from a fresh read failed")
	}
	_, err = st.UpdateSchedule(ctx, "s", func(r *store.Schedule) error {
		r.NextRunAt = read.NextRunAt
		return nil
	})
	must(t, err)
	if ok, _ := st.ClaimScheduleRun(ctx, &read, slot, slot.Add(time.Hour)); ok {
		t.Error("second claim from one read won")
	}
}

func TestUpdateSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2024, 11, 29, 4, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st, _ := storetest.Open(t, "", store.WithClock(clk))
	_, err := st.CreateSchedule(ctx, scheduleRow("s", t0))
	must(t, err)
	before := getSchedule(t, st, "s")
	clk.Advance(time.Hour)

	// ErrUnchanged writes nothing, not even changed_at, and is no error;
	// the row is returned as it is even if change touched it.
	got, err := st.UpdateSchedule(ctx, "s", func(r *store.Schedule) error {
		r.Queue = "scribbled"
		return store.ErrUnchanged
	})
	must(t, err)
	if d := cmp.Diff(before, *got); d != "" {
		t.Errorf("returned row after ErrUnchanged (-want +got):\n%s", d)
	}
	// Another error aborts and is returned.
	boom := errors.New("boom")
	if _, err := st.UpdateSchedule(ctx, "s", func(r *store.Schedule) error {
		r.Queue = "scribbled"
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("UpdateSchedule = %v, want boom", err)
	}
	if d := cmp.Diff(before, getSchedule(t, st, "s")); d != "" {
		t.Errorf("row changed by aborted updates (-want +got):\n%s", d)
	}

	got, err = st.UpdateSchedule(ctx, "s", func(r *store.Schedule) error {
		r.Enabled = false
		r.EverySeconds = 30
		return nil
	})
	must(t, err)
	want := before
	want.Enabled, want.EverySeconds, want.ChangedAt = false, 30, t0.Add(time.Hour)
	if d := cmp.Diff(want, getSchedule(t, st, "s")); d != "" {
		t.Errorf("row after update (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, *got); d != "" {
		t.Errorf("returned row (-want +got):\n%s", d)
	}

	if _, err := st.UpdateSchedule(ctx, "nope", func(*store.Schedule) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSchedule(nope) = %v, want ErrNotFound", err)
	}
}

func TestInitScheduleNext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	row := scheduleRow("s", time.Time{})
	row.NextRunAt = nil
	_, err := st.CreateSchedule(ctx, row)
	must(t, err)
	t1 := time.Now().UTC().Truncate(time.Second)
	ok, err := st.InitScheduleNext(ctx, "s", t1)
	must(t, err)
	if !ok {
		t.Fatal("InitScheduleNext did not fill a NULL next_run_at")
	}
	if ok, _ := st.InitScheduleNext(ctx, "s", t1.Add(time.Hour)); ok {
		t.Error("InitScheduleNext overwrote a next_run_at")
	}
	if got := getSchedule(t, st, "s").NextRunAt; !got.Equal(t1) {
		t.Errorf("next_run_at = %v, want %s", got, t1)
	}
}

func TestSchedulesLists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := storetest.Open(t, "")
	now := time.Now()
	for _, name := range []string{"b", "a", "c"} {
		row := scheduleRow(name, now)
		row.Enabled = name != "b"
		_, err := st.CreateSchedule(ctx, row)
		must(t, err)
	}
	names := func(rows []store.Schedule, err error) []string {
		must(t, err)
		var out []string
		for _, r := range rows {
			out = append(out, r.Name)
		}
		return out
	}
	if d := cmp.Diff([]string{"a", "b", "c"}, names(st.Schedules(ctx))); d != "" {
		t.Errorf("Schedules (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a", "c"}, names(st.EnabledSchedules(ctx))); d != "" {
		t.Errorf("EnabledSchedules (-want +got):\n%s", d)
	}
}
