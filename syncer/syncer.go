// Package syncer is the sync engine: it pushes the clinic's source tables
// (patients, appointments) into GHL, one location at a time. It knows
// nothing of the queue; package tasks runs it as asynq tasks.
//
// A run of a location:
//
//   - takes the location's lock (Locks), so one sync of a location runs at
//     a time across every worker;
//   - walks the source table in external id order, a page at a time, and
//     compares each record's content hash with the one GHL last accepted:
//     unchanged records cost no GHL call (run.go);
//   - pushes at most BatchSize records (or works for Budget), then hands the
//     rest of the table to Request.Continue, which starts after the last
//     record the run covered;
//   - makes every GHL call through the location's shared rate limiter with
//     a token from the location's refresh.Source, so a 401 refreshes the
//     token once through the single-flight refresher.
//
// Idempotence rests on the state table recording GHL's id as soon as GHL
// names it, and on what is recorded before a create whose answer may be
// lost: see patients.go and appointments.go for each kind's protocol.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// Kinds of sync, as results, run logs and metrics name them.
const (
	KindPatients     = "patients"
	KindAppointments = "appointments"
)

// Kinds lists every kind of sync.
var Kinds = []string{KindPatients, KindAppointments}

// Credentials reads the connected locations and records a location's
// status when a sync finds it cannot go on (missing_scope); *store.Store is
// one.
type Credentials interface {
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
	// SetRefreshStatus records a status only while the location still
	// holds the token of version held (store.ErrStale otherwise).
	SetRefreshStatus(ctx context.Context, loc string, held int64, st store.Status, lastError string) error
}

// State reads the source tables and keeps ghlsync's sync state;
// *store.Store is one. It must be safe for concurrent use.
type State interface {
	// PatientPageSince and AppointmentPageSince read a page of the rows
	// changed at or after since and of the records whose last sync failed
	// (incremental.go), of every row when since is nil.
	PatientPageSince(ctx context.Context, loc, after string, since *time.Time, limit int) ([]store.PatientRow, error)
	PatientByExternalID(ctx context.Context, loc, externalID string) (*store.PatientRow, error)
	AppointmentPageSince(ctx context.Context, loc, after string, since *time.Time, limit int) ([]store.AppointmentRow, error)
	SavePatientSync(ctx context.Context, st *store.PatientSync) error
	SaveAppointmentSync(ctx context.Context, st *store.AppointmentSync) error
	EventHolders(ctx context.Context, loc string, eventIDs []string) (map[string]string, error)
	// ContactHolders lists the patients of loc but except that hold the
	// GHL contact contactID and are still in the patients table.
	ContactHolders(ctx context.Context, loc, contactID, except string) ([]string, error)
	StartSyncRun(ctx context.Context, r *store.SyncRun) error
	FinishSyncRun(ctx context.Context, r *store.SyncRun) error
	// Settings returns the location's settings (its phone region, notify).
	Settings(ctx context.Context, loc string) (store.LocationSettings, error)
	SetLocationInfo(ctx context.Context, loc, name, timezone string) error
	// Deletions (deletions.go).
	DeletedPatients(ctx context.Context, loc string, limit int) ([]store.Deletion, error)
	DeletedAppointments(ctx context.Context, loc string, limit int) ([]store.Deletion, error)
	DeletedPatientsSince(ctx context.Context, loc string, since time.Time, limit int) ([]store.Deletion, error)
	DeletedAppointmentsSince(ctx context.Context, loc string, since time.Time, limit int) ([]store.Deletion, error)
	// Incremental passes (incremental.go).
	DatabaseNow(ctx context.Context) (time.Time, error)
	Watermark(ctx context.Context, loc, kind string) (time.Time, bool, error)
	AdvanceWatermark(ctx context.Context, loc, kind string, t time.Time) error
	SyncedCounts(ctx context.Context, loc string) (patients, appointments int, err error)
	ForgetPatientSync(ctx context.Context, loc, externalID string) error
	ForgetAppointmentSync(ctx context.Context, loc, externalID string) error
}

