package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"
	// Cron time zones must resolve the same on every replica, also in a
	// container image without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/ghlsync/ghlsync/store"
)

// Spec says when a schedule runs: every Every, or at the times of the
// five-field cron expression Cron in the IANA time zone TZ (empty: UTC).
// Exactly one of Every and Cron is set.
type Spec struct {
	Every time.Duration
	Cron  string
	TZ    string
}

// ErrBadSpec is wrapped by every error about a schedule's every or cron.
var ErrBadSpec = errors.New("bad schedule")

// cronParser is robfig/cron's standard parser: minute, hour, day of month,
// month, day of week, and descriptors such as @hourly.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSpec parses the --every, --cron and --tz of `scheduler set`: exactly
// one of every and cronExpr; tz only with cronExpr, which may instead begin
// with CRON_TZ=ZONE (or TZ=ZONE).
func ParseSpec(every, cronExpr, tz string) (Spec, error) {
	switch {
	case every != "" && cronExpr != "":
		return Spec{}, fmt.Errorf("%w: give --every or --cron, not both", ErrBadSpec)
	case every == "" && cronExpr == "":
		return Spec{}, fmt.Errorf("%w: give --every DURATION or --cron SPEC", ErrBadSpec)
	case every != "":
		if tz != "" {
			return Spec{}, fmt.Errorf("%w: --tz goes with --cron, not --every", ErrBadSpec)
		}
		d, err := time.ParseDuration(every)
		if err != nil {
			return Spec{}, fmt.Errorf("%w: --every %q is not a duration such as 30s, 10m or 1h", ErrBadSpec, every)
		}
		sp := Spec{Every: d}
		return sp, sp.Validate()
	}
	expr := strings.TrimSpace(cronExpr)
	if zone, rest, ok := cutZone(expr); ok {
		if tz != "" && tz != zone {
			return Spec{}, fmt.Errorf("%w: --tz %s and CRON_TZ=%s disagree", ErrBadSpec, tz, zone)
		}
		tz, expr = zone, rest
	}
	sp := Spec{Cron: strings.Join(strings.Fields(expr), " "), TZ: tz}
	if sp.TZ == "UTC" {
		sp.TZ = ""
	}
	return sp, sp.Validate()
}

// cutZone splits "CRON_TZ=Europe/Berlin 0 3 * * *". robfig/cron parses
// that prefix too, but panics when no field follows it.
func cutZone(expr string) (zone, rest string, ok bool) {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if after, found := strings.CutPrefix(expr, p); found {
			zone, rest, _ = strings.Cut(after, " ")
			return zone, strings.TrimSpace(rest), true
		}
	}
	return "", expr, false
}

// Validate reports whether sp can run: a positive interval of whole seconds
// (slots are whole seconds: they name asynq task ids at that resolution),
// or a cron expression that parses and fires, in a zone that exists.
func (sp Spec) Validate() error {
	_, err := sp.plan()
	return err
}

func (sp Spec) plan() (plan, error) {
	switch {
	case sp.Every != 0 && sp.Cron != "":
		return plan{}, fmt.Errorf("%w: both an interval (%s) and a cron expression (%q); set one", ErrBadSpec, formatDuration(sp.Every), sp.Cron)
	case sp.Cron == "":
		if sp.Every <= 0 {
			return plan{}, fmt.Errorf("%w: interval %s is not positive", ErrBadSpec, formatDuration(sp.Every))
		}
		if sp.Every%time.Second != 0 {
			return plan{}, fmt.Errorf("%w: interval %s is not a whole number of seconds", ErrBadSpec, sp.Every)
		}
		return plan{every: sp.Every}, nil
	}
	if strings.HasPrefix(sp.Cron, "@every") {
		return plan{}, fmt.Errorf("%w: cron %q: use --every for an interval", ErrBadSpec, sp.Cron)
	}
	// "Local" would make the slots depend on each replica's machine.
	if sp.TZ == "Local" {
		return plan{}, fmt.Errorf("%w: time zone Local: name the zone, such as Europe/Berlin", ErrBadSpec)
	}
	loc, err := time.LoadLocation(sp.TZ)
	if err != nil {
		return plan{}, fmt.Errorf("%w: unknown time zone %q", ErrBadSpec, sp.TZ)
	}
	// The zone is given to the parser as a prefix because a spec without
	// one would otherwise run in the process's local zone.
	sched, err := cronParser.Parse("CRON_TZ=" + loc.String() + " " + sp.Cron)
	if err != nil {
		return plan{}, fmt.Errorf("%w: cron %q: %v", ErrBadSpec, sp.Cron, err)
	}
	if sched.Next(time.Now()).IsZero() {
		return plan{}, fmt.Errorf("%w: cron %q never fires", ErrBadSpec, sp.Cron)
	}
	return plan{cron: sched}, nil
}

// String is how `scheduler list` shows the spec.
func (sp Spec) String() string {
	if sp.Cron == "" {
		return "every " + formatDuration(sp.Every)
	}
	if sp.TZ == "" {
		return "cron " + sp.Cron
	}
	return "cron " + sp.Cron + " (" + sp.TZ + ")"
}

// SpecOf returns the spec stored in row.
func SpecOf(row *store.Schedule) Spec {
	return Spec{Every: row.Every(), Cron: row.Cron, TZ: row.TZ}
}

func (sp Spec) applyTo(row *store.Schedule) {
	row.EverySeconds = int64(sp.Every / time.Second)
	row.Cron = sp.Cron
	row.TZ = sp.TZ
}

// plan computes a schedule's slots. Slots are whole UTC seconds.
//
// An interval schedule is a fixed-rate grid: the slot after slot S is
// S+every, so a run that is enqueued late does not shift the ones after it.
// A cron schedule's slots are the cron's times.
type plan struct {
	every time.Duration
	cron  cron.Schedule
}

// follow is the first slot after a run enqueued at last: what the spec
// itself says is next, whatever the row's next_run_at says.
func (p plan) follow(last time.Time) time.Time {
	last = last.UTC().Truncate(time.Second)
	if p.cron != nil {
		return p.cron.Next(last).UTC()
	}
	return last.Add(p.every)
}

// after is the slot that follows slot once it has run at now: the first one
// on slot's grid that is later than now. Slots missed meanwhile are not
// returned: they were covered by the run of slot.
func (p plan) after(slot, now time.Time) time.Time {
	if p.cron != nil {
		if now.Before(slot) {
			now = slot
		}
		return p.cron.Next(now).UTC()
	}
	next := slot.Add(p.every)
	if !next.After(now) {
		next = slot.Add((now.Sub(slot)/p.every + 1) * p.every)
	}
	return next.UTC()
}

// resume is the next slot of a schedule whose spec has just been set: the
// one that follows its last run, or for one that never ran, now for an
// interval (it runs at once) and the next cron time for a cron.
func (p plan) resume(last *time.Time, now time.Time) time.Time {
	if last != nil {
		return p.follow(*last)
	}
	if p.cron != nil {
		return p.cron.Next(now).UTC()
	}
	return now.UTC().Truncate(time.Second)
}

// due is the slot at which row runs next: its next_run_at, or earlier when
// its spec (changed by SQL, say) puts the slot after its last run earlier.
// It depends only on the row, never on the clock, so that every replica
// that reads the same row computes the same slot, hence the same task id.
func (p plan) due(row *store.Schedule) time.Time {
	due := row.NextRunAt.UTC()
	if row.LastRunAt != nil {
		if f := p.follow(*row.LastRunAt); !f.IsZero() && f.Before(due) {
			due = f
		}
	}
	return due
}

// formatDuration prints 10m rather than 10m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
