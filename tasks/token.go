package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	// Quiet: no one waits for this task (a scheduled fan-out's child, as
	// enqueued before TypeTokenRefreshBatch), so it writes no result; the
	// refresh history records what it did.
	Quiet bool `json:"quiet,omitempty"`
	// Due: the enqueuer read that the token is due (the schedule's
	// fan-out), so the refresh goes straight to the lock (refresh.Request's
	// Due).
	Due bool `json:"due,omitempty"`
}

// NewRefreshTask returns a task that refreshes loc's token, requested at
// requestedAt, a time read from refresh.SharedTime (not the caller's
// clock).
func NewRefreshTask(loc string, force bool, requestedAt time.Time) (*asynq.Task, error) {
	return newRefreshTask(RefreshPayload{LocationID: loc, Force: force, RequestedAt: requestedAt})
}

func newRefreshTask(p RefreshPayload) (*asynq.Task, error) {
	loc := p.LocationID
	if loc == "" {
		return nil, errors.New("tasks.NewRefreshTask: empty location id")
	}
	if err := checkLocationID(loc); err != nil {
		return nil, fmt.Errorf("tasks.NewRefreshTask: %w", err)
	}
	p.RequestedAt = p.RequestedAt.UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	// Kept minutes (ScheduledRetention): the refresh history holds what
	// it did. Whoever waits for it sets a longer retention as it enqueues.
	return newTask(TypeTokenRefresh, b,
		asynq.Queue(QueueCritical), asynq.MaxRetry(20), asynq.Timeout(15*time.Minute), asynq.Retention(ScheduledRetention)), nil
}

// RefreshBatch is how many locations a scheduled fan-out hands each
// TypeTokenRefreshBatch task. A refresh's own work is a few round trips;
// the queue's work per task (its enqueue, fetch and completion, three Lua
// scripts) was a fifth of a sweep's, and a task of ten spends it once for
// ten. Small, so that a batch's refreshes, one after another, take a
// fraction of a second.
const RefreshBatch = 10