// Contacts is the part of GHL's contacts API a sync uses;
// *ghl.ContactsService is one.
type Contacts interface {
	Upsert(ctx context.Context, accessToken string, c *ghl.Contact) (*ghl.Contact, bool, *ghl.Response, error)
	Create(ctx context.Context, accessToken string, c *ghl.Contact) (*ghl.Contact, *ghl.Response, error)
	Update(ctx context.Context, accessToken, contactID string, c *ghl.Contact) (*ghl.Contact, *ghl.Response, error)
	Search(ctx context.Context, accessToken, locationID string, filters ...ghl.SearchFilter) ([]ghl.Contact, *ghl.Response, error)
	CustomFields(ctx context.Context, accessToken, locationID string) ([]ghl.FieldDef, *ghl.Response, error)
	CreateCustomField(ctx context.Context, accessToken, locationID, name, dataType string) (*ghl.FieldDef, *ghl.Response, error)
	Appointments(ctx context.Context, accessToken, contactID string) ([]ghl.Event, *ghl.Response, error)
	AddTags(ctx context.Context, accessToken, contactID string, tags []string) ([]string, *ghl.Response, error)
	RemoveTags(ctx context.Context, accessToken, contactID string, tags []string) ([]string, *ghl.Response, error)
	SetDND(ctx context.Context, accessToken, contactID string, on bool) (*ghl.Response, error)
	Delete(ctx context.Context, accessToken, contactID string) (*ghl.Response, error)
}

// Calendars is the part of GHL's calendars API a sync uses;
// *ghl.CalendarsService is one.
type Calendars interface {
	CreateAppointment(ctx context.Context, accessToken string, a *ghl.Appointment) (*ghl.Appointment, *ghl.Response, error)
	UpdateAppointment(ctx context.Context, accessToken, eventID string, a *ghl.Appointment) (*ghl.Appointment, *ghl.Response, error)
	GetAppointment(ctx context.Context, accessToken, eventID string) (*ghl.Appointment, *ghl.Response, error)
	DeleteEvent(ctx context.Context, accessToken, eventID string) (*ghl.Response, error)
	Get(ctx context.Context, accessToken, calendarID string) (*ghl.Calendar, *ghl.Response, error)
	Events(ctx context.Context, accessToken string, q ghl.EventsQuery) ([]ghl.Event, *ghl.Response, error)
	Notes(ctx context.Context, accessToken, appointmentID string, limit, offset int) ([]ghl.Note, bool, *ghl.Response, error)
	CreateNote(ctx context.Context, accessToken, appointmentID, body string) (*ghl.Note, *ghl.Response, error)
	UpdateNote(ctx context.Context, accessToken, appointmentID, noteID, body string) (*ghl.Note, *ghl.Response, error)
	DeleteNote(ctx context.Context, accessToken, appointmentID, noteID string) (*ghl.Response, error)
}

// Users lists a location's GHL users, whom appointments are assigned to;
// *ghl.UsersService is one.
type Users interface {
	List(ctx context.Context, accessToken, locationID string) ([]ghl.User, *ghl.Response, error)
}

// Locations reads a GHL location's name and time zone;
// *ghl.LocationsService is one.
type Locations interface {
	Get(ctx context.Context, accessToken, id string) (*ghl.Location, *ghl.Response, error)
}

// RateLimiter holds every GHL call of a location to GHL's limit, across
// all workers; *ratelimit.Limiter is one.
type RateLimiter interface {
	Wait(ctx context.Context, loc string) (ratelimit.Grant, error)
	Observe(ctx context.Context, loc string, g ratelimit.Grant, rate ratelimit.Rate) error
	Pause(ctx context.Context, loc string, d time.Duration) (time.Duration, error)
}

