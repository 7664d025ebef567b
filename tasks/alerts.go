package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/alert"
)

// AlertsPayload asks for one evaluation of the alert conditions. It has no
// fields: an evaluation covers everything. The schedule's empty payload is
// one too.
type AlertsPayload struct{}

// NewAlertsEvaluateTask returns a task that evaluates the alert conditions
// and delivers what is due. It goes in the critical queue, whose worker
// slots sync work cannot take: an alert must not wait behind the syncs it
// may be about.
func NewAlertsEvaluateTask() (*asynq.Task, error) {
	b, err := json.Marshal(AlertsPayload{})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeAlertsEvaluate, b, asynq.Queue(QueueCritical), asynq.MaxRetry(3),
		asynq.Timeout(5*time.Minute), asynq.Retention(ScheduledRetention)), nil
}

// AlertHandlers runs the alert task.
type AlertHandlers struct {
	Evaluator *alert.Evaluator
}

// Validate reports a required field that is not set. Call it at start.
func (h *AlertHandlers) Validate() error {
	if h == nil || h.Evaluator == nil {
		return errors.New("tasks.AlertHandlers: Evaluator is required")
	}
	return h.Evaluator.Validate()
}

// HandleEvaluate runs a TypeAlertsEvaluate task; its result is the
// alert.Result.
func (h *AlertHandlers) HandleEvaluate(ctx context.Context, t *asynq.Task) error {
	if len(t.Payload()) > 0 {
		var p AlertsPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%s: bad payload (want {} or none): %w", TypeAlertsEvaluate, asynq.SkipRetry)
		}
	}
	res, err := h.Evaluator.Evaluate(ctx)
	writeResult(t, res)
	return err
}
