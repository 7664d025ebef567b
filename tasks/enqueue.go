package tasks

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
)

// enqueueOnce enqueues task under id (into queue), with opts; a task of
// that id that an earlier attempt of the same fan-out already enqueued
// counts as enqueued, so a retried fan-out never doubles its children.
func enqueueOnce(ctx context.Context, enq Enqueuer, task *asynq.Task, id, queue string, opts ...asynq.Option) (Child, error) {
	if id != "" {
		opts = append(opts, asynq.TaskID(id))
	}
	info, err := enq.EnqueueContext(ctx, task, opts...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return Child{TaskID: id, Queue: queue}, nil
	case err != nil:
		return Child{}, err
	}
	return Child{TaskID: info.ID, Queue: info.Queue}, nil
}
