package scheduler

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/store"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		every, cron, tz string
		want            Spec
	}{
		{every: "30s", want: Spec{Every: 30 * time.Second}},
		{every: "1h", want: Spec{Every: time.Hour}},
		{cron: "0 3 * * *", want: Spec{Cron: "0 3 * * *"}},
		{cron: "  0  3 * *   1-5 ", want: Spec{Cron: "0 3 * * 1-5"}},
		{cron: "@hourly", want: Spec{Cron: "@hourly"}},
		{cron: "0 3 * * *", tz: "Europe/Berlin", want: Spec{Cron: "0 3 * * *", TZ: "Europe/Berlin"}},
		{cron: "CRON_TZ=Europe/Berlin 0 3 * * *", want: Spec{Cron: "0 3 * * *", TZ: "Europe/Berlin"}},
		{cron: "TZ=America/New_York 0 3 * * *", tz: "America/New_York", want: Spec{Cron: "0 3 * * *", TZ: "America/New_York"}},
		{cron: "0 3 * * *", tz: "UTC", want: Spec{Cron: "0 3 * * *"}},
	} {
		got, err := ParseSpec(tc.every, tc.cron, tc.tz)
		if err != nil {
			t.Errorf("ParseSpec(%q, %q, %q): %v", tc.every, tc.cron, tc.tz, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseSpec(%q, %q, %q) (-want +got):\n%s", tc.every, tc.cron, tc.tz, d)
		}
	}
}

func TestParseSpecRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ every, cron, tz string }{
		{},
		{every: "0s"},
		{every: "-5m"},
		{every: "1500ms"},
		{every: "soon"},
		{every: "1m", cron: "* * * * *"},
		{every: "1m", tz: "Europe/Berlin"},
		{cron: "not a cron"},
		{cron: "61 * * * *"},
		{cron: "0 0 30 2 *"},
		{cron: "@every 5m"},
		{cron: "CRON_TZ=Europe/Berlin"},
		{cron: "0 3 * * *", tz: "Mars/Olympus_Mons"},
		{cron: "0 3 * * *", tz: "Local"},
		{cron: "CRON_TZ=Europe/Berlin 0 3 * * *", tz: "Europe/Paris"},
	} {
		if sp, err := ParseSpec(tc.every, tc.cron, tc.tz); !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParseSpec(%q, %q, %q) = %v, %v; want an ErrBadSpec", tc.every, tc.cron, tc.tz, sp, err)
		}
	}
}

func mustPlan(t *testing.T, sp Spec) plan {
	t.Helper()
	p, err := sp.plan()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// Interval slots stay on their grid: late runs do not shift later slots,
// and missed slots collapse into the run of the first.
func TestPlanAfterInterval(t *testing.T) {
	t.Parallel()
	p := mustPlan(t, Spec{Every: 10 * time.Minute})
	slot := at("2024-11-29T04:00:00Z")
	for _, tc := range []struct{ now, want string }{
		{"2024-11-29T04:00:00Z", "2024-11-29T04:10:00Z"},
		{"2024-11-29T04:00:00.3Z", "2024-11-29T04:10:00Z"},
		{"2024-11-29T04:09:59Z", "2024-11-29T04:10:00Z"},
		{"2024-11-29T04:10:00Z", "2024-11-29T04:20:00Z"},
		{"2024-11-29T09:35:00Z", "2024-11-29T09:40:00Z"},
	} {
		if got := p.after(slot, at(tc.now)); !got.Equal(at(tc.want)) {
			t.Errorf("after(%s, now %s) = %s, want %s", slot, tc.now, got, tc.want)
		}
	}
}

// A cron's slots are in its time zone, across a DST change.
func TestPlanCronTimeZone(t *testing.T) {
	t.Parallel()
	p := mustPlan(t, Spec{Cron: "0 3 * * *", TZ: "Europe/Berlin"})
	// Berlin leaves summer time on 2024-10-27.
	got := p.after(at("2024-10-26T01:00:00Z"), at("2024-10-26T01:00:05Z"))
	if want := at("2024-10-27T02:00:00Z"); !got.Equal(want) {
		t.Errorf("after the 26th's slot: %s, want %s (03:00 CET)", got, want)
	}
	if got := p.follow(at("2024-10-25T01:00:00Z")); !got.Equal(at("2024-10-26T01:00:00Z")) {
		t.Errorf("follow: %s, want 2024-10-26T01:00:00Z (03:00 CEST)", got)
	}
}

// The slot due is next_run_at, unless the spec (edited by SQL) puts the
// one after the last run earlier; it never depends on the clock.
func TestPlanDue(t *testing.T) {
	t.Parallel()
	last := at("2024-11-29T04:00:00Z")
	next := at("2024-11-29T05:00:00Z")
	row := &store.Schedule{LastRunAt: &last, NextRunAt: &next}
	if got := mustPlan(t, Spec{Every: time.Hour}).due(row); !got.Equal(next) {
		t.Errorf("unchanged spec: due %s, want next_run_at %s", got, next)
	}
	if got, want := mustPlan(t, Spec{Every: 30 * time.Second}).due(row), last.Add(30*time.Second); !got.Equal(want) {
		t.Errorf("interval shortened by SQL: due %s, want %s", got, want)
	}
	if got := mustPlan(t, Spec{Every: 2 * time.Hour}).due(row); !got.Equal(next) {
		t.Errorf("interval lengthened by SQL: due %s, want next_run_at %s", got, next)
	}
	if got, want := mustPlan(t, Spec{Cron: "*/5 * * * *"}).due(row), at("2024-11-29T04:05:00Z"); !got.Equal(want) {
		t.Errorf("cron set by SQL: due %s, want %s", got, want)
	}
	manual := at("2024-11-29T04:30:00Z")
	row.NextRunAt = &manual
	if got := mustPlan(t, Spec{Every: time.Hour}).due(row); !got.Equal(manual) {
		t.Errorf("next_run_at moved by SQL: due %s, want %s", got, manual)
	}
}

func TestSpecString(t *testing.T) {
	t.Parallel()
	for sp, want := range map[Spec]string{
		{Every: 10 * time.Minute}:                          "every 10m",
		{Every: time.Hour}:                                 "every 1h",
		{Every: 90 * time.Second}:                          "every 1m30s",
		{Every: 30 * time.Second}:                          "every 30s",
		{Cron: "0 3 * * *"}:                                "cron 0 3 * * *",
		{Cron: "0 3 * * *", TZ: "Europe/Berlin"}:           "cron 0 3 * * * (Europe/Berlin)",
		{Every: 25*time.Hour + 30*time.Minute}:             "every 25h30m",
		{Every: 2*time.Hour + 15*time.Second}:              "every 2h0m15s",
		{Every: 48 * time.Hour}:                            "every 48h",
		{Every: 3*time.Hour + 5*time.Minute + time.Second}: "every 3h5m1s",
	} {
		if got := sp.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", sp, got, want)
		}
	}
}
