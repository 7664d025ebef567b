package tracing

import (
	"context"
	"encoding/json"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of the task spans beside the semantic conventions'.
const (
	AttrTaskType   = attribute.Key("asynq.task.type")
	AttrRetryCount = attribute.Key("asynq.task.retry_count")
	AttrMaxRetry   = attribute.Key("asynq.task.max_retry")
	AttrLocationID = attribute.Key("ghlsync.location_id")
)

var asynqSystem = semconv.MessagingSystemKey.String("asynq")

// Enqueuer puts tasks into the queue; *asynq.Client is one, and so are
// tasks.Enqueuer and scheduler.Enqueuer.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueue returns next with a producer span around each enqueue, whose
// context goes into the task's headers (W3C traceparent), so that the task
// span TaskMiddleware starts is its child. Nothing else is added to the
// task: a header holds the trace and span ids and the sampling flag.
//
// The headers are written into the task's own header map: a task cannot be
// rebuilt without losing the options it was made with (queue, retries,
// timeout), which asynq does not expose. A task made without headers
// (asynq.NewTask rather than NewTaskWithHeaders) is enqueued without trace
// context. A nil tp returns next.
func Enqueue(tp trace.TracerProvider, next Enqueuer) Enqueuer {
	if tp == nil {
		return next
	}
	return &enqueuer{next: next, tracer: tp.Tracer(scope)}
}

type enqueuer struct {
	next   Enqueuer
	tracer trace.Tracer
}

func (e *enqueuer) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	ctx, span := e.tracer.Start(ctx, "enqueue "+t.Type(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(append(taskAttributes(t), semconv.MessagingOperationTypeSend)...))
	defer span.End()
	if h := t.Headers(); h != nil {
		propagator.Inject(ctx, propagation.MapCarrier(h))
	}
	info, err := e.next.EnqueueContext(ctx, t, opts...)
	if info != nil {
		span.SetAttributes(semconv.MessagingDestinationName(info.Queue), semconv.MessagingMessageID(info.ID))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return info, err
}

// TaskMiddleware runs each task in a consumer span named by its type, the
// child of the span that enqueued it when its headers carry one (see
// Enqueue). Its attributes are the task's type, queue, id, retry count and
// location; its status the handler's error. A nil tp is no tracing.
func TaskMiddleware(tp trace.TracerProvider) asynq.MiddlewareFunc {
	if tp == nil {
		return func(h asynq.Handler) asynq.Handler { return h }
	}
	tracer := tp.Tracer(scope)
	return func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			attrs := append(taskAttributes(t), semconv.MessagingOperationTypeProcess)
			if q, ok := asynq.GetQueueName(ctx); ok {
				attrs = append(attrs, semconv.MessagingDestinationName(q))
			}
			if id, ok := asynq.GetTaskID(ctx); ok {
				attrs = append(attrs, semconv.MessagingMessageID(id))
			}
			if n, ok := asynq.GetRetryCount(ctx); ok {
				attrs = append(attrs, AttrRetryCount.Int(n))
			}
			if n, ok := asynq.GetMaxRetry(ctx); ok {
				attrs = append(attrs, AttrMaxRetry.Int(n))
			}
			parent := propagator.Extract(ctx, propagation.MapCarrier(t.Headers()))
			ctx, span := tracer.Start(parent, t.Type(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
			defer span.End()
			err := h.ProcessTask(ctx, t)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		})
	}
}

// taskAttributes are what a task says of itself: its type and, when its
// payload names one, its location. Payloads carry ids, never a secret
// (tasks' contract); only location_id is read.
func taskAttributes(t *asynq.Task) []attribute.KeyValue {
	attrs := []attribute.KeyValue{asynqSystem, AttrTaskType.String(t.Type())}
	var p struct {
		LocationID string `json:"location_id"`
	}
	if json.Unmarshal(t.Payload(), &p) == nil && p.LocationID != "" {
		attrs = append(attrs, AttrLocationID.String(p.LocationID))
	}
	return attrs
}
