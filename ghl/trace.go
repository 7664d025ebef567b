package ghl

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerScope names the instrumentation of the GHL call spans.
const tracerScope = "github.com/ghlsync/ghlsync/ghl"

// Attribute keys of the GHL call spans beside the semantic conventions'.
const (
	// AttrEndpoint is the call's stable name (see Config.OnResponse).
	AttrEndpoint = attribute.Key("ghl.endpoint")
	// AttrRateLimitWait is how long the call waited for the rate limiter
	// before it was sent, in seconds (see WithRateLimitWait).
	AttrRateLimitWait = attribute.Key("ghl.rate_limit.wait")
	// AttrRateLimitRemaining is GHL's X-RateLimit-Remaining.
	AttrRateLimitRemaining = attribute.Key("ghl.rate_limit.remaining")
)

// pathTemplates are the paths of the calls with their ids as {name}, for
// the spans' url.template: a span never names the path it was sent to,
// whose ids would make every span's name unique. TestPathTemplates checks
// them against the paths the calls build.
var pathTemplates = map[string]string{
	"oauth.token":                 "/oauth/token",
	"oauth.locationToken":         "/oauth/locationToken",
	"oauth.installedLocations":    "/oauth/installedLocations",
	"contacts.upsert":             "/contacts/upsert",
	"contacts.create":             "/contacts/",
	"contacts.search":             "/contacts/search",
	"contacts.addTags":            "/contacts/{contactID}/tags",
	"contacts.removeTags":         "/contacts/{contactID}/tags",
	"contacts.get":                "/contacts/{contactID}",
	"contacts.delete":             "/contacts/{contactID}",
	"contacts.update":             "/contacts/{contactID}",
	"contacts.searchDuplicate":    "/contacts/search/duplicate",
	"contacts.appointments":       "/contacts/{contactID}/appointments",
	"calendars.list":              "/calendars/",
	"calendars.get":               "/calendars/{calendarID}",
	"calendars.events":            "/calendars/events",
	"calendars.createAppointment": "/calendars/events/appointments",
	"calendars.updateAppointment": "/calendars/events/appointments/{eventID}",
	"calendars.getAppointment":    "/calendars/events/appointments/{eventID}",
	"calendars.deleteEvent":       "/calendars/events/{eventID}",
	"calendars.notes":             "/calendars/appointments/{appointmentID}/notes",
	"calendars.createNote":        "/calendars/appointments/{appointmentID}/notes",
	"calendars.updateNote":        "/calendars/appointments/{appointmentID}/notes/{noteID}",
	"calendars.deleteNote":        "/calendars/appointments/{appointmentID}/notes/{noteID}",
	"locations.get":               "/locations/{id}",
	"locations.customFields":      "/locations/{locationID}/customFields",
	"locations.createCustomField": "/locations/{locationID}/customFields",
	"users.list":                  "/users/",
}

type rateLimitWaitKey struct{}

// WithRateLimitWait returns ctx for a call that waited d for the rate
// limiter: the call's span records the wait.
func WithRateLimitWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, rateLimitWaitKey{}, d)
}

// tracing is what a Client's spans need.
type tracing struct {
	tracer trace.Tracer       // nil: no spans
	host   attribute.KeyValue // server.address
}

// noSpan stands for the span of a call made without a tracer.
var noSpan = trace.SpanFromContext(context.Background())

func newTracing(tp trace.TracerProvider, baseURL string) tracing {
	if tp == nil {
		return tracing{}
	}
	t := tracing{tracer: tp.Tracer(tracerScope)}
	if u, err := url.Parse(baseURL); err == nil {
		t.host = semconv.ServerAddress(u.Hostname())
	}
	return t
}

// clientSpan is the start option of every call's span.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// startSpan starts the client span of the call r: its method, path
// template and endpoint name, never the path, query, body or headers.
// With tracing off (a span that does not record) it costs no attribute.
func (c *Client) startSpan(ctx context.Context, r *request) (context.Context, trace.Span) {
	if c.tracing.tracer == nil {
		return ctx, noSpan
	}
	ctx, span := c.tracing.tracer.Start(ctx, r.endpoint, clientSpan...)
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(semconv.HTTPRequestMethodKey.String(r.method), AttrEndpoint.String(r.endpoint))
	name := r.method + " " + r.endpoint
	if tmpl, ok := pathTemplates[r.endpoint]; ok {
		span.SetAttributes(semconv.URLTemplate(tmpl))
		name = r.method + " " + tmpl
	}
	span.SetName(name)
	if c.tracing.host.Valid() {
		span.SetAttributes(c.tracing.host)
	}
	if d, ok := ctx.Value(rateLimitWaitKey{}).(time.Duration); ok {
		span.SetAttributes(AttrRateLimitWait.Float64(d.Seconds()))
	}
	return ctx, span
}

// endSpan ends the span of a call with its answer. err is one of do's,
// which carry no secret (see the package doc).
func endSpan(span trace.Span, resp *Response, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if resp != nil {
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.Rate.Max > 0 {
			span.SetAttributes(AttrRateLimitRemaining.Int(resp.Rate.Remaining))
		}
	}
	if err == nil {
		return
	}
	var errType string
	switch {
	case resp != nil && resp.StatusCode >= 300:
		errType = strconv.Itoa(resp.StatusCode)
	case resp != nil:
		errType = "decoding"
	case errors.Is(err, context.DeadlineExceeded):
		errType = "timeout"
	default:
		errType = "unanswered"
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(errType))
	span.SetStatus(codes.Error, err.Error())
}
