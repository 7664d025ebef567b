package tasks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/alert"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/tasks"
)

// The evaluate task goes to the critical queue, whose slots syncs cannot
// take; a payload that is not the (empty) JSON object is refused for good
// before any evaluation, and a mux without an evaluator is refused at
// start.
func TestAlertsEvaluateTask(t *testing.T) {
	t.Parallel()
	task, err := tasks.NewAlertsEvaluateTask()
	if err != nil || task.Type() != tasks.TypeAlertsEvaluate || string(task.Payload()) != "{}" {
		t.Fatalf("NewAlertsEvaluateTask: %v %v", task, err)
	}
	opt, err := asynq.ParseRedisURI(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	if info, err := client.Enqueue(task); err != nil || info.Queue != tasks.QueueCritical {
		t.Errorf("enqueued %+v (%v), want the critical queue", info, err)
	}
	h := &tasks.AlertHandlers{Evaluator: &alert.Evaluator{}}
	err = h.HandleEvaluate(context.Background(), asynq.NewTask(tasks.TypeAlertsEvaluate, []byte("not json")))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("a bad payload: %v, want SkipRetry", err)
	}
	if _, err := tasks.NewMux(&tasks.TokenHandlers{}, &tasks.SyncHandlers{}, &tasks.AlertHandlers{}); err == nil {
		t.Error("NewMux took alert handlers without an evaluator")
	}
}
