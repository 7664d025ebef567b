package tracing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// A request to a route is a server span named by the route, with its
// method, route and status, and nothing of its URL's query; a caller's
// traceparent is linked, not trusted as the parent.
func TestHandlerSpans(t *testing.T) {
	t.Parallel()
	tp, exp := recorder(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/callback", func(w http.ResponseWriter, r *http.Request) {
		if !trace.SpanContextFromContext(r.Context()).IsValid() {
			t.Error("the handler runs outside the request's span")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	h := Handler(tp, mux)

	const code, state = "code-5ecret0123", "state-5ecret4567"
	req := httptest.NewRequest(http.MethodGet, "/api/auth/callback?code="+code+"&state="+state, nil)
	const remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req.Header.Set("traceparent", remote)
	h.ServeHTTP(httptest.NewRecorder(), req)

	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "GET /api/auth/callback" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q of kind %s, want GET /api/auth/callback, server", s.Name(), s.SpanKind())
	}
	a := attrsOf(s)
	if a["http.route"].AsString() != "/api/auth/callback" || a["http.request.method"].AsString() != "GET" ||
		a["http.response.status_code"].AsInt64() != 503 || s.Status().Code != codes.Error {
		t.Errorf("attributes %v, status %v: want the route, GET, 503 and an error", s.Attributes(), s.Status())
	}
	if s.Parent().IsValid() {
		t.Error("the caller's traceparent became the parent of a public route's span")
	}
	if len(s.Links()) != 1 || s.Links()[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("links %v, want the caller's span", s.Links())
	}
	text := s.Name()
	for _, kv := range s.Attributes() {
		text += " " + kv.Value.Emit()
	}
	for _, secret := range []string{code, state} {
		if strings.Contains(text, secret) {
			t.Errorf("the span holds %q: %s", secret, text)
		}
	}
}

// A request no route matches is still one span, named by its method, and
// a 4xx is no server error.
func TestHandlerSpanWithoutRoute(t *testing.T) {
	t.Parallel()
	tp, exp := recorder(t)
	h := Handler(tp, http.NewServeMux())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/nowhere/loc-1", nil))
	s := exp.GetSpans().Snapshots()[0]
	if s.Name() != "POST" || attrsOf(s)["http.response.status_code"].AsInt64() != 404 || s.Status().Code == codes.Error {
		t.Errorf("span %q %v %v, want POST, 404, no error", s.Name(), s.Attributes(), s.Status())
	}
}
