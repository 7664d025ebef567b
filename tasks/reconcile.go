package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/syncer"
)

// TypeReconcile reconciles a location's contacts in GHL with ghlsync's
// sync state (syncer.Inbound.Reconcile); without a location it enqueues
// one per active location.
const TypeReconcile = "ghl:reconcile"

// ReconcilePayload is the payload of TypeReconcile.
type ReconcilePayload struct {
	LocationID string `json:"location_id,omitempty"`
}

// NewReconcileTask returns the reconciliation of loc, or of every active
// location for "".
func NewReconcileTask(loc string) (*asynq.Task, error) {
	if loc != "" {
		if err := checkLocationID(loc); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(ReconcilePayload{LocationID: loc})
	if err != nil {
		return nil, err
	}
	// Kept minutes, as every scheduled task; enqueue --wait keeps it longer.
	return newTask(TypeReconcile, b, asynq.Queue(QueueDefault), asynq.MaxRetry(5), asynq.Timeout(30*time.Minute), asynq.Retention(ScheduledRetention)), nil
}

// HandleReconcile runs a TypeReconcile task. A location with patients
// whose contact is gone from GHL gets a patient sync enqueued, which
// sends them again; one with appointments whose event is gone, an
// appointment sync.
func (h *InboundHandlers) HandleReconcile(ctx context.Context, t *asynq.Task) error {
	if h == nil || h.Reconciles == nil || h.Pager == nil || h.Locations == nil || h.Enqueuer == nil {
		return fmt.Errorf("%s: this worker cannot reconcile: %w", TypeReconcile, asynq.SkipRetry)
	}
	var p ReconcilePayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return fmt.Errorf("%s: bad payload: %w: %w", TypeReconcile, err, asynq.SkipRetry)
	}
	if p.LocationID == "" {
		creds, err := h.Locations.Credentials(ctx)
		if err != nil {
			return err
		}
		parent, _ := asynq.GetTaskID(ctx)
		res := FanOutResult{Enqueued: []Child{}}
		for _, c := range creds {
			if reason := syncer.NotSyncable(&c); reason != "" {
				res.Skipped = append(res.Skipped, Skipped{LocationID: c.LocationID, Reason: reason})
				continue
			}
			task, err := NewReconcileTask(c.LocationID)
			if err != nil {
				return err
			}
			child, err := enqueueOnce(ctx, h.Enqueuer, task, derivedID(TypeReconcile, c.LocationID, parent, "location"), QueueDefault)
			if err != nil {
				return fmt.Errorf("%s: enqueue the reconciliation of %s: %w", TypeReconcile, c.LocationID, err)
			}
			child.LocationID = c.LocationID
			res.Enqueued = append(res.Enqueued, child)
		}
		writeResult(t, res)
		return nil
	}
	if err := checkLocationID(p.LocationID); err != nil {
		return fmt.Errorf("%s: bad payload: %w: %w", TypeReconcile, err, asynq.SkipRetry)
	}
	res, err := h.Inbound.Reconcile(ctx, h.Reconciles, h.Pager, p.LocationID)
	for _, follow := range []struct {
		missing int
		task    func(string) (*asynq.Task, error)
	}{{res.MissingCount, NewPatientsSyncTask}, {res.MissingAppointmentsCount, NewAppointmentsSyncTask}} {
		if err != nil || follow.missing == 0 {
			continue
		}
		sync, terr := follow.task(p.LocationID)
		if terr == nil {
			_, terr = h.Enqueuer.EnqueueContext(ctx, sync)
		}
		if terr != nil && !errors.Is(terr, asynq.ErrTaskIDConflict) {
			logOr(h.Log).Warn("reconciliation: enqueueing the sync that sends the missing records again; the next scheduled one will",
				"location", p.LocationID, "err", terr)
		}
	}
	writeResult(t, res)
	if err != nil {
		if errors.Is(err, syncer.ErrFinal) {
			return fmt.Errorf("%s %s: %w: %w", TypeReconcile, p.LocationID, err, asynq.SkipRetry)
		}
		return fmt.Errorf("%s %s: %w", TypeReconcile, p.LocationID, err)
	}
	return nil
}
