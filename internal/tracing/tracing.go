// Package tracing is ghlsync's OpenTelemetry tracing: the process's
// TracerProvider from the standard OTEL_* variables (Setup), and the spans
// of the parts that no other package owns: each request of the web routes
// (Handler), each enqueue (Enqueue) and each task run (TaskMiddleware),
// with the trace context carried from the one to the other in the task's
// headers, so that a webhook, the task it enqueues and that task's GHL
// calls are one trace. The GHL client (ghl.Config.TracerProvider) and the
// store (store.WithTracer) make their own spans.
//
// Tracing is off unless an OTLP endpoint or exporter is configured: the
// provider is then OpenTelemetry's no-op one, whose spans record nothing
// and cost next to nothing.
//
// No span carries a secret: attributes are names, ids, statuses and
// times, never a token, a code, a URL's query or a header.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ghlsync/ghlsync/internal/config"
)

// scope names the instrumentation of this package's spans.
const scope = "github.com/ghlsync/ghlsync/internal/tracing"

// The variables Setup reads itself; the exporter reads the rest of
// OTEL_EXPORTER_OTLP_* (headers, certificates, timeout, compression) and
// the SDK reads OTEL_TRACES_SAMPLER*, OTEL_BSP_* and
// OTEL_RESOURCE_ATTRIBUTES.
const (
	varSDKDisabled    = "OTEL_SDK_DISABLED"
	varTracesExporter = "OTEL_TRACES_EXPORTER"
	varEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	varTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	varProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	varTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// propagator carries the trace context in task headers as W3C Trace
// Context (the traceparent and tracestate keys), whatever
// OTEL_PROPAGATORS says: both ends are ghlsync.
var propagator = propagation.TraceContext{}

// Provider is the process's TracerProvider and what stops it.
type Provider struct {
	trace.TracerProvider
	shutdown func(context.Context) error
}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p.shutdown != nil }

// Shutdown exports the spans not yet sent and stops the exporter; it
// waits for ctx at most. Safe to call on a disabled provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.shutdown == nil {
		return nil
	}
	if err := p.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans: %w", err)
	}
	return nil
}

// Off is a provider that records nothing.
func Off() *Provider { return &Provider{TracerProvider: noop.NewTracerProvider()} }

// Setup returns the provider of a process named service (OTEL_SERVICE_NAME
// overrides it) from the process environment, the way the OpenTelemetry
// SDKs read it:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off.
//   - OTEL_TRACES_EXPORTER=otlp, or unset with OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set: spans go over OTLP, by
//     http/protobuf or, with OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL=grpc, by
//     gRPC.
//   - otherwise (nothing set): off.
//
// A value ghlsync cannot honour is a *config.Error naming the variable.
// Export errors are logged to log (without the endpoint's query or
// userinfo).
func Setup(ctx context.Context, service string, log *slog.Logger) (*Provider, error) {
	on, err := enabled(os.Getenv)
	if err != nil || !on {
		return Off(), err
	}
	exp, err := newExporter(ctx, os.Getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		// Last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		exp.Shutdown(ctx)
		return nil, &config.Error{Var: "OTEL_RESOURCE_ATTRIBUTES", Msg: err.Error()}
	}
	if log != nil {
		// OpenTelemetry reports failed exports through its global handler;
		// without one they go to the standard logger, unformatted.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: exporting spans failed", "err", config.RedactText(err.Error()))
		}))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{TracerProvider: tp, shutdown: tp.Shutdown}, nil
}

// enabled says whether the environment asks for spans to be exported.
func enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv(varSDKDisabled)), "true") {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(getenv(varTracesExporter))) {
	case "":
		return getenv(varEndpoint) != "" || getenv(varTracesEndpoint) != "", nil
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	default:
		return false, &config.Error{Var: varTracesExporter, Msg: "must be otlp or none: ghlsync exports traces over OTLP only"}
	}
}

// newExporter builds the OTLP exporter of the protocol the environment
// names; the exporter reads its endpoint and other settings from the
// environment itself.
func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	name, protocol := varTracesProtocol, getenv(varTracesProtocol)
	if protocol == "" {
		name, protocol = varProtocol, getenv(varProtocol)
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch strings.TrimSpace(protocol) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, &config.Error{Var: name, Msg: "must be http/protobuf or grpc"}
	}
	if err != nil {
		// The endpoint is the exporter's only input that can be wrong; the
		// message may quote it, so it is redacted.
		name = varEndpoint
		if getenv(varTracesEndpoint) != "" {
			name = varTracesEndpoint
		}
		return nil, &config.Error{Var: name, Msg: config.RedactText(err.Error())}
	}
	return exp, nil
}
