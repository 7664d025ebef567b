package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/syncer"
)

// TaskInspector reads a task's state; *asynq.Inspector is one. It must be
// safe for concurrent use when one is shared by concurrent waits.
type TaskInspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

// pollInterval is how often a wait looks at the task again.
const pollInterval = 100 * time.Millisecond

// WaitTask polls a task until it completed or was archived (failed for
// good), or ctx is done; then it returns the task's last known info with
// ctx's error. A task not found yet is waited for, since an enqueue may not
// be visible at once. onRetry, if set, is told each new retry error.
func WaitTask(ctx context.Context, insp TaskInspector, queue, id string, onRetry func(*asynq.TaskInfo)) (*asynq.TaskInfo, error) {
	lastErr := ""
	for {
		info, err := insp.GetTaskInfo(queue, id)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return nil, err
		}
		if info != nil {
			switch info.State {
			case asynq.TaskStateCompleted, asynq.TaskStateArchived:
				return info, nil
			case asynq.TaskStateRetry:
				if onRetry != nil && info.LastErr != lastErr {
					lastErr = info.LastErr
					onRetry(info)
				}
			}
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// Waited is what one task came to, as Wait saw it.
type Waited struct {
	// TaskID is the task whose result this is: for a sync that continued
	// in follow-ups, the last follow-up.
	TaskID string
	Queue  string
	// LocationID is the location the task was for, as the caller named
	// it; "" for a fan-out.
	LocationID string
	// Result is the task's result as it wrote it, nil if it wrote none.
	Result json.RawMessage
	// Err says why the task did not succeed, nil when it did. It wraps
	// ctx's error when the wait ended before the task did (the task stays
	// queued then).
	Err error
}

// Wait waits for the task id in queue and returns what it came to. A sync
// too big for one task names its follow-up in continued_by, and Wait goes
// on to that one, since the last result covers the whole pass. Err is
// Failure's. onRetry, if set, is told each new retry error.
func Wait(ctx context.Context, insp TaskInspector, queue, id, loc string, onRetry func(*asynq.TaskInfo)) Waited {
	for {
		w := Waited{TaskID: id, Queue: queue, LocationID: loc}
		info, err := WaitTask(ctx, insp, queue, id, onRetry)
		if info != nil && len(info.Result) > 0 {
			w.Result = info.Result
		}
		if err != nil {
			w.Err = err
			return w
		}
		if next := ContinuedBy(info); next != "" {
			id = next
			continue
		}
		w.Err = Failure(info)
		return w
	}
}

// ContinuedBy is the follow-up task that a completed sync task handed the
// rest of its pass to; "" when it has none.
func ContinuedBy(info *asynq.TaskInfo) string {
	var res struct {
		ContinuedBy string `json:"continued_by"`
	}
	if info.State != asynq.TaskStateCompleted || json.Unmarshal(info.Result, &res) != nil {
		return ""
	}
	return res.ContinuedBy
}

// Failure says why a task that ended (completed or archived) did not
// succeed; nil when it did. Besides the failures asynq knows of (an
// archived task, with its last error), it is an error for a task that did
// its job but whose location needs attention: an outcome of needs_reauth
// or inactive, with the result's message.
func Failure(info *asynq.TaskInfo) error {
	if info.State == asynq.TaskStateArchived {
		return errors.New(strings.TrimSuffix(info.LastErr, ": "+asynq.SkipRetry.Error()))
	}
	var res struct {
		Outcome string `json:"outcome"`
		Message string `json:"message"`
	}
	if json.Unmarshal(info.Result, &res) == nil && needsAttention(res.Outcome) {
		return errors.New(cmp.Or(res.Message, "the location is "+res.Outcome))
	}
	return nil
}

// needsAttention reports whether a task's outcome means it did its job but
// its location cannot be served until someone acts (reconnects it, or
// GHL activates it). Refresh and sync results spell these alike.
func needsAttention(outcome string) bool {
	return outcome == string(refresh.NeedsReauth) || outcome == string(refresh.Inactive) ||
		outcome == syncer.OutcomeNeedsReauth || outcome == syncer.OutcomeInactive
}

// FanOutWaited is what a fan-out task and the tasks it enqueued came to.
type FanOutWaited struct {
	// FanOut is the fan-out task itself. When it failed (FanOut.Err set)
	// nothing else was waited for, and Result and Children are empty.
	FanOut Waited
	// Result is the fan-out's result: what it enqueued and what it
	// skipped.
	Result FanOutResult
	// Children are the enqueued tasks, each as Wait saw it, in the order
	// of Result.Enqueued.
	Children []Waited
}

// WaitFanOut waits for the fan-out task id in queue, then, one after the
// other under the same ctx, for every task it enqueued (with Wait). Its
// error is for a fan-out that succeeded with a result that is not a
// FanOutResult; every other failure is in the returned value.
func WaitFanOut(ctx context.Context, insp TaskInspector, queue, id string, onRetry func(*asynq.TaskInfo)) (*FanOutWaited, error) {
	out := &FanOutWaited{FanOut: Wait(ctx, insp, queue, id, "", onRetry)}
	if out.FanOut.Err != nil {
		return out, nil
	}
	if err := json.Unmarshal(out.FanOut.Result, &out.Result); err != nil {
		return nil, fmt.Errorf("unreadable result of task %s: %w", id, err)
	}
	for _, c := range out.Result.Enqueued {
		out.Children = append(out.Children, Wait(ctx, insp, c.Queue, c.TaskID, c.LocationID, onRetry))
	}
	return out, nil
}