// Engine runs syncs. The zero values of the tuning fields are the
// defaults. It is safe for concurrent use.
type Engine struct {
	Credentials Credentials
	State       State
	// Refresher renews a location's token that GHL rejected, single flight.
	Refresher refresh.Renewer
	Contacts  Contacts
	Calendars Calendars
	Users     Users
	Locations Locations
	Limiter   RateLimiter
	Locks     *Locks
	// Observe, when set, counts records by kind ("patient",
	// "appointment") and outcome ("created", "updated", "unchanged",
	// "failed"), for metrics.
	Observe func(kind, outcome string, n int)
	// ObserveRun, when set, counts ended runs by kind (KindPatients,
	// KindAppointments) and outcome (an Outcome constant), for metrics.
	ObserveRun func(kind, outcome string)
	// ShuttingDown, when set, is closed when the process begins to shut
	// down. A run then takes no new record, lets the calls in flight
	// finish and hands the rest of its pass to a follow-up, as when its
	// Budget runs out, so a worker leaves within seconds and nothing waits
	// for a task lease to expire.
	ShuttingDown <-chan struct{}
	Log          *slog.Logger
	Clock        clock.Clock

	// BatchSize is the most records a run sends to GHL; 500.
	BatchSize int
	// PageSize is the number of rows read per query; 1000.
	PageSize int
	// Concurrency is the number of records a run sends at once; 8. The
	// limiter, not this, sets the pace; it only has to cover GHL's latency.
	Concurrency int
	// Budget is how long a run sends records before it hands over to a
	// follow-up; 3m.
	Budget time.Duration
	// Overlap is how far before its watermark an incremental pass starts
	// to read, so that a row whose transaction committed after the last
	// pass read, with an updated_at before that, is not missed; 10m.
	Overlap time.Duration
	// HandBackAfter: a record whose call the location's limiter would hold
	// for longer than this (its window is spent) is not waited for in the
	// worker's slot: the run lets its calls in flight finish and hands the
	// rest of its pass to a follow-up that runs when the limiter expects
	// to grant again (Request.Continue's delay), so that the slot serves
	// another location meanwhile. The follow-up is due half of this before
	// that grant and waits the rest in its slot: asynq rounds a task's due
	// time down to the second, and the follow-up's start (its lock, its
	// first page) is not to delay the location's next call. 3s. Negative:
	// a run waits out its limit.
	HandBackAfter time.Duration
	// SearchSettle is how long after a contact create whose answer was
	// lost the sync waits before it searches for the contact: GHL's search
	// index shows a write seconds after it; 10s.
	SearchSettle time.Duration
}

// Validate reports a required field that is not set. Call it at start.
func (e *Engine) Validate() error {
	for name, missing := range map[string]bool{"Credentials": e.Credentials == nil, "State": e.State == nil,
		"Refresher": e.Refresher == nil, "Contacts": e.Contacts == nil, "Calendars": e.Calendars == nil,
		"Users": e.Users == nil, "Locations": e.Locations == nil,
		"Limiter": e.Limiter == nil, "Locks": e.Locks == nil || e.Locks.Redis == nil} {
		if missing {
			return fmt.Errorf("syncer.Engine: %s is required", name)
		}
	}
	return nil
}

func (e *Engine) now() time.Time { return clock.Or(e.Clock).Now() }

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Outcomes of a sync run.
const (
	// OutcomeCompleted: the run reached the end of the table.
	OutcomeCompleted = "completed"
	// OutcomeContinued: a follow-up (Result.ContinuedBy) takes the rest.
	OutcomeContinued = "continued"
	// OutcomeNeedsReauth: GHL refused the location's refresh token for
	// good; the sync stopped and is not retried.
	OutcomeNeedsReauth = "needs_reauth"
	// OutcomeInactive: GHL says the location is not active; the sync
	// stopped and is not retried.
	OutcomeInactive = "inactive"
	// OutcomeRateLimited: GHL answered 429 anyway; the run is to be tried
	// again after the interval GHL gave, not counted as a failure.
	OutcomeRateLimited = "rate_limited"
	// OutcomeError: the run stopped on an error and is retried.
	OutcomeError = "error"
	// OutcomeDeletionCapped: the pass found more deletions than the
	// location's cap allows and stopped before changing anything in GHL;
	// not retried (deletions.go).
	OutcomeDeletionCapped = "deletion_capped"
)

