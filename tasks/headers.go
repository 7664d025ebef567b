package tasks

import "github.com/hibiken/asynq"

// newTask makes a task with a header map of its own, empty, into which an
// enqueuer writes the trace context (tracing.Enqueue): asynq does not
// expose a task's options, so a task cannot be rebuilt with headers
// without losing its queue, retries and timeout. Headers carry no secret.
func newTask(typename string, payload []byte, opts ...asynq.Option) *asynq.Task {
	return asynq.NewTaskWithHeaders(typename, payload, map[string]string{}, opts...)
}
