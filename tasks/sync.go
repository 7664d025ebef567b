package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/internal/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// The patient and appointment syncs push the clinic's source tables into
// GHL, one location at a time:
//
//   - A task without a location fans out one task per active location.
//   - A location's task takes the location's lock (RedisLocks), so one sync
//     of a location runs at a time across every worker; it walks the source
//     table in external id order, a page at a time, and compares each
//     record's content hash with the one GHL last accepted. Unchanged
//     records cost no GHL call.
//   - A run pushes at most BatchSize records (or works for Budget), then
//     hands the rest of the table to a follow-up task that starts after the
//     last record it covered. The follow-up's task id is derived from the
//     run's own, so a retried run cannot fork the chain.
//   - Every GHL call goes through the location's shared rate limiter; a 401
//     refreshes the token once through the single-flight refresher.
//
// Idempotence rests on the state table recording GHL's id as soon as GHL
// names it, and on what is done before a create whose answer may be lost:
// see sync_patients.go and sync_appointments.go.

// Kinds of sync, as results, run logs and metrics name them.
const (
	KindPatients     = "patients"
	KindAppointments = "appointments"
)

// SyncPayload asks for a sync of one location, or of every active location
// when LocationID is empty (as the schedules enqueue it). It never carries
// a token.
type SyncPayload struct {
	LocationID string `json:"location_id,omitempty"`
	// After continues a pass: only records whose external id sorts after
	// it are looked at.
	After string `json:"after,omitempty"`
	// Batch numbers the runs of a pass, from 1.
	Batch int `json:"batch,omitempty"`
	// Pass is the result of the pass's earlier runs, which a follow-up
	// carries on: the result of a pass's last run covers the whole pass.
	Pass *SyncResult `json:"pass,omitempty"`
}

// syncTimeout bounds a run: the wait for the location's lock (RedisLocks
// waits 5 minutes at most), a batch (Budget) and the slack to hand over.
const syncTimeout = 15 * time.Minute

// NewPatientsSyncTask returns a task that pushes the changed patients of
// loc into GHL as contacts, or of every active location when loc is "".
func NewPatientsSyncTask(loc string) (*asynq.Task, error) {
	return newSyncTask(TypePatientsSync, SyncPayload{LocationID: loc})
}

// NewAppointmentsSyncTask returns a task that pushes the changed
// appointments of loc into GHL, or of every active location when loc is "".
func NewAppointmentsSyncTask(loc string) (*asynq.Task, error) {
	return newSyncTask(TypeAppointmentsSync, SyncPayload{LocationID: loc})
}

func newSyncTask(taskType string, p SyncPayload) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(taskType, b, asynq.Queue(QueueDefault), asynq.MaxRetry(10),
		asynq.Timeout(syncTimeout), asynq.Retention(24*time.Hour)), nil
}

// SyncCredentials reads the connected locations; *store.Store is one.
type SyncCredentials interface {
	Credentials(ctx context.Context) ([]store.Credential, error)
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
}

// SyncState reads the source tables and keeps ghlsync's sync state;
// *store.Store is one. It must be safe for concurrent use.
type SyncState interface {
	PatientPage(ctx context.Context, loc, after string, limit int) ([]store.PatientRow, error)
	PatientByExternalID(ctx context.Context, loc, externalID string) (*store.PatientRow, error)
	AppointmentPage(ctx context.Context, loc, after string, limit int) ([]store.AppointmentRow, error)
	SavePatientSync(ctx context.Context, st *store.PatientSync) error
	SaveAppointmentSync(ctx context.Context, st *store.AppointmentSync) error
	EventHolders(ctx context.Context, loc string, eventIDs []string) (map[string]string, error)
	StartSyncRun(ctx context.Context, r *store.SyncRun) error
	FinishSyncRun(ctx context.Context, r *store.SyncRun) error
}

// Contacts is the part of GHL's contacts API a sync uses;
// *ghl.ContactsService is one.
type Contacts interface {
	Upsert(ctx context.Context, accessToken string, c *ghl.Contact) (*ghl.Contact, bool, *ghl.Response, error)
	Update(ctx context.Context, accessToken, contactID string, c *ghl.Contact) (*ghl.Contact, *ghl.Response, error)
	Appointments(ctx context.Context, accessToken, contactID string) ([]ghl.Appointment, *ghl.Response, error)
}