// RefreshBatchPayload is a TypeTokenRefreshBatch task's: the refreshes of
// LocationIDs, each as a TypeTokenRefresh's of the same fields would run
// (quiet: the refresh history records what each did).
type RefreshBatchPayload struct {
	LocationIDs []string  `json:"location_ids"`
	Force       bool      `json:"force,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	Due         bool      `json:"due,omitempty"`
}

func (p RefreshBatchPayload) check() error {
	if len(p.LocationIDs) == 0 {
		return fmt.Errorf(`needs {"location_ids":[…]}`)
	}
	for _, loc := range p.LocationIDs {
		if err := checkLocationID(loc); err != nil {
			return err
		}
	}
	return nil
}

// NewRefreshBatchTask returns a task that refreshes the tokens of locs,
// requested at requestedAt (refresh.SharedTime), due saying that the
// enqueuer read that each is due (see RefreshPayload).
func NewRefreshBatchTask(locs []string, force bool, requestedAt time.Time, due bool) (*asynq.Task, error) {
	p := RefreshBatchPayload{LocationIDs: locs, Force: force, RequestedAt: requestedAt.UTC(), Due: due}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("tasks.NewRefreshBatchTask: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return newTask(TypeTokenRefreshBatch, b,
		asynq.Queue(QueueCritical), asynq.MaxRetry(20), asynq.Timeout(15*time.Minute), asynq.Retention(ScheduledRetention)), nil
}

// RefreshDuePayload asks for refresh tasks to be enqueued: for every
// location whose token expires within the window, or with All for every
// location whose token ghlsync keeps alive.
type RefreshDuePayload struct {
	All   bool `json:"all,omitempty"`
	Force bool `json:"force,omitempty"`
	// KeepSeconds, when positive, says someone waits for the fan-out and
	// its children (`enqueue refresh`): the result lists every child, for
	// the wait to follow, and each child is kept this long. Without it
	// (the schedule's fan-out) the result holds counts only and the
	// children are kept ScheduledRetention.
	KeepSeconds int64 `json:"keep_seconds,omitempty"`
}

// NewRefreshDueTask returns the fan-out task of the token-refresh schedule
// (all=false, keep=0) or of `enqueue refresh` without a location
// (all=true, keep: how long its children are kept for the wait; see
// WaitRetention).
func NewRefreshDueTask(all, force bool, keep time.Duration) (*asynq.Task, error) {
	b, err := json.Marshal(RefreshDuePayload{All: all, Force: force, KeepSeconds: int64(keep / time.Second)})
	if err != nil {
		return nil, err
	}
	return newTask(TypeTokenRefreshDue, b,
		asynq.Queue(QueueCritical), asynq.MaxRetry(5), asynq.Timeout(10*time.Minute), asynq.Retention(max(keep, ScheduledRetention))), nil
}

// Child names a task that a fan-out task enqueued.
type Child struct {
	LocationID string `json:"location_id"`
	TaskID     string `json:"task_id"`
	Queue      string `json:"queue"`
}

// FanOutResult is the result of a fan-out task.
type FanOutResult struct {
	// Count is how many tasks it enqueued (a child that an earlier
	// attempt of the same fan-out enqueued counts).
	Count int `json:"count"`
	// Enqueued lists them when someone waits for them (the refresh
	// fan-out lists them only when asked, see RefreshDuePayload): a
	// scheduled fan-out of 50,000 locations would otherwise keep a list
	// of megabytes.
	Enqueued []Child `json:"enqueued,omitempty"`
	// Skipped lists locations left out, with why (sync tasks skip
	// locations that need reconnecting).
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a location a fan-out left out.
type Skipped struct {
	LocationID string `json:"location_id"`
	Reason     string `json:"reason"`
}

// RefreshLocations lists the locations to refresh a page at a time,
// ordered by location id, up to limit after the id after; *store.Store is
// one.
type RefreshLocations interface {
	DueForRefreshPage(ctx context.Context, before time.Time, after string, limit int) ([]string, error)
	RefreshablePage(ctx context.Context, after string, limit int) ([]string, error)
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
	res, err := h.Refresher.Refresh(ctx, refresh.Request{LocationID: p.LocationID, RequestedAt: p.RequestedAt, Force: p.Force, Due: p.Due})
	if res.Outcome != "" && !p.Quiet {
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

// HandleRefreshBatch runs a TypeTokenRefreshBatch task: its locations'
// refreshes, one after another. A refresh that failed for a reason a
// retry may cure fails the task, after the others ran; the retry finds
// those answered (a refresh completed since the request) under their
// locks, with no GHL call, and refreshes the rest.
func (h *TokenHandlers) HandleRefreshBatch(ctx context.Context, t *asynq.Task) error {
	var p RefreshBatchPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%s: bad payload (want {\"location_ids\":[…]}): %w", TypeTokenRefreshBatch, asynq.SkipRetry)
	}
	if err := p.check(); err != nil {
		return fmt.Errorf("%s: bad payload: %w: %w", TypeTokenRefreshBatch, err, asynq.SkipRetry)
	}
	var errs []error
	for _, loc := range p.LocationIDs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		_, err := h.Refresher.Refresh(ctx, refresh.Request{LocationID: loc, RequestedAt: p.RequestedAt, Force: p.Force, Due: p.Due})
		switch {
		case err == nil, errors.Is(err, refresh.ErrInactive), errors.Is(err, refresh.ErrNeedsReauth), errors.Is(err, refresh.ErrUnknownLocation):
			// Done, or final (recorded; see HandleRefresh).
		default:
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %d of %d locations: %w", TypeTokenRefreshBatch, len(errs), len(p.LocationIDs), errors.Join(errs...))
	}
	return nil
}

// HandleRefreshDue runs a TypeTokenRefreshDue task: it reads the due
// locations a page at a time and enqueues their refreshes, fanOutParallel
// at once, while it reads the next page, so its memory does not grow with
// the number of locations.
func (h *TokenHandlers) HandleRefreshDue(ctx context.Context, t *asynq.Task) error {
	var p RefreshDuePayload
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%s: bad payload: %w", TypeTokenRefreshDue, asynq.SkipRetry)
		}
	}
	before := clock.Or(h.Clock).Now().Add(h.Window)
	page := func(after string) ([]string, error) {
		if p.All {
			return h.Locations.RefreshablePage(ctx, after, fanOutPage)
		}
		return h.Locations.DueForRefreshPage(ctx, before, after, fanOutPage)
	}
	requestedAt, err := refresh.SharedTime(ctx, h.Redis)
	if err != nil {
		return fmt.Errorf("%s: %w", TypeTokenRefreshDue, err)
	}
	var opts []asynq.Option
	var res FanOutResult
	var list func(Child)
	if p.KeepSeconds > 0 {
		opts = append(opts, asynq.Retention(time.Duration(p.KeepSeconds)*time.Second))
		res.Enqueued = []Child{}
		list = func(c Child) { res.Enqueued = append(res.Enqueued, c) }
	}
	// Children's ids derive from this task's, so a retry of it does not
	// enqueue them again.
	parent, _ := asynq.GetTaskID(ctx)
	pool := newEnqueuePool(ctx, h.Enqueuer, QueueCritical, list)
	// enqueue hands the refreshes of locs to the pool; false when it
	// stopped. Someone waiting for the fan-out follows each location's
	// own task; a schedule's children go RefreshBatch locations a task.
	enqueue := func(locs []string) (ok bool, err error) {
		if p.KeepSeconds > 0 {
			for _, loc := range locs {
				task, err := newRefreshTask(RefreshPayload{LocationID: loc, Force: p.Force, RequestedAt: requestedAt, Due: !p.All})
				if err != nil {
					return false, err
				}
				if !pool.Add(loc, derivedID(TypeTokenRefresh, loc, parent, "refresh"), task, opts...) {
					return false, nil
				}
			}
			return true, nil
		}
		for batch := range slices.Chunk(locs, RefreshBatch) {
			task, err := NewRefreshBatchTask(batch, p.Force, requestedAt, !p.All)
			if err != nil {
				return false, err
			}
			if !pool.AddBatch(batch, derivedID(TypeTokenRefreshBatch, batch[0], parent, "refresh"), task, opts...) {
				return false, nil
			}
		}
		return true, nil
	}
	readErr := func() error {
		for after := ""; ; {
			locs, err := page(after)
			if err != nil || len(locs) == 0 {
				return err
			}
			if ok, err := enqueue(locs); !ok {
				return err // nil: the pool's error says why
			}
			if len(locs) < fanOutPage {
				return nil
			}
			after = locs[len(locs)-1]
		}
	}()
	n, err := pool.Wait()
	if err = errors.Join(readErr, err); err != nil {
		return fmt.Errorf("%s: %d refreshes enqueued, then: %w", TypeTokenRefreshDue, n, err)
	}
	res.Count = n
	slices.SortFunc(res.Enqueued, func(a, b Child) int { return strings.Compare(a.LocationID, b.LocationID) })
	if n > 0 {
		logOr(h.Log).Info("enqueued token refreshes", "count", n, "all", p.All)
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
