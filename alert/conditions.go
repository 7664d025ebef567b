package alert

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// Facts are what the conditions are computed from, read from the
// database at one moment. The health metrics report the same facts, so
// that the Prometheus rules in deploy/ test what Evaluate tests.
type Facts struct {
	Credentials []store.Credential
	Syncs       []SyncFacts
	Schedules   []ScheduleFacts
}

// SyncFacts is one location's latest runs of one kind of sync.
type SyncFacts struct {
	Location, Kind string
	// Failures counts the latest runs in a row that failed (outcome
	// syncer.OutcomeError), up to the maximum ReadFacts was given.
	Failures int
	// LastError is the latest run's error.
	LastError string
}

// ScheduleFacts is one enabled schedule whose interval is known.
type ScheduleFacts struct {
	Name, TaskType string
	// SinceRun is the time since the schedule last ran or was changed,
	// whichever is later: a schedule just enabled again is not late.
	SinceRun time.Duration
	// Interval is its interval; for a cron, the time from its last run
	// (or change) to its next slot.
	Interval time.Duration
}

// Late reports whether the schedule has not run for twice its interval,
// and for at least MinScheduleLate.
func (s ScheduleFacts) Late() bool { return s.SinceRun > max(2*s.Interval, MinScheduleLate) }

// ReadFacts reads the facts at now, counting failed sync runs in a row up
// to maxFailures.
func ReadFacts(ctx context.Context, st *store.Store, maxFailures int, now time.Time) (*Facts, error) {
	creds, err := st.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	f := &Facts{Credentials: creds}
	for _, c := range creds {
		if c.UserType == store.UserTypeCompany {
			continue // an agency has no syncs of its own
		}
		for _, kind := range syncer.Kinds {
			runs, err := st.FinishedSyncRuns(ctx, c.LocationID, kind, maxFailures)
			if err != nil {
				return nil, err
			}
			if len(runs) == 0 {
				continue
			}
			sf := SyncFacts{Location: c.LocationID, Kind: kind, LastError: runs[0].Error}
			for _, r := range runs {
				if r.Outcome != syncer.OutcomeError {
					break
				}
				sf.Failures++
			}
			f.Syncs = append(f.Syncs, sf)
		}
	}
	schedules, err := st.EnabledSchedules(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range schedules {
		if sf, ok := ScheduleFactsOf(s, now); ok {
			f.Schedules = append(f.Schedules, sf)
		}
	}
	return f, nil
}

// ScheduleFactsOf computes a schedule's facts at now; false when its
// interval is unknown (a cron schedule inserted by SQL that no scheduler
// has seen).
func ScheduleFactsOf(s store.Schedule, now time.Time) (ScheduleFacts, bool) {
	ref := s.ChangedAt
	if s.LastRunAt != nil && s.LastRunAt.After(ref) {
		ref = *s.LastRunAt
	}
	interval := s.Every()
	if interval <= 0 && s.NextRunAt != nil {
		interval = s.NextRunAt.Sub(ref)
	}
	if interval <= 0 {
		return ScheduleFacts{}, false
	}
	return ScheduleFacts{Name: s.Name, TaskType: s.TaskType, SinceRun: now.Sub(ref), Interval: interval}, true
}

// Conditions returns the conditions that hold in f at now.
func (e *Evaluator) Conditions(f *Facts, now time.Time) []Condition {
	var out []Condition
	within := e.expiresWithin()
	for _, c := range f.Credentials {
		what := "Location"
		if c.UserType == store.UserTypeCompany {
			what = "Agency"
		}
		if problem := c.Status.Problem(); problem != "" {
			detail := problem
			if c.LastError != "" && c.LastError != problem {
				detail += " (last error: " + c.LastError + ")"
			}
			out = append(out, Condition{
				Kind: KindLocationProblem, Subject: c.LocationID + "/" + string(c.Status),
				Labels:  map[string]string{"location_id": c.LocationID, "status": string(c.Status)},
				Summary: fmt.Sprintf("%s %s is %s", what, c.LocationID, c.Status),
				Detail:  detail,
			})
			continue
		}
		// A token GHL issued for less than twice the threshold (the
		// sandbox's live an hour) would alert as soon as it is issued: for
		// it, half its lifetime is the threshold.
		threshold := within
		if c.RefreshedAt != nil {
			if life := c.ExpiresAt.Sub(*c.RefreshedAt); life > 0 {
				threshold = min(threshold, life/2)
			}
		}
		if left := c.ExpiresAt.Sub(now); left < threshold {
			when := "expires in " + human(left)
			if left <= 0 {
				when = "expired " + human(-left) + " ago"
			}
			detail := "the token-refresh schedule refreshes a token within REFRESH_WINDOW of its expiry: check that a worker runs, and why its refreshes fail (reason= in the worker's log, ghlsync_token_refresh_failures_total)"
			if c.LastError != "" {
				detail += "; last error: " + c.LastError
			}
			out = append(out, Condition{
				Kind: KindTokenExpiring, Subject: c.LocationID,
				Labels:  map[string]string{"location_id": c.LocationID},
				Summary: fmt.Sprintf("%s %s: its token %s and no refresh renewed it", what, c.LocationID, when),
				Detail:  detail,
			})
		}
	}
	n := e.syncFailures()
	for _, s := range f.Syncs {
		if s.Failures < n {
			continue
		}
		detail := "the sync is retried on its schedule; see the location's runs on the status page"
		if s.LastError != "" {
			detail = "last error: " + s.LastError
		}
		out = append(out, Condition{
			Kind: KindSyncFailing, Subject: s.Location + "/" + s.Kind,
			Labels:  map[string]string{"location_id": s.Location, "sync_kind": s.Kind},
			Summary: fmt.Sprintf("Location %s: the %s sync failed %d runs in a row", s.Location, s.Kind, s.Failures),
			Detail:  detail,
		})
	}
	for _, s := range f.Schedules {
		if !s.Late() {
			continue
		}
		out = append(out, Condition{
			Kind: KindScheduleLate, Subject: s.Name,
			Labels:  map[string]string{"schedule": s.Name, "task": s.TaskType},
			Summary: fmt.Sprintf("Schedule %s has not run for %s (interval %s)", s.Name, human(s.SinceRun), human(s.Interval)),
			Detail:  "no scheduler enqueues it: check that a `scheduler` process runs and reaches the database and Redis (`scheduler list` shows the last run)",
		})
	}
	return out
}

// ReadHealth reads the facts as the health metrics report them: failed
// runs in a row counted up to config.MaxAlertSyncFailures, the largest
// threshold an operator may set, and the firing alerts of every kind (0
// included).
func ReadHealth(ctx context.Context, st *store.Store, clk clock.Clock) (*metrics.Health, error) {
	f, err := ReadFacts(ctx, st, config.MaxAlertSyncFailures, clock.Or(clk).Now())
	if err != nil {
		return nil, err
	}
	firing, err := st.FiringAlerts(ctx)
	if err != nil {
		return nil, err
	}
	h := &metrics.Health{Firing: make(map[string]int, len(Kinds))}
	for _, s := range f.Syncs {
		h.SyncFailures = append(h.SyncFailures, metrics.SyncFailures{Location: s.Location, Kind: s.Kind, Failures: s.Failures})
	}
	for _, s := range f.Schedules {
		h.Schedules = append(h.Schedules, metrics.ScheduleRun{Name: s.Name, SinceRun: s.SinceRun, Interval: s.Interval})
	}
	for _, k := range Kinds {
		h.Firing[k] = firing[k]
	}
	return h, nil
}

// human prints a duration to the minute (to the second below one), as
// 1h5m or 30m rather than 1h5m0s.
func human(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	s := d.Round(time.Minute).String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