// Calendars is the part of GHL's calendars API a sync uses;
// *ghl.CalendarsService is one.
type Calendars interface {
	CreateAppointment(ctx context.Context, accessToken string, a *ghl.Appointment) (*ghl.Appointment, *ghl.Response, error)
	UpdateAppointment(ctx context.Context, accessToken, eventID string, a *ghl.Appointment) (*ghl.Appointment, *ghl.Response, error)
	DeleteEvent(ctx context.Context, accessToken, eventID string) (*ghl.Response, error)
}

// RateLimiter holds every GHL call of a location to GHL's limit, across
// all workers; *ratelimit.Limiter is one.
type RateLimiter interface {
	Wait(ctx context.Context, loc string) (ratelimit.Grant, error)
	Observe(ctx context.Context, loc string, g ratelimit.Grant, rate ghl.Rate) error
	Pause(ctx context.Context, loc string, d time.Duration) (time.Duration, error)
}

// Locks lets one sync of a location run at a time; *RedisLocks is one.
// Acquire returns a context that ends when the lock is lost, and the
// function that releases it.
type Locks interface {
	Acquire(ctx context.Context, loc string) (context.Context, func(), error)
}

// SyncHandlers runs the sync tasks. The zero values of the tuning fields
// are the defaults.
type SyncHandlers struct {
	Credentials SyncCredentials
	State       SyncState
	Refresher   Refresher
	Contacts    Contacts
	Calendars   Calendars
	Limiter     RateLimiter
	Locks       Locks
	Enqueuer    Enqueuer
	// Observe, when set, counts records by kind ("patient",
	// "appointment") and outcome ("created", "updated", "unchanged",
	// "failed"), for metrics.
	Observe func(kind, outcome string, n int)
	Log     *slog.Logger
	Now     func() time.Time

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
}

func (h *SyncHandlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *SyncHandlers) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
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
	// OutcomeContinued: a follow-up task (ContinuedBy) takes the rest.
	OutcomeContinued = "continued"
	// OutcomeNeedsReauth: GHL refused the location's refresh token for
	// good; the sync stopped and is not retried.
	OutcomeNeedsReauth = "needs_reauth"
	// OutcomeInactive: GHL says the location is not active; the sync
	// stopped and is not retried.
	OutcomeInactive = "inactive"
	// OutcomeRateLimited: GHL answered 429 anyway; the task is back in the
	// queue for the interval GHL gave, not counted as a failure.
	OutcomeRateLimited = "rate_limited"
	// OutcomeError: the run stopped on an error and is retried.
	OutcomeError = "error"
)

// SyncResult is the JSON result of a location's sync task. It covers the
// pass so far: a pass that needs several runs (batches) hands its result
// on to each follow-up, so the last run's result is the whole pass's.
type SyncResult struct {
	Kind     string `json:"kind"`
	Location string `json:"location"`
	Outcome  string `json:"outcome"`
	// Batch is the number of runs of the pass so far.
	Batch int `json:"batch"`
	// Scanned records, of which Created, Updated and Unchanged, and the
	// failed ones, listed (up to maxFailedListed) with why.
	Scanned   int            `json:"scanned"`
	Created   int            `json:"created"`
	Updated   int            `json:"updated"`
	Unchanged int            `json:"unchanged"`
	Failed    []FailedRecord `json:"failed"`
	// FailedCount counts every failed record, listed or not.
	FailedCount int `json:"failed_count"`
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
}

// add counts a run's tally into the pass's result.
func (res *SyncResult) add(n tally) {
	res.Scanned += n.scanned
	res.Created += n.created
	res.Updated += n.updated
	res.Unchanged += n.unchanged
	res.ContactsCreated += n.contactsCreated
	res.FailedCount += n.failedCount
	for _, f := range n.failed {
		if len(res.Failed) < maxFailedListed {
			res.Failed = append(res.Failed, f)
		}
	}
}

// FailedRecord is a record a sync could not push, and why.
type FailedRecord struct {
	ExternalID string `json:"external_id"`
	Reason     string `json:"reason"`
}

// maxFailedListed bounds the failed list of a result (an asynq result is
// stored in Redis); FailedCount still counts them all.
const maxFailedListed = 100

// HandlePatientsSync runs a TypePatientsSync task.
func (h *SyncHandlers) HandlePatientsSync(ctx context.Context, t *asynq.Task) error {
	return h.handle(ctx, t, patientsKind)
}

// HandleAppointmentsSync runs a TypeAppointmentsSync task.
func (h *SyncHandlers) HandleAppointmentsSync(ctx context.Context, t *asynq.Task) error {
	return h.handle(ctx, t, appointmentsKind)
}

