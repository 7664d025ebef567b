package tasks

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// QueueInspector lists the queues and reads a task's state;
// *asynq.Inspector is one.
type QueueInspector interface {
	TaskInspector
	Queues() ([]string, error)
}

// Find looks the task id up in every queue, for a command that is given an
// id and no queue: asynq keys a task by both. An id that no queue holds
// gives an error wrapping asynq.ErrTaskNotFound. asynq checks ids per
// queue only, but ghlsync's ids are random or name what the task does
// (its type, schedule or location), so in practice one id is in one
// queue; should two hold it, the first in asynq's list of queues wins.
func Find(insp QueueInspector, id string) (*asynq.TaskInfo, error) {
	queues, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("tasks.Find %s: list queues: %w", id, err)
	}
	for _, q := range queues {
		info, err := insp.GetTaskInfo(q, id)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			return nil, fmt.Errorf("tasks.Find %s in %s: %w", id, q, err)
		}
	}
	return nil, fmt.Errorf("tasks.Find %s: in none of the queues %v: %w", id, queues, asynq.ErrTaskNotFound)
}