// ErrFinal marks an error that retrying cannot cure (the location needs
// reconnecting, is not active, uninstalled, unknown or not a location).
// Match it with errors.Is.
var ErrFinal = errors.New("not retried")

// Result is the result of a location's sync run. It covers the pass so
// far: a pass that needs several runs (batches) hands its result on to
// each follow-up, so the last run's result is the whole pass's.
type Result struct {
	Kind     string `json:"kind"`
	Location string `json:"location"`
	Outcome  string `json:"outcome"`
	// Batch is the number of runs of the pass so far.
	Batch int `json:"batch"`
	// Scanned records, of which Created, Updated and Unchanged, and the
	// failed ones, listed (up to MaxFailedListed) with why.
	Scanned   int            `json:"scanned"`
	Created   int            `json:"created"`
	Updated   int            `json:"updated"`
	Unchanged int            `json:"unchanged"`
	Failed    []FailedRecord `json:"failed"`
	// FailedCount counts every failed record, listed or not.
	FailedCount int `json:"failed_count"`
	// Deleted counts the records deleted in the clinic that the pass acted
	// on in GHL (deletions.go).
	Deleted int `json:"deleted"`
	// ContactsCreated counts the contacts an appointment sync created for
	// patients that had none yet.
	ContactsCreated int `json:"contacts_created,omitempty"`
	// Cursor is the external id of the last record the pass covered.
	Cursor      string `json:"cursor,omitempty"`
	ContinuedBy string `json:"continued_by,omitempty"`
	// StartedAt is when the pass's first run started; Duration runs
	// from then to the end of this run.
	StartedAt time.Time `json:"started_at"`
	Duration  string    `json:"duration"`
	Message   string    `json:"message,omitempty"`
	// DryRun: the counts are what a sync would do; nothing was sent.
	DryRun bool `json:"dry_run,omitempty"`
	// Read is what the pass reads (incremental.go): ReadFull, every row
	// (which also finds rows gone from the table), or ReadChanged, the rows
	// changed at or after Since. ReadAt is the database's clock when the
	// pass started to read, the watermark a completed incremental or full
	// pass leaves.
	Read   string     `json:"read"`
	Since  *time.Time `json:"since,omitempty"`
	ReadAt *time.Time `json:"read_at,omitempty"`
	// Unanswered counts the records GHL did not answer for, which the
	// next pass tries again: a pass with any leaves the watermark where it
	// was, so that it reads them again.
	Unanswered int `json:"unanswered,omitempty"`
	// CustomFields are the ids, by key, of the location's contact custom
	// fields the pass's runs used: a continued run hands them to its
	// follow-up, which then need not list the location's fields again (a
	// GHL call of the location's quota per run, about one per 10 s window
	// at GHL's limit). Only the pass handed to Request.Continue holds
	// them, not a run's own result.
	CustomFields map[string]string `json:"custom_fields,omitempty"`
}

// add counts a run's tally into the pass's result.
func (res *Result) add(n tally) {
	res.Scanned += n.scanned
	res.Created += n.created
	res.Updated += n.updated
	res.Unchanged += n.unchanged
	res.ContactsCreated += n.contactsCreated
	res.Deleted += n.deleted
	res.FailedCount += n.failedCount
	res.Unanswered += n.unanswered
	for _, f := range n.failed {
		if len(res.Failed) < MaxFailedListed {
			res.Failed = append(res.Failed, f)
		}
	}
}

// FailedRecord is a record a sync could not push, and why.
type FailedRecord struct {
	ExternalID string `json:"external_id"`
	Reason     string `json:"reason"`
}

// MaxFailedListed bounds the failed list of a result (a task's result is
// stored in Redis); FailedCount still counts them all.
const MaxFailedListed = 100