// kind is what differs between the two syncs.
type kind struct {
	name     string // KindPatients, KindAppointments
	record   string // metric label: "patient", "appointment"
	taskType string
	// pages returns the function that reads the next page of the run's
	// table as items.
	pages func(r *run) pageFunc
}

var (
	patientsKind     = kind{KindPatients, "patient", TypePatientsSync, patientPages}
	appointmentsKind = kind{KindAppointments, "appointment", TypeAppointmentsSync, appointmentPages}
)

func (h *SyncHandlers) handle(ctx context.Context, t *asynq.Task, k kind) error {
	var p SyncPayload
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%s: bad payload (want {\"location_id\":…} or none): %w", k.taskType, asynq.SkipRetry)
		}
	}
	if p.LocationID == "" {
		return h.fanOut(ctx, t, k)
	}
	return h.runLocation(ctx, t, k, p)
}

// fanOut enqueues one task per active location. Each child's task id is
// derived from the fan-out's, so a retried fan-out enqueues no child twice.
func (h *SyncHandlers) fanOut(ctx context.Context, t *asynq.Task, k kind) error {
	creds, err := h.Credentials.Credentials(ctx)
	if err != nil {
		return err
	}
	parent, _ := asynq.GetTaskID(ctx)
	res := FanOutResult{Enqueued: []Child{}}
	for _, c := range creds {
		if reason := notSyncable(&c); reason != "" {
			res.Skipped = append(res.Skipped, Skipped{LocationID: c.LocationID, Reason: reason})
			continue
		}
		task, err := newSyncTask(k.taskType, SyncPayload{LocationID: c.LocationID})
		if err != nil {
			return err
		}
		child, err := h.enqueue(ctx, task, derivedID(k.taskType, c.LocationID, parent, "location"))
		if err != nil {
			return fmt.Errorf("%s: enqueue sync of %s: %w", k.taskType, c.LocationID, err)
		}
		child.LocationID = c.LocationID
		res.Enqueued = append(res.Enqueued, child)
	}
	h.log().Info("enqueued syncs", "kind", k.name, "count", len(res.Enqueued), "skipped", len(res.Skipped))
	writeResult(t, res)
	return nil
}

// notSyncable says why a credential's location is not synced, "" when it
// is.
func notSyncable(c *store.Credential) string {
	switch {
	case c.UserType == store.UserTypeCompany:
		return "agency (Company) token: only locations are synced"
	case c.Status == store.StatusNeedsReauth:
		return "needs_reauth: GHL refused its refresh token; connect the location again at /api/auth/connect"
	case c.Status == store.StatusInactive:
		return "inactive: GHL says the location is not active"
	case c.Status == store.StatusUninstalled:
		return "uninstalled: the app was uninstalled from the location; connect it again at /api/auth/connect"
	case c.Status != store.StatusActive:
		return "status " + string(c.Status)
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
	if reason := notSyncable(c); reason != "" {
		return &statusError{status: c.Status, reason: reason}
	}
	return nil
}

// derivedID names a task enqueued by the task parent: the same parent
// always derives the same id, so a retry of it collides with what an
// earlier attempt enqueued instead of doubling it. "" (no task id known)
// leaves the choice to asynq.
func derivedID(taskType, loc, parent, purpose string) string {
	if parent == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(parent + "\x00" + purpose))
	return taskType + ":" + loc + ":" + hex.EncodeToString(sum[:8])
}

// enqueue enqueues a sync task under id, once.
func (h *SyncHandlers) enqueue(ctx context.Context, task *asynq.Task, id string) (Child, error) {
	return enqueueOnce(ctx, h.Enqueuer, task, id, QueueDefault)
}

