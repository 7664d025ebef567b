package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// TypeWebhookProcess processes one recorded GHL data webhook into the
// clinic's inbox.
const TypeWebhookProcess = "ghl:webhook:process"

// WebhookPayload is the payload of TypeWebhookProcess: the id of the
// recorded event (store.WebhookEvent), never the webhook itself.
type WebhookPayload struct {
	EventID int64 `json:"event_id"`
}

// webhookMaxRetry is how often a failing event is tried (its backoff
// grows to hours, RetryDelay); the sweep takes it up after that.
const webhookMaxRetry = 25

// NewWebhookProcessTask returns the task that processes event id. Its
// task id is the event's, so an event is queued at most once at a time
// (asynq refuses the id while the task waits).
func NewWebhookProcessTask(id int64) *asynq.Task {
	b, _ := json.Marshal(WebhookPayload{EventID: id})
	return newTask(TypeWebhookProcess, b, asynq.Queue(QueueDefault), asynq.MaxRetry(webhookMaxRetry),
		asynq.TaskID(webhookTaskID(id)), asynq.Timeout(time.Minute))
}

func webhookTaskID(id int64) string { return fmt.Sprintf("webhook-event:%d", id) }

// EnqueueWebhookEvent enqueues the processing of event id; one already
// queued counts as enqueued.
func EnqueueWebhookEvent(ctx context.Context, enq Enqueuer, id int64) error {
	_, err := enqueueWebhookEvent(ctx, enq, id)
	return err
}

// enqueueWebhookEvent is EnqueueWebhookEvent, saying whether the task is
// new (not queued already).
func enqueueWebhookEvent(ctx context.Context, enq Enqueuer, id int64) (bool, error) {
	_, err := enq.EnqueueContext(ctx, NewWebhookProcessTask(id))
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return false, nil
	}
	return err == nil, err
}

// InboundHandlers runs the inbound tasks.
type InboundHandlers struct {
	Inbound *syncer.Inbound
	// Reconciles, Pager, Locations and Enqueuer are the reconciliation's
	// (TypeReconcile): the store, GHL's contact pages, the locations to
	// fan out to, and the queue its fan-out and follow-up syncs go to.
	Reconciles syncer.ReconcileStore
	Pager      syncer.ContactPager
	Locations  SyncLocations
	Enqueuer   Enqueuer
	Log        *slog.Logger
}

// Validate reports a required field that is not set.
func (h *InboundHandlers) Validate() error {
	if h == nil || h.Inbound == nil {
		return errors.New("tasks.InboundHandlers: Inbound is required")
	}
	for name, missing := range map[string]bool{"Reconciles": h.Reconciles == nil, "Pager": h.Pager == nil,
		"Locations": h.Locations == nil, "Enqueuer": h.Enqueuer == nil} {
		if missing {
			return fmt.Errorf("tasks.InboundHandlers: %s is required", name)
		}
	}
	return h.Inbound.Validate()
}

// HandleWebhookProcess runs a TypeWebhookProcess task.
func (h *InboundHandlers) HandleWebhookProcess(ctx context.Context, t *asynq.Task) error {
	if h == nil {
		return fmt.Errorf("%s: this worker has no inbound handlers: %w", TypeWebhookProcess, asynq.SkipRetry)
	}
	var p WebhookPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.EventID <= 0 {
		return fmt.Errorf("%s: bad payload %q: %w", TypeWebhookProcess, t.Payload(), asynq.SkipRetry)
	}
	res, err := h.Inbound.Process(ctx, p.EventID)
	if err != nil {
		return err
	}
	writeResult(t, res)
	return nil
}

// WebhookEvents is what the sweep needs of the store; *store.Store is one.
type WebhookEvents interface {
	UnprocessedWebhookEvents(ctx context.Context, before time.Time, afterID int64, limit int) ([]store.WebhookEvent, error)
	PurgeWebhookEvents(ctx context.Context, before time.Time) (int64, error)
}

// WebhookSweep enqueues again the recorded webhook events that are not
// processed a while after they arrived: the web process's enqueue failed
// after the event was written (Redis down), Redis lost the task, or its
// retries ran out. It also purges events processed long ago. One worker
// at a time sweeps, under a Redis lease.
type WebhookSweep struct {
	Events   WebhookEvents
	Enqueuer Enqueuer
	Redis    redis.UniversalClient
	// Every is how often to sweep; 30s.
	Every time.Duration
	// After is how long an event may wait for its task before the sweep
	// enqueues it again; 1m.
	After time.Duration
	// Keep is how long processed events are kept; 7 days.
	Keep  time.Duration
	Log   *slog.Logger
	Clock clock.Clock
}

const keyWebhookSweep = "ghlsync:webhook:sweep"

// Validate reports a required field that is not set.
func (s *WebhookSweep) Validate() error {
	for name, missing := range map[string]bool{"Events": s.Events == nil, "Enqueuer": s.Enqueuer == nil, "Redis": s.Redis == nil} {
		if missing {
			return fmt.Errorf("tasks.WebhookSweep: %s is required", name)
		}
	}
	return nil
}

// Run sweeps at once and then every Every until ctx is done.
func (s *WebhookSweep) Run(ctx context.Context) {
	t := clock.Or(s.Clock).NewTicker(cmpOr(s.Every, 30*time.Second))
	defer t.Stop()
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			logOr(s.Log).Warn("sweeping unprocessed webhook events", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// SweepOnce sweeps once under the lease and returns how many events it
// enqueued again (those still queued are left as they are).
func (s *WebhookSweep) SweepOnce(ctx context.Context) (int, error) {
	lk, err := lease.TryAcquire(ctx, s.Redis, keyWebhookSweep, lease.Options{TTL: time.Minute, Clock: s.Clock}, nil)
	if err != nil || lk == nil {
		return 0, err
	}
	defer lk.Release(context.WithoutCancel(ctx), nil)
	ctx = lk.Context()
	now := clock.Or(s.Clock).Now()
	n := 0
	after := int64(0)
	for {
		evs, err := s.Events.UnprocessedWebhookEvents(ctx, now.Add(-cmpOr(s.After, time.Minute)), after, 1000)
		if err != nil {
			return n, err
		}
		for _, ev := range evs {
			after = ev.ID
			fresh, err := enqueueWebhookEvent(ctx, s.Enqueuer, ev.ID)
			if err != nil {
				return n, err
			}
			if fresh {
				n++
			}
		}
		if len(evs) < 1000 {
			break
		}
	}
	if n > 0 {
		logOr(s.Log).Info("enqueued unprocessed webhook events again", "events", n)
	}
	if _, err := s.Events.PurgeWebhookEvents(ctx, now.Add(-cmpOr(s.Keep, 7*24*time.Hour))); err != nil {
		return n, err
	}
	return n, nil
}