// Request asks for one run of a location's sync.
type Request struct {
	Kind     string // KindPatients or KindAppointments
	Location string
	// After continues a pass: only records whose external id sorts after
	// it are looked at.
	After string
	// Batch numbers the runs of a pass, from 1.
	Batch int
	// Pass is the result of the pass's earlier runs, carried on.
	Pass *Result
	// RunID names the run in the run log (the task id).
	RunID string
	// Force sends every record whatever its hash, as if it had changed (a
	// repair: a contact deleted in GHL is created again).
	Force bool
	// DryRun decides as a run does and counts what it would create,
	// update, delete and refuse, with no GHL call and no write: the whole
	// pass in one run, logged nowhere but in the result. GHL's own
	// refusals and a record GHL lost (updated in the count, created for
	// real) show only in a real run.
	DryRun bool
	// Full reads every row of the table, whatever the watermark, and
	// compares the sync state with it to find the rows gone from it: the
	// nightly full pass. Force implies it.
	Full bool
	// Since, when set, reads only the rows changed at or after it (enqueue
	// --since), and leaves the watermark alone.
	Since *time.Time
	// Continue hands the rest of the pass to a follow-up run that starts
	// after pass.Cursor with pass as its Pass, not before in from now (0:
	// at once; a run that handed back to the rate limiter, see
	// Engine.HandBackAfter), and returns the follow-up's id. It is called
	// only when the run stopped short of the table's end, before the run is
	// recorded as ended.
	Continue func(ctx context.Context, pass Result, in time.Duration) (string, error)
}

// kind is what differs between the two syncs.
type kind struct {
	name   string // KindPatients, KindAppointments
	record string // metric label: "patient", "appointment"
	// pages returns the function that reads the next page of the run's
	// table as items.
	pages func(r *run) pageFunc
}

var (
	patientsKind     = kind{KindPatients, "patient", patientPages}
	appointmentsKind = kind{KindAppointments, "appointment", appointmentPages}
)

func kindOf(name string) (kind, bool) {
	switch name {
	case KindPatients:
		return patientsKind, true
	case KindAppointments:
		return appointmentsKind, true
	}
	return kind{}, false
}

// NotSyncable says why a credential's location is not synced, "" when it
// is.
func NotSyncable(c *store.Credential) string {
	if c.UserType == store.UserTypeCompany {
		return "agency (Company) token: only locations are synced"
	}
	if p := c.Status.Problem(); p != "" {
		return string(c.Status) + ": " + p
	}
	return ""
}

// statusError: the location's status forbids syncing it.
type statusError struct {
	status store.Status
	reason string
}

func (e *statusError) Error() string { return e.reason }

// checkSyncable returns a *statusError when c's location is not synced.
func checkSyncable(c *store.Credential) error {
	if reason := NotSyncable(c); reason != "" {
		return &statusError{status: c.Status, reason: reason}
	}
	return nil
}

