package tasks_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// connectScoped connects loc with a token GHL granted only scope, as a
// consent for an app configured with fewer scopes gives.
func (e *syncEnv) connectScoped(t *testing.T, loc, scope string) {
	t.Helper()
	e.Fake.AddLocation(loc, "comp1")
	access, refresh, _ := e.Fake.IssueScopedToken(loc, scope)
	if err := e.Store.Connect(context.Background(), store.Connection{LocationID: loc, CompanyID: "comp1",
		UserType: store.UserTypeLocation, Scopes: scope,
		Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: time.Now().Add(24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	e.Fake.AddCalendar(loc, "cal-"+loc, "Physio")
}

// Issue test 4: GHL answers a call of the sync with 401 "not authorized for
// this scope" (the location's token lacks calendars/events.write, while
// its contacts are written fine). No refresh token is spent, the location
// shows missing_scope naming the scope and how to fix it, the task is not
// retried, later syncs of the location do nothing, and another location
// goes on.
func TestSyncScope401MarksTheLocationAndSpendsNoRefresh(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, func(h *tasks.SyncHandlers, _ *storetest.Stack) { h.Concurrency = 1 }, "loc2")
	e.connectScoped(t, "loc1", "contacts.readonly contacts.write calendars.readonly calendars/events.readonly locations.readonly "+
		"locations/customFields.readonly locations/customFields.write")
	e.seed(t, "loc1", 20, 20)
	e.seed(t, "loc2", 20, 20)

	res, info := e.start(t, tasks.NewAppointmentsSyncTask, "loc1")
	if info.State != asynq.TaskStateArchived || info.Retried != 0 {
		t.Errorf("task %s after %d retries (%s), want archived at once", info.State, info.Retried, info.LastErr)
	}
	if res.Outcome != string(store.StatusMissingScope) || !strings.Contains(res.Message, "calendars/events.write") {
		t.Errorf("result %+v, want missing_scope naming calendars/events.write", res)
	}
	if n := e.Fake.TokenCalls("loc1"); n != 0 {
		t.Errorf("%d refresh calls for a scope 401, want 0", n)
	}
	if n := e.Fake.ScopeDenied("loc1"); n != 1 {
		t.Errorf("%d calls refused for the scope, want 1: the sync went on calling", n)
	}
	if n := e.Fake.Stats().ContactCreates["loc1"]; n == 0 {
		t.Error("no contact written before the refusal: the scope 401 did not come mid-sync")
	}
	_, c := e.StoredTokens(t, "loc1")
	if c.Status != store.StatusMissingScope || !strings.Contains(c.LastError, "calendars/events.write") ||
		!strings.Contains(c.LastError, store.ConnectPath) {
		t.Errorf("credential: status %s, last error %q", c.Status, c.LastError)
	}
	if p := c.Status.Problem(); !strings.Contains(p, "scope") || !strings.Contains(p, store.ConnectPath) {
		t.Errorf("missing_scope's remedy %q", p)
	}

	before := e.calls("loc1")
	res, info = e.start(t, tasks.NewPatientsSyncTask, "loc1")
	if info.State != asynq.TaskStateArchived || res.Outcome != string(store.StatusMissingScope) || e.calls("loc1") != before {
		t.Errorf("a later sync of the location: %s, %+v, %d calls", info.State, res, e.calls("loc1")-before)
	}
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc2"); res.Created != 20 || res.FailedCount != 0 {
		t.Errorf("the other location: %+v", res)
	}
	if n := e.Fake.TokenCalls("loc1"); n != 0 {
		t.Errorf("%d refresh calls in the end, want 0", n)
	}
}

// Issue test 5: the token expires mid-sync and GHL's refresh answer has no
// expires_in and side fields of odd types: the refresh succeeds (its
// rotated token is stored, good for the SDK's 24 h), the sync completes,
// and nothing is reconnected.
func TestSyncRefreshSurvivesOddTokenAnswers(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{TokenAnswer: ghltest.TokenAnswer{NoExpiresIn: true, OddSideFields: true}},
		func(h *tasks.SyncHandlers, s *storetest.Stack) {
			h.Limiter = &hookLimiter{RateLimiter: h.Limiter, onWait: func(n int64) {
				if n == 25 {
					s.Fake.ExpireAccessTokens("loc1")
				}
			}}
		}, "loc1")
	e.seed(t, "loc1", 60, 0)
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.Created != 60 || res.FailedCount != 0 {
		t.Errorf("result %+v", res)
	}
	if n := e.Fake.Rotations("loc1"); n != 1 {
		t.Errorf("%d rotations, want 1", n)
	}
	if !e.HoldsCurrent(t, "loc1") {
		t.Fatal("the rotated token was not stored")
	}
	_, c := e.StoredTokens(t, "loc1")
	if until := time.Until(c.ExpiresAt); until < 23*time.Hour || until > 25*time.Hour {
		t.Errorf("stored expiry in %s, want about 24h when GHL gives no expires_in", until)
	}
	if n := e.Fake.Stats().CodeExchanges["loc1"]; n != 0 || c.Status != store.StatusActive {
		t.Errorf("%d code exchanges, status %s: the location was reconnected or lost", n, c.Status)
	}
}

