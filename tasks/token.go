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
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// RefreshPayload asks for one location's token to be refreshed. It carries
// the location id, never a token.
type RefreshPayload struct {
	LocationID string `json:"location_id"`
	// Force refreshes even a token that does not expire within the window.
	Force bool `json:"force,omitempty"`
	// RequestedAt: a refresh of the location completed at or after this
	// time satisfies the task, so a burst of requests costs one GHL call.
	// It is on the shared clock (refresh.SharedTime), as is a refresh's
	// completion: an enqueuer's own clock may be minutes off.
	RequestedAt time.Time `json:"requested_at"`
}

// NewRefreshTask returns a task that refreshes loc's token, requested at
// requestedAt, a time read from refresh.SharedTime (not the caller's
// clock).
func NewRefreshTask(loc string, force bool, requestedAt time.Time) (*asynq.Task, error) {
	if loc == "" {
		return nil, errors.New("tasks.NewRefreshTask: empty location id")
	}
	if err := checkLocationID(loc); err != nil {
		return nil, fmt.Errorf("tasks.NewRefreshTask: %w", err)
	}
	b, err := json.Marshal(RefreshPayload{LocationID: loc, Force: force, RequestedAt: requestedAt.UTC()})
	if err != nil {
		return nil, err
	}
	return newTask(TypeTokenRefresh, b,
		asynq.Queue(QueueCritical), asynq.MaxRetry(20), asynq.Timeout(15*time.Minute), asynq.Retention(24*time.Hour)), nil
}

// RefreshDuePayload asks for refresh tasks to be enqueued: for every
// location whose token expires within the window, or with All for every
// location whose token ghlsync keeps alive.
type RefreshDuePayload struct {
	All   bool `json:"all,omitempty"`
	Force bool `json:"force,omitempty"`
}

// NewRefreshDueTask returns the fan-out task of the token-refresh schedule
// (all=false) or of `enqueue refresh` without a location (all=true).
func NewRefreshDueTask(all, force bool) (*asynq.Task, error) {
	b, err := json.Marshal(RefreshDuePayload{All: all, Force: force})
	if err != nil {
		return nil, err
	}
	return newTask(TypeTokenRefreshDue, b,
		asynq.Queue(QueueCritical), asynq.MaxRetry(5), asynq.Timeout(10*time.Minute), asynq.Retention(24*time.Hour)), nil
}

// Child names a task that a fan-out task enqueued.
type Child struct {
	LocationID string `json:"location_id"`
	TaskID     string `json:"task_id"`
	Queue      string `json:"queue"`
}

// FanOutResult is the result of a fan-out task.
type FanOutResult struct {
	Enqueued []Child `json:"enqueued"`
	// Skipped lists locations left out, with why (sync tasks skip
	// locations that need reconnecting).
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a location a fan-out left out.
type Skipped struct {
	LocationID string `json:"location_id"`
	Reason     string `json:"reason"`
}

// RefreshLocations lists the locations to refresh; *store.Store is one.
type RefreshLocations interface {
	DueForRefresh(ctx context.Context, before time.Time) ([]string, error)
	Refreshable(ctx context.Context) ([]string, error)
}

// Enqueuer puts tasks into the queue; *asynq.Client is one.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// TokenHandlers runs the token tasks.
type TokenHandlers struct {
	Refresher refresh.Renewer
	Locations RefreshLocations
	Enqueuer  Enqueuer
	// Redis tells the time the refreshes a fan-out enqueues are requested
	// at (refresh.SharedTime): the clock every process shares.
	Redis redis.UniversalClient
	// Window: refresh-due picks tokens that expire within it.
	Window time.Duration
	// Clock is this process's clock: it picks the tokens due, never the
	// time a refresh is requested at.
	Clock clock.Clock
	Log   *slog.Logger
}

// Validate reports a required field that is not set. Call it at start.
func (h *TokenHandlers) Validate() error {
	if r, ok := h.Refresher.(interface{ Validate() error }); ok {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for name, missing := range map[string]bool{"Refresher": h.Refresher == nil, "Locations": h.Locations == nil, "Enqueuer": h.Enqueuer == nil, "Redis": h.Redis == nil} {
		if missing {
			return fmt.Errorf("tasks.TokenHandlers: %s is required", name)
		}
	}
	return nil
}

// HandleRefresh runs a TypeTokenRefresh task.
func (h *TokenHandlers) HandleRefresh(ctx context.Context, t *asynq.Task) error {
	var p RefreshPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.LocationID == "" {
		return fmt.Errorf("%s: bad payload (want {\"location_id\":…}): %w", TypeTokenRefresh, asynq.SkipRetry)
	}
	if err := checkLocationID(p.LocationID); err != nil {
		return fmt.Errorf("%s: bad payload: %w: %w", TypeTokenRefresh, err, asynq.SkipRetry)
	}
	res, err := h.Refresher.Refresh(ctx, refresh.Request{LocationID: p.LocationID, RequestedAt: p.RequestedAt, Force: p.Force})
	if res.Outcome != "" {
		writeResult(t, res)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, refresh.ErrInactive):
		// Recorded, and not a failure of ours: the refresh-due schedule
		// tries inactive locations again every run, so retrying here
		// would only spend GHL calls sooner.
		return nil
	case errors.Is(err, refresh.ErrNeedsReauth), errors.Is(err, refresh.ErrUnknownLocation):
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	default:
		return err
	}
}

// HandleRefreshDue runs a TypeTokenRefreshDue task.
func (h *TokenHandlers) HandleRefreshDue(ctx context.Context, t *asynq.Task) error {
	var p RefreshDuePayload
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%s: bad payload: %w", TypeTokenRefreshDue, asynq.SkipRetry)
		}
	}
	now := clock.Or(h.Clock).Now()
	var locs []string
	var err error
	if p.All {
		locs, err = h.Locations.Refreshable(ctx)
	} else {
		locs, err = h.Locations.DueForRefresh(ctx, now.Add(h.Window))
	}
	if err != nil {
		return err
	}
	requestedAt, err := refresh.SharedTime(ctx, h.Redis)
	if err != nil {
		return fmt.Errorf("%s: %w", TypeTokenRefreshDue, err)
	}
	res := FanOutResult{Enqueued: make([]Child, 0, len(locs))}
	// Children's ids derive from this task's, so a retry of it does not
	// enqueue them again.
	parent, _ := asynq.GetTaskID(ctx)
	for _, loc := range locs {
		task, err := NewRefreshTask(loc, p.Force, requestedAt)
		if err != nil {
			return err
		}
		c, err := enqueueOnce(ctx, h.Enqueuer, task, derivedID(TypeTokenRefresh, loc, parent, "refresh"), QueueCritical)
		if err != nil {
			return fmt.Errorf("%s: enqueue refresh of %s: %w", TypeTokenRefreshDue, loc, err)
		}
		c.LocationID = loc
		res.Enqueued = append(res.Enqueued, c)
	}
	if len(locs) > 0 {
		logOr(h.Log).Info("enqueued token refreshes", "count", len(locs), "all", p.All)
	}
	writeResult(t, res)
	return nil
}

func logOr(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}

func writeResult(t *asynq.Task, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	if w := t.ResultWriter(); w != nil {
		w.Write(b)
	}
}

// checkLocationID refuses a location id that no location can have (see
// store.CheckID): retrying such a task could never succeed.
func checkLocationID(loc string) error {
	if err := store.CheckID(loc); err != nil {
		return fmt.Errorf("location id %w", err)
	}
	return nil
}