// Run runs one batch of a location's sync. The Result is meaningful also
// with an error; an error that wraps ErrFinal is not worth retrying, and
// one that wraps a *ghl.RateLimitError asks to wait what GHL said.
func (e *Engine) Run(ctx context.Context, req Request) (res Result, err error) {
	k, ok := kindOf(req.Kind)
	if !ok {
		return Result{}, fmt.Errorf("syncer: unknown kind %q: %w", req.Kind, ErrFinal)
	}
	logged := false
	defer func() {
		if logged {
			return
		}
		// The run ended before it could walk the table (the location
		// cannot be synced, the database, the lock): say so, as the end
		// of a walk is said.
		outcome := res.Outcome
		if outcome == "" {
			outcome = OutcomeError
		}
		if err != nil {
			e.log().Warn("sync run failed", "kind", k.name, "location", req.Location, "batch", max(req.Batch, 1),
				"outcome", outcome, "reason", err.Error())
		}
		e.observeRun(k.name, outcome)
	}()
	loc := req.Location
	res = Result{Kind: k.name, Location: loc, StartedAt: e.now().UTC()}
	if req.Pass != nil {
		res = *req.Pass
	}
	res.Batch, res.Cursor, res.ContinuedBy = max(req.Batch, 1), req.After, ""
	carried := res.CustomFields
	res.CustomFields = nil
	res.Failed = append([]FailedRecord{}, res.Failed...)
	finish := func(outcome, msg string) Result {
		res.Outcome, res.Message = outcome, msg
		res.Duration = e.now().Sub(res.StartedAt).Round(time.Millisecond).String()
		return res
	}

	// Checked before waiting for the lock: a location that cannot be
	// synced should not queue behind one that is.
	c, err := e.Credentials.Credential(ctx, loc)
	if errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("%w: %w", refresh.ErrUnknownLocation, ErrFinal)
	}
	if err != nil {
		return res, err
	}
	if err := checkSyncable(c); err != nil {
		outcome, msg, err := stopOutcome(err)
		return finish(outcome, msg), err
	}

	lk, err := e.Locks.Acquire(ctx, loc)
	if err != nil {
		return res, err
	}
	defer func() {
		if err := lk.Release(ctx, nil); err != nil {
			e.log().Warn("releasing the sync lock", "location", loc, "err", err)
		}
	}()
	runCtx := lk.Context()

	runLog := &store.SyncRun{Kind: k.name, LocationID: loc, TaskID: req.RunID, After: req.After, StartedAt: e.now().UTC()}
	// A dry run is kept out of the run log, which the recovery sweep
	// reads to enqueue a pass's lost runs again, as real ones.
	if !req.DryRun {
		if err := e.State.StartSyncRun(ctx, runLog); err != nil {
			return res, err
		}
	}
	res.DryRun = req.DryRun
	r := newRun(e, k, loc)
	r.force, r.dryRun = req.Force, req.DryRun
	r.setup.seed(carried)
	if req.Pass == nil {
		if err := e.planRead(runCtx, req, &res); err != nil {
			r.stop(err)
		}
	}
	r.since = res.Since
	cursor, done := req.After, false
	if req.After == "" && !r.stopping() {
		// The pass's first run: act on what the clinic deleted first, so
		// that a capped pass changes nothing in GHL.
		r.deletions(runCtx)
	}
	if !r.stopping() {
		cursor, done = r.walk(runCtx, req.After, k.pages(r))
	}
	n := r.tally()
	res.add(n)
	res.Cursor = cursor
	stopErr := r.stopCause()
	if stopErr != nil && runCtx.Err() != nil && ctx.Err() == nil {
		stopErr = context.Cause(runCtx) // the lock was lost
	}
	if ghl.IsScopeDenied(stopErr) {
		r.missingScope(ctx, stopErr)
	}

	outcome, msg, retErr := OutcomeCompleted, "", error(nil)
	switch {
	case stopErr == nil && done:
		e.advanceWatermark(ctx, req, res)
	case stopErr == nil:
		outcome = OutcomeContinued
		pass := res
		pass.Outcome, pass.CustomFields = OutcomeContinued, r.handOver()
		in := r.resumeIn()
		if in > 0 {
			msg = fmt.Sprintf("the location's rate limit is spent for now; the follow-up runs in %s", in.Round(time.Millisecond))
		}
		if res.ContinuedBy, retErr = req.Continue(context.WithoutCancel(ctx), pass, in); retErr != nil {
			// The batch is done and recorded; its retry finds it unchanged
			// and hands over again.
			outcome, msg = OutcomeError, "could not enqueue the follow-up: "+retErr.Error()
		}
	default:
		outcome, msg, retErr = stopOutcome(stopErr)
	}

	runLog.Cursor, runLog.Outcome, runLog.ContinuedBy, runLog.Error = cursor, outcome, res.ContinuedBy, msg
	runLog.Scanned, runLog.Created, runLog.Updated, runLog.Unchanged, runLog.Failed = n.scanned, n.created, n.updated, n.unchanged, n.failedCount
	runLog.Deleted = n.deleted
	if !req.DryRun {
		if err := e.State.FinishSyncRun(context.WithoutCancel(ctx), runLog); err != nil {
			e.log().Warn("could not record the end of a sync run", "location", loc, "kind", k.name, "err", err)
		}
	}
	res = finish(outcome, msg)
	attrs := []any{"kind", k.name, "location", loc, "batch", res.Batch, "outcome", outcome,
		"scanned", n.scanned, "created", n.created, "updated", n.updated, "unchanged", n.unchanged,
		"failed", n.failedCount, "deleted", n.deleted, "pass_duration", res.Duration, "continued_by", res.ContinuedBy}
	switch outcome {
	case OutcomeCompleted, OutcomeContinued:
		e.log().Info("sync run ended", attrs...)
	case OutcomeError:
		e.log().Error("sync run failed", append(attrs, "reason", msg)...)
	default:
		e.log().Warn("sync run stopped", append(attrs, "reason", msg)...)
	}
	logged = true
	e.observeRun(k.name, outcome)
	return res, retErr
}

