package tracing

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// captureEnqueuer keeps the tasks it is given.
type captureEnqueuer struct {
	tasks []*asynq.Task
	err   error
}

func (c *captureEnqueuer) EnqueueContext(_ context.Context, t *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	c.tasks = append(c.tasks, t)
	if c.err != nil {
		return nil, c.err
	}
	return &asynq.TaskInfo{ID: "task-1", Queue: "default", Type: t.Type()}, nil
}

func newTestTask(t *testing.T) *asynq.Task {
	t.Helper()
	return asynq.NewTaskWithHeaders("ghl:patients:sync", []byte(`{"location_id":"loc-9"}`), map[string]string{}, asynq.Queue("default"))
}

func recorder(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, exp
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// The task an enqueue puts into the queue carries the enqueue span's
// context in its headers, and the task span the middleware starts from
// them is that span's child: caller → enqueue → task, one trace.
func TestTaskSpanIsTheChildOfItsEnqueue(t *testing.T) {
	t.Parallel()
	tp, exp := recorder(t)
	ctx, caller := tp.Tracer("test").Start(context.Background(), "webhook")
	queue := &captureEnqueuer{}
	if _, err := Enqueue(tp, queue).EnqueueContext(ctx, newTestTask(t)); err != nil {
		t.Fatal(err)
	}
	caller.End()
	sent := queue.tasks[0]
	if sent.Headers()["traceparent"] == "" {
		t.Fatalf("the enqueued task's headers %v carry no traceparent", sent.Headers())
	}
	if len(sent.Headers()) > 2 {
		t.Errorf("headers %v: want traceparent (and tracestate) only", sent.Headers())
	}

	// As a worker gets it: the type, payload and headers from Redis.
	received := asynq.NewTaskWithHeaders(sent.Type(), sent.Payload(), sent.Headers())
	var inHandler trace.SpanContext
	handler := TaskMiddleware(tp)(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		inHandler = trace.SpanContextFromContext(ctx)
		return errors.New("sync of loc-9: GHL did not answer")
	}))
	if err := handler.ProcessTask(context.Background(), received); err == nil {
		t.Fatal("the handler's error was lost")
	}

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		spans[s.Name()] = s
	}
	enq, task := spans["enqueue ghl:patients:sync"], spans["ghl:patients:sync"]
	if enq == nil || task == nil {
		t.Fatalf("spans %v: want the enqueue's and the task's", exp.GetSpans().Snapshots())
	}
	if enq.Parent().SpanID() != caller.SpanContext().SpanID() || enq.SpanKind() != trace.SpanKindProducer {
		t.Error("the enqueue span is not a producer span under its caller's")
	}
	if task.Parent().SpanID() != enq.SpanContext().SpanID() || task.SpanContext().TraceID() != caller.SpanContext().TraceID() ||
		task.SpanKind() != trace.SpanKindConsumer {
		t.Error("the task span is not a consumer span under the enqueue's, in the caller's trace")
	}
	if inHandler.SpanID() != task.SpanContext().SpanID() {
		t.Error("the handler does not run in the task span's context")
	}
	if task.Status().Code != codes.Error || task.Status().Description != "sync of loc-9: GHL did not answer" {
		t.Errorf("task status %v, want the handler's error", task.Status())
	}
	for name, s := range map[string]sdktrace.ReadOnlySpan{"enqueue": enq, "task": task} {
		a := attrsOf(s)
		if a[AttrTaskType].AsString() != "ghl:patients:sync" || a[AttrLocationID].AsString() != "loc-9" || a["messaging.system"].AsString() != "asynq" {
			t.Errorf("%s span attributes %v: want the task type, its location and asynq", name, s.Attributes())
		}
	}
	if a := attrsOf(enq); a["messaging.message.id"].AsString() != "task-1" || a["messaging.destination.name"].AsString() != "default" {
		t.Errorf("enqueue span attributes %v: want the task id and queue", enq.Attributes())
	}
}

// A task made without a header map is enqueued as it is, and its task
// span starts a trace of its own; a failed enqueue marks its span.
func TestEnqueueWithoutHeaders(t *testing.T) {
	t.Parallel()
	tp, exp := recorder(t)
	ctx, caller := tp.Tracer("test").Start(context.Background(), "tick")
	defer caller.End()
	bare := asynq.NewTask("ghl:token:refresh-due", nil)
	queue := &captureEnqueuer{err: errors.New("redis: connection refused")}
	if _, err := Enqueue(tp, queue).EnqueueContext(ctx, bare); err == nil {
		t.Fatal("the enqueue's error was lost")
	}
	if queue.tasks[0] != bare || bare.Headers() != nil {
		t.Error("a task without headers was changed")
	}
	s := exp.GetSpans().Snapshots()[0]
	if s.Status().Code != codes.Error {
		t.Errorf("enqueue span status %v, want an error", s.Status())
	}
	if _, ok := attrsOf(s)[AttrLocationID]; ok {
		t.Error("a location attribute for a task that names none")
	}
}
