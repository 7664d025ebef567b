package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
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
	Pass *syncer.Result `json:"pass,omitempty"`
	// Force sends every record again whatever its hash (enqueue --full):
	// a repair of the CRM. A fan-out hands it to each location's task and a
	// pass to its follow-ups.
	Force bool `json:"force,omitempty"`
	// DryRun counts what the sync would create, update, delete and
	// refuse, with no GHL call and no write (enqueue --dry-run); handed on
	// as Force is.
	DryRun bool `json:"dry_run,omitempty"`
	// Full reads every row, not only those changed since the last pass,
	// and finds the rows gone from the table (the nightly full pass);
	// unlike Force it sends only what changed. Since reads only the rows
	// changed at or after it (enqueue --since). Handed on as Force is.
	Full  bool       `json:"full,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	// KeepSeconds, when positive, says someone waits for the task (the
	// enqueue command): it, its follow-ups and a fan-out's children are
	// kept this long, and a fan-out lists its children in its result for
	// the wait to follow. Without it a task is kept ScheduledRetention
	// and a fan-out's result holds counts.
	KeepSeconds int64 `json:"keep_seconds,omitempty"`
}

// modes is the operator's choices of p, which a fan-out and a pass hand
// on.
func (p SyncPayload) modes(loc string) SyncPayload {
	return SyncPayload{LocationID: loc, Force: p.Force, DryRun: p.DryRun, Full: p.Full, Since: p.Since, KeepSeconds: p.KeepSeconds}
}

// syncTimeout bounds a run: the wait for the location's lock (syncer.Locks
// waits 5 minutes at most), a batch (Budget) and the slack to hand over.
const syncTimeout = 15 * time.Minute

// NewPatientsSyncTask returns a task that pushes the changed patients of
// loc into GHL as contacts, or of every active location when loc is "".
func NewPatientsSyncTask(loc string) (*asynq.Task, error) {
	return newSyncTask(TypePatientsSync, SyncPayload{LocationID: loc})
}

// NewSyncTask returns a sync task of taskType (TypePatientsSync or
// TypeAppointmentsSync) with the operator's choices of p: its location
// ("" for every active one), Force, DryRun, Full, Since and KeepSeconds.
func NewSyncTask(taskType string, p SyncPayload) (*asynq.Task, error) {
	if _, ok := syncKinds[taskType]; !ok {
		return nil, fmt.Errorf("tasks: %q is no sync task type", taskType)
	}
	return newSyncTask(taskType, p.modes(p.LocationID))
}

// NewAppointmentsSyncTask returns a task that pushes the changed
// appointments of loc into GHL, or of every active location when loc is "".
func NewAppointmentsSyncTask(loc string) (*asynq.Task, error) {
	return newSyncTask(TypeAppointmentsSync, SyncPayload{LocationID: loc})
}

func newSyncTask(taskType string, p SyncPayload) (*asynq.Task, error) {
	if p.LocationID != "" {
		if err := checkLocationID(p.LocationID); err != nil {
			return nil, fmt.Errorf("tasks: %s task: %w", taskType, err)
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return newTask(taskType, b, asynq.Queue(QueueDefault), asynq.MaxRetry(10),
		asynq.Timeout(syncTimeout), asynq.Retention(max(time.Duration(p.KeepSeconds)*time.Second, ScheduledRetention))), nil
}

// SyncLocations lists the connected locations for a fan-out; *store.Store
// is one.
type SyncLocations interface {
	Credentials(ctx context.Context) ([]store.Credential, error)
}

// SyncHandlers runs the sync engine as the sync tasks: a task without a
// location fans out one per active location, a location's task runs one
// batch and enqueues the follow-up of a pass that is not done.
type SyncHandlers struct {
	syncer.Engine
	Locations SyncLocations
	Enqueuer  Enqueuer
}

// Validate reports a required field that is not set. Call it at start.
func (h *SyncHandlers) Validate() error {
	if err := h.Engine.Validate(); err != nil {
		return err
	}
	for name, missing := range map[string]bool{"Locations": h.Locations == nil, "Enqueuer": h.Enqueuer == nil} {
		if missing {
			return fmt.Errorf("tasks.SyncHandlers: %s is required", name)
		}
	}
	return nil
}

// syncTaskTypes names the task type of each of the engine's kinds.
var syncTaskTypes = map[string]string{
	syncer.KindPatients:     TypePatientsSync,
	syncer.KindAppointments: TypeAppointmentsSync,
}

// syncKinds maps a task type back to the engine's kind.
var syncKinds = func() map[string]string {
	m := make(map[string]string, len(syncTaskTypes))
	for kind, taskType := range syncTaskTypes {
		m[taskType] = kind
	}
	return m
}()

// HandlePatientsSync runs a TypePatientsSync task.
func (h *SyncHandlers) HandlePatientsSync(ctx context.Context, t *asynq.Task) error {
	return h.handle(ctx, t)
}

// HandleAppointmentsSync runs a TypeAppointmentsSync task.
func (h *SyncHandlers) HandleAppointmentsSync(ctx context.Context, t *asynq.Task) error {
	return h.handle(ctx, t)
}

func (h *SyncHandlers) handle(ctx context.Context, t *asynq.Task) error {
	var p SyncPayload
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%s: bad payload (want {\"location_id\":…} or none): %w", t.Type(), asynq.SkipRetry)
		}
	}
	if p.LocationID == "" {
		return h.fanOut(ctx, t, p)
	}
	if err := checkLocationID(p.LocationID); err != nil {
		return fmt.Errorf("%s: bad payload: %w: %w", t.Type(), err, asynq.SkipRetry)
	}
	taskID, _ := asynq.GetTaskID(ctx)
	res, err := h.Run(ctx, syncer.Request{
		Kind: syncKinds[t.Type()], Location: p.LocationID, After: p.After, Batch: p.Batch, Pass: p.Pass, RunID: taskID, Force: p.Force, DryRun: p.DryRun,
		Full: p.Full, Since: p.Since,
		Continue: func(ctx context.Context, pass syncer.Result, in time.Duration) (string, error) {
			return h.continuePass(ctx, t.Type(), taskID, pass, p, in)
		},
	})
	if res.Outcome != "" {
		writeResult(t, res)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syncer.ErrFinal):
		return fmt.Errorf("%s %s: %w: %w", t.Type(), p.LocationID, err, asynq.SkipRetry)
	}
	// A 429 stays in the chain: RetryDelay waits what GHL asked.
	return fmt.Errorf("%s %s: %w", t.Type(), p.LocationID, err)
}

// fanOut enqueues one task per active location. Each child's task id is
// derived from the fan-out's, so a retried fan-out enqueues no child twice.
func (h *SyncHandlers) fanOut(ctx context.Context, t *asynq.Task, p SyncPayload) error {
	creds, err := h.Locations.Credentials(ctx)
	if err != nil {
		return err
	}
	parent, _ := asynq.GetTaskID(ctx)
	var res FanOutResult
	if p.KeepSeconds > 0 {
		res.Enqueued = []Child{}
	}
	for _, c := range creds {
		if reason := syncer.NotSyncable(&c); reason != "" {
			res.Skipped = append(res.Skipped, Skipped{LocationID: c.LocationID, Reason: reason})
			continue
		}
		task, err := newSyncTask(t.Type(), p.modes(c.LocationID))
		if err != nil {
			return err
		}
		child, err := enqueueOnce(ctx, h.Enqueuer, task, derivedID(t.Type(), c.LocationID, parent, "location"), QueueDefault)
		if err != nil {
			return fmt.Errorf("%s: enqueue sync of %s: %w", t.Type(), c.LocationID, err)
		}
		child.LocationID = c.LocationID
		res.Count++
		if p.KeepSeconds > 0 {
			res.Enqueued = append(res.Enqueued, child)
		}
	}
	logOr(h.Log).Info("enqueued syncs", "kind", syncKinds[t.Type()], "count", res.Count, "skipped", len(res.Skipped))
	writeResult(t, res)
	return nil
}

// continuePass enqueues the follow-up of the run taskID, which carries the
// pass's result so far and starts after its cursor, with the modes of
// p, to run in in (a run that handed back to the rate limiter), and
// returns its id. Waiting in the queue's schedule, the follow-up holds no
// worker slot and no lock (the run releases the location's lock when it
// ends, after this), and it goes behind the tasks already pending, so a
// large location's pass takes turns with the others.
func (h *SyncHandlers) continuePass(ctx context.Context, taskType, taskID string, pass syncer.Result, p SyncPayload, in time.Duration) (string, error) {
	next, err := newSyncTask(taskType, withPass(p.modes(pass.Location), pass))
	if err != nil {
		return "", err
	}
	var opts []asynq.Option
	if in > 0 {
		opts = append(opts, asynq.ProcessIn(in))
	}
	child, err := enqueueOnce(ctx, h.Enqueuer, next, derivedID(taskType, pass.Location, taskID, "next"), QueueDefault, opts...)
	return child.TaskID, err
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

// withPass is p continuing pass: after its cursor, as its next batch.
func withPass(p SyncPayload, pass syncer.Result) SyncPayload {
	p.After, p.Batch, p.Pass = pass.Cursor, pass.Batch+1, &pass
	return p
}
