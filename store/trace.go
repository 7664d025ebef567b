package store

import (
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

const (
	tracerScope = "github.com/ghlsync/ghlsync/store"
	spanKey     = "ghlsync:trace:span"
	// maxQueryText bounds a statement's text on its span: a batch insert
	// repeats its placeholders per row.
	maxQueryText = 2048
)

// WithTracer traces every database write (create, update, delete and raw
// statements such as upserts and migrations) with a client span, the child
// of the span in the statement's context. Its attributes are the
// database system, the operation, the table, the statement's text with
// its placeholders (never the values bound to them, which include sealed
// tokens and patients' data) and the rows affected. A nil tp traces
// nothing.
func WithTracer(tp trace.TracerProvider) Option {
	return func(s *Store) {
		if tp == nil {
			return
		}
		tracer := tp.Tracer(tracerScope)
		system := semconv.DBSystemNameSQLite
		if s.Postgres() {
			system = semconv.DBSystemNamePostgreSQL
		}
		start := startWrite(tracer, system)
		cb := s.db.Callback()
		// "*" runs first and last in the chain: the span covers the
		// statement's transaction and hooks.
		for _, err := range []error{
			cb.Create().Before("*").Register("ghlsync:trace_start_create", start),
			cb.Create().After("*").Register("ghlsync:trace_end_create", endWrite),
			cb.Update().Before("*").Register("ghlsync:trace_start_update", start),
			cb.Update().After("*").Register("ghlsync:trace_end_update", endWrite),
			cb.Delete().Before("*").Register("ghlsync:trace_start_delete", start),
			cb.Delete().After("*").Register("ghlsync:trace_end_delete", endWrite),
			cb.Raw().Before("*").Register("ghlsync:trace_start_raw", start),
			cb.Raw().After("*").Register("ghlsync:trace_end_raw", endWrite),
		} {
			if err != nil {
				// Only callbacks whose order conflicts fail: a wiring mistake.
				panic("store.WithTracer: " + err.Error())
			}
		}
	}
}

func startWrite(tracer trace.Tracer, system attribute.KeyValue) func(*gorm.DB) {
	return func(db *gorm.DB) {
		ctx, span := tracer.Start(db.Statement.Context, "db write", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(system))
		if !span.IsRecording() {
			// Not sampled, or a no-op provider: nothing to describe.
			span.End()
			return
		}
		db.Statement.Context = ctx
		db.InstanceSet(spanKey, span)
	}
}

func endWrite(db *gorm.DB) {
	v, ok := db.InstanceGet(spanKey)
	if !ok {
		return
	}
	span := v.(trace.Span)
	defer span.End()
	sql := db.Statement.SQL.String()
	op, _, _ := strings.Cut(strings.TrimSpace(sql), " ")
	op = strings.ToUpper(op)
	name := op
	if t := db.Statement.Table; t != "" {
		name += " " + t
		span.SetAttributes(semconv.DBCollectionName(t))
	}
	if name != "" {
		span.SetName(name)
	}
	if len(sql) > maxQueryText {
		sql = sql[:maxQueryText] + "…"
	}
	span.SetAttributes(semconv.DBOperationName(op), semconv.DBQueryText(sql), attribute.Int64("db.response.rows_affected", db.RowsAffected))
	if err := db.Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		span.SetStatus(codes.Error, err.Error())
	}
}