// fakeNow is a clock for the fake GHL that a test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeNow) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// GHL's daily quota runs out mid-sync: the location is paused, its task is
// put back (never failed) and asks again after the pause, and once GHL's
// day has ended (at the fake's reset time, not UTC midnight) the sync
// completes. Nothing was sent over the quota but the probes.
func TestSyncDailyQuotaPausesWithoutFailing(t *testing.T) {
	t.Parallel()
	const daily = 30
	clk := &fakeNow{}
	opts := ghltest.Options{EnforceRateLimit: true, RateLimit: 1000, DailyLimit: daily, DailyReset: 7*time.Hour + 30*time.Minute, Now: clk.Now}
	probe := ghltest.New(opts)
	// An hour before the fake's day ends.
	clk.Set(probe.DailyWindowEnd(time.Now()).Add(-time.Hour))
	e := setupSync(t, opts, func(h *tasks.SyncHandlers, _ *storetest.Stack) {
		h.Limiter = &ratelimit.Limiter{Redis: h.Limiter.(*ratelimit.Limiter).Redis, Interval: time.Second,
			DailyProbe: 1500 * time.Millisecond, MaxWait: 100 * time.Millisecond}
		h.Concurrency = 1
	}, "loc1")
	e.seed(t, "loc1", 50, 0)
	task, err := tasks.NewPatientsSyncTask("loc1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the task to be put back for the daily quota", func() bool {
		ti, err := e.insp.GetTaskInfo(tasks.QueueDefault, info.ID)
		return err == nil && ti.State == asynq.TaskStateRetry && strings.Contains(ti.LastErr, "daily quota")
	})
	// Two of the day's calls go to the patient id field: the location's
	// custom fields listed, the field created.
	if got := e.Fake.Stats().ContactCreates["loc1"]; got != daily-2 {
		t.Errorf("%d contacts created on the day's quota of %d, want %d", got, daily, daily-2)
	}
	clk.Set(e.Fake.DailyWindowEnd(clk.Now()).Add(time.Minute))
	res, ti := pass(t, e.insp, info.ID)
	if ti.State != asynq.TaskStateCompleted || ti.Retried != 0 {
		t.Errorf("task %s after %d counted failures (%s), want completed with none", ti.State, ti.Retried, ti.LastErr)
	}
	if res.Outcome != syncer.OutcomeCompleted || res.Created+res.Unchanged != 50 || res.FailedCount != 0 {
		t.Errorf("result %+v", res)
	}
	e.checkContacts(t, "loc1", 50)
	if n := e.Fake.RateLimited("loc1"); n > 5 {
		t.Errorf("%d calls refused over the daily quota: more than the probes", n)
	}
}
