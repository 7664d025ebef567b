package ghl

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestPathTemplates derives each call's path template from the source
// that builds its path (string literals, and url.PathEscape(name) as
// {name}) and checks pathTemplates against it, so that a new or changed
// call cannot leave its spans without a template, or with a wrong one.
func TestPathTemplates(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	derived := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "request" {
				return true
			}
			var endpoint string
			var path ast.Expr
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				switch kv.Key.(*ast.Ident).Name {
				case "endpoint":
					if s, ok := kv.Value.(*ast.BasicLit); ok {
						endpoint, _ = strconv.Unquote(s.Value)
					}
				case "path":
					path = kv.Value
				}
			}
			if endpoint == "" {
				t.Errorf("%s: a request without a literal endpoint name", fset.Position(lit.Pos()))
				return true
			}
			tmpl, ok := template(path)
			if !ok {
				// A path built some other way: the map must still name it.
				tmpl = pathTemplates[endpoint]
				if tmpl == "" {
					t.Errorf("%s: %s has no path template in pathTemplates", fset.Position(lit.Pos()), endpoint)
				}
			}
			derived[endpoint] = tmpl
			return true
		})
	}
	if len(derived) < 10 {
		t.Fatalf("found %d calls in the source; run from the package directory", len(derived))
	}
	if diff := cmp.Diff(derived, pathTemplates); diff != "" {
		t.Errorf("pathTemplates against the paths the calls build (-source +map):\n%s", diff)
	}
}

// template renders a path expression of string literals and
// url.PathEscape(x) calls joined by +, the ids as {x}.
func template(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		l, lok := template(e.X)
		r, rok := template(e.Y)
		return l + r, lok && rok && e.Op == token.ADD
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "PathEscape" || len(e.Args) != 1 {
			return "", false
		}
		arg, ok := e.Args[0].(*ast.Ident)
		if !ok {
			return "", false
		}
		return "{" + arg.Name + "}", true
	}
	return "", false
}

// spanAttrs returns a span's attributes by key.
func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func setupTraced(t *testing.T) (*Client, *testBundle, *tracetest.InMemoryExporter, trace.Tracer) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	c, b := setup(t, func(cfg *Config) { cfg.TracerProvider = tp })
	return c, b, exp, tp.Tracer("test")
}

// A GHL call is a client span, the child of its caller's, that names the
// method, the path template, the endpoint, the status and the rate
// limiter's wait, and neither the ids in the path nor the token.
func TestCallSpan(t *testing.T) {
	t.Parallel()
	c, b, exp, tracer := setupTraced(t)
	b.mux.HandleFunc("GET /contacts/c-77", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Max", "100")
		w.Header().Set("X-RateLimit-Remaining", "41")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"contact":{"id":"c-77","locationId":"loc-1"}}`))
	})
	ctx, parent := tracer.Start(context.Background(), "task")
	if _, _, err := c.Contacts.Get(WithRateLimitWait(ctx, 1500*time.Millisecond), testAccessToken, "c-77"); err != nil {
		t.Fatal(err)
	}
	parent.End()

	spans := exp.GetSpans().Snapshots()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the call's and its parent's", len(spans))
	}
	call := spans[0]
	if call.Name() != "GET /contacts/{contactID}" || call.SpanKind() != trace.SpanKindClient {
		t.Errorf("span %q of kind %s, want GET /contacts/{contactID}, client", call.Name(), call.SpanKind())
	}
	if call.Parent().SpanID() != parent.SpanContext().SpanID() || call.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Error("the call's span is not the child of its caller's")
	}
	got := map[string]any{}
	for k, v := range spanAttrs(call) {
		got[string(k)] = v.AsInterface()
	}
	want := map[string]any{
		"http.request.method":       "GET",
		"ghl.endpoint":              "contacts.get",
		"url.template":              "/contacts/{contactID}",
		"server.address":            "127.0.0.1",
		"http.response.status_code": int64(200),
		"ghl.rate_limit.wait":       1.5,
		"ghl.rate_limit.remaining":  int64(41),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if call.Status().Code != codes.Unset {
		t.Errorf("status %v of a successful call", call.Status())
	}
}

// A refused call's span says so with GHL's status, and neither its
// attributes nor its status hold the client secret or the refresh token,
// even when GHL echoes them.
func TestCallSpanOfAnErrorHoldsNoSecret(t *testing.T) {
	t.Parallel()
	c, b, exp, _ := setupTraced(t)
	b.mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token ` + testRefreshToken + ` of client ` + testClientSecret + ` already used"}`))
	})
	if _, _, err := c.OAuth.Refresh(context.Background(), testRefreshToken, "Location"); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("Refresh: %v, want invalid grant", err)
	}
	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "POST /oauth/token" || s.Status().Code != codes.Error {
		t.Errorf("span %q with status %v, want POST /oauth/token with an error", s.Name(), s.Status())
	}
	attrs := spanAttrs(s)
	if got := attrs["error.type"].AsString(); got != "400" {
		t.Errorf("error.type %q, want 400", got)
	}
	if got := attrs["http.response.status_code"].AsInt64(); got != 400 {
		t.Errorf("status code %d, want 400", got)
	}
	text := s.Name() + " " + s.Status().Description
	for _, kv := range s.Attributes() {
		text += " " + kv.Value.Emit()
	}
	for _, secret := range []string{testClientSecret, testRefreshToken} {
		if strings.Contains(text, secret) {
			t.Errorf("the span holds %q: %s", secret, text)
		}
	}
}

// BenchmarkCallSpan is what tracing adds to each GHL call: the span's
// start and end with its attributes, off (no provider: OpenTelemetry's
// no-op) and on (the SDK, every span sampled, batched to an exporter that
// drops them).
func BenchmarkCallSpan(b *testing.B) {
	on := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer on.Shutdown(context.Background())
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"off", nil}, {"on", on}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := NewClient(Config{BaseURL: "https://ghl.example", TracerProvider: bc.tp})
			if err != nil {
				b.Fatal(err)
			}
			r := &request{endpoint: "contacts.get", method: http.MethodGet, path: "/contacts/c-77"}
			resp := &Response{StatusCode: 200, Rate: Rate{Max: 100, Remaining: 41}}
			ctx := WithRateLimitWait(context.Background(), time.Millisecond)
			b.ReportAllocs()
			for b.Loop() {
				_, span := c.startSpan(ctx, r)
				endSpan(span, resp, nil)
			}
		})
	}
}