// runLocation runs one batch of a location's sync.
func (h *SyncHandlers) runLocation(ctx context.Context, t *asynq.Task, k kind, p SyncPayload) error {
	loc := p.LocationID
	res := SyncResult{Kind: k.name, Location: loc, StartedAt: h.now().UTC()}
	if p.Pass != nil {
		res = *p.Pass
	}
	res.Batch, res.Cursor, res.ContinuedBy = max(p.Batch, 1), p.After, ""
	res.Failed = append([]FailedRecord{}, res.Failed...)
	finish := func(outcome, msg string) {
		res.Outcome, res.Message = outcome, msg
		res.Duration = h.now().Sub(res.StartedAt).Round(time.Millisecond).String()
		writeResult(t, res)
	}

	// Checked before waiting for the lock: a location that cannot be
	// synced should not queue behind one that is.
	c, err := h.Credentials.Credential(ctx, loc)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s %s: %w: %w", k.taskType, loc, refresh.ErrUnknownLocation, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if err := checkSyncable(c); err != nil {
		outcome, msg, err := stopOutcome(err)
		finish(outcome, msg)
		return fmt.Errorf("%s %s: %w", k.taskType, loc, err)
	}

	runCtx, release, err := h.Locks.Acquire(ctx, loc)
	if err != nil {
		return err
	}
	defer release()

	taskID, _ := asynq.GetTaskID(ctx)
	log := &store.SyncRun{Kind: k.name, LocationID: loc, TaskID: taskID, After: p.After, StartedAt: h.now().UTC()}
	if err := h.State.StartSyncRun(ctx, log); err != nil {
		return err
	}
	r := newRun(h, k, loc)
	cursor, done := r.walk(runCtx, p.After, k.pages(r))
	n := r.tally()
	res.add(n)
	res.Cursor = cursor
	stopErr := r.stopCause()
	if stopErr != nil && runCtx.Err() != nil && ctx.Err() == nil {
		stopErr = context.Cause(runCtx) // the lock was lost
	}

	outcome, msg, retErr := OutcomeCompleted, "", error(nil)
	switch {
	case stopErr == nil && done:
	case stopErr == nil:
		outcome = OutcomeContinued
		if res.ContinuedBy, retErr = h.continuePass(ctx, k, taskID, res); retErr != nil {
			// The batch is done and recorded; its retry finds it unchanged
			// and enqueues the follow-up again.
			outcome, msg = OutcomeError, "could not enqueue the follow-up: "+retErr.Error()
		}
	default:
		outcome, msg, retErr = stopOutcome(stopErr)
	}

	log.Cursor, log.Outcome, log.ContinuedBy, log.Error = cursor, outcome, res.ContinuedBy, msg
	log.Scanned, log.Created, log.Updated, log.Unchanged, log.Failed = n.scanned, n.created, n.updated, n.unchanged, n.failedCount
	if err := h.State.FinishSyncRun(context.WithoutCancel(ctx), log); err != nil {
		h.log().Warn("could not record the end of a sync run", "location", loc, "kind", k.name, "err", err)
	}
	finish(outcome, msg)
	h.log().Info("sync run ended", "kind", k.name, "location", loc, "batch", res.Batch, "outcome", outcome,
		"scanned", n.scanned, "created", n.created, "updated", n.updated, "unchanged", n.unchanged,
		"failed", n.failedCount, "pass_duration", res.Duration, "continued_by", res.ContinuedBy)
	if retErr != nil {
		return fmt.Errorf("%s %s: %w", k.taskType, loc, retErr)
	}
	return nil
}

// continuePass enqueues the follow-up of the run taskID, which carries the
// pass's result so far and starts after its cursor, and returns its id.
func (h *SyncHandlers) continuePass(ctx context.Context, k kind, taskID string, res SyncResult) (string, error) {
	res.Outcome = OutcomeContinued
	next, err := newSyncTask(k.taskType, SyncPayload{LocationID: res.Location, After: res.Cursor, Batch: res.Batch + 1, Pass: &res})
	if err != nil {
		return "", err
	}
	child, err := h.enqueue(context.WithoutCancel(ctx), next, derivedID(k.taskType, res.Location, taskID, "next"))
	return child.TaskID, err
}

// stopOutcome turns the error that stopped a run into the run's outcome,
// message and the handler's error.
func stopOutcome(err error) (string, string, error) {
	var rl *ghl.RateLimitError
	var se *statusError
	switch {
	case errors.As(err, &se):
		// A company token is not a location: an error, not a state.
		outcome := string(se.status)
		if se.status == store.StatusActive {
			outcome = OutcomeError
		}
		return outcome, se.reason, fmt.Errorf("%s: %w", se.reason, asynq.SkipRetry)
	case errors.As(err, &rl):
		return OutcomeRateLimited, fmt.Sprintf("GHL answered 429; the task runs again in %s", rl.RetryAfter), rl
	case errors.Is(err, refresh.ErrNeedsReauth):
		msg := "GHL refused the location's refresh token for good; connect it again at /api/auth/connect"
		return OutcomeNeedsReauth, msg, fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
	case errors.Is(err, refresh.ErrInactive):
		msg := "GHL says the location is not active; it is synced again once it is"
		return OutcomeInactive, msg, fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
	}
	return OutcomeError, err.Error(), err
}