func (e *Engine) observeRun(kind, outcome string) {
	if e.ObserveRun != nil {
		e.ObserveRun(kind, outcome)
	}
}

// stopOutcome turns the error that stopped a run into the run's outcome,
// message and the error Run returns.
func stopOutcome(err error) (string, string, error) {
	var se *statusError
	var ce *deletionCapError
	switch {
	case errors.As(err, &ce):
		return OutcomeDeletionCapped, ce.Error(), fmt.Errorf("%s: %w", ce.Error(), ErrFinal)
	case errors.As(err, &se):
		// A company token is not a location: an error, not a state.
		outcome := string(se.status)
		if se.status == store.StatusActive {
			outcome = OutcomeError
		}
		return outcome, se.reason, fmt.Errorf("%s: %w", se.reason, ErrFinal)
	case ghl.IsRateLimited(err):
		return OutcomeRateLimited, fmt.Sprintf("GHL answered 429; the task runs again in %s", ghl.RetryAfter(err)), err
	case errors.As(err, new(*ratelimit.PausedError)):
		return OutcomeRateLimited, pausedMessage(err), err
	case ghl.IsScopeDenied(err):
		msg := missingScopeMessage(err)
		return string(store.StatusMissingScope), msg, fmt.Errorf("%s: %w", msg, ErrFinal)
	case errors.Is(err, refresh.ErrNeedsReauth):
		msg := "GHL refused the location's refresh token for good; connect it again at " + store.ConnectPath
		return OutcomeNeedsReauth, msg, fmt.Errorf("%s: %w", msg, ErrFinal)
	case errors.Is(err, refresh.ErrInactive), errors.Is(err, ghl.ErrLocationInactive):
		msg := "GHL says the location is not active; it is synced again once it is"
		return OutcomeInactive, msg, fmt.Errorf("%s: %w", msg, ErrFinal)
	}
	return OutcomeError, err.Error(), err
}

// shuttingDown reports whether the process is shutting down.
func (e *Engine) shuttingDown() bool {
	select {
	case <-e.ShuttingDown: // a nil channel never is
		return true
	default:
		return false
	}
}

// untilShutdown returns ctx, also ended (with errShuttingDown as its
// cause) when the process begins to shut down, and its release.
func (e *Engine) untilShutdown(ctx context.Context) (context.Context, func()) {
	if e.ShuttingDown == nil {
		return ctx, func() {}
	}
	c, cancel := context.WithCancelCause(ctx)
	released := make(chan struct{})
	go func() {
		select {
		case <-e.ShuttingDown:
			cancel(errShuttingDown)
		case <-released:
		}
	}()
	return c, func() {
		close(released)
		cancel(nil)
	}
}

func (e *Engine) handBackAfter() time.Duration {
	if e.HandBackAfter == 0 {
		return DefaultHandBackAfter
	}
	return e.HandBackAfter
}

// DefaultHandBackAfter is Engine.HandBackAfter's default.
const DefaultHandBackAfter = 3 * time.Second
