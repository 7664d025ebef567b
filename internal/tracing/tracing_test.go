package tracing

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/ghlsync/ghlsync/internal/config"
)

// otelVars are every variable that could turn tracing on; each test sets
// them all, so the machine's environment does not leak in.
var otelVars = []string{varSDKDisabled, varTracesExporter, varEndpoint, varTracesEndpoint, varProtocol, varTracesProtocol,
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}

func setenv(t *testing.T, kv ...string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// collector is an OTLP endpoint that keeps what it is sent.
type collector struct {
	mu       sync.Mutex
	requests int
	spans    map[string]string // span name -> service.name of its resource
}

func (c *collector) add(req *collectortrace.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans[s.GetName()] = service
			}
		}
	}
}

func (c *collector) got() (int, map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.spans {
		out[k] = v
	}
	return c.requests, out
}

// httpCollector serves OTLP over HTTP (protobuf) at its URL.
func httpCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{spans: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			t.Errorf("OTLP request %s %s, want POST /v1/traces", r.Method, r.URL.Path)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("OTLP body: %v", err)
		}
		c.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ = proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

type grpcTraces struct {
	collectortrace.UnimplementedTraceServiceServer
	c *collector
}

func (g *grpcTraces) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.c.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// grpcCollector serves OTLP over gRPC at its address.
func grpcCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{spans: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, &grpcTraces{c: c})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return c, "http://" + ln.Addr().String()
}

// emit makes one span named name through p and flushes p.
func emit(t *testing.T, p *Provider, name string) {
	t.Helper()
	_, span := p.Tracer("test").Start(context.Background(), name)
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// With no OTEL_* variable set, tracing is off: spans record nothing, carry
// no trace id, and no trace context goes into a task.
func TestOffWhenUnset(t *testing.T) {
	setenv(t)
	p, err := Setup(context.Background(), "ghlsync-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() {
		t.Fatal("tracing is on with no OTEL_* variable set")
	}
	ctx, span := p.Tracer("test").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("a span of the off provider records (%v) or has ids (%v)", span.IsRecording(), span.SpanContext())
	}
	span.End()
	task := newTestTask(t)
	if _, err := Enqueue(p, &captureEnqueuer{}).EnqueueContext(ctx, task); err != nil {
		t.Fatal(err)
	}
	if len(task.Headers()) != 0 {
		t.Errorf("the task got headers %v with tracing off", task.Headers())
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of the off provider: %v", err)
	}
}

// OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn tracing off even
// with an endpoint configured: the endpoint is never called.
func TestOffWhenDisabled(t *testing.T) {
	for _, kv := range [][]string{{varSDKDisabled, "true"}, {varSDKDisabled, "TRUE"}, {varTracesExporter, "none"}} {
		t.Run(kv[0]+"="+kv[1], func(t *testing.T) {
			c, url := httpCollector(t)
			setenv(t, varEndpoint, url, kv[0], kv[1])
			p, err := Setup(context.Background(), "ghlsync-test", nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Enabled() {
				t.Fatal("tracing is on")
			}
			emit(t, p, "never sent")
			if n, _ := c.got(); n != 0 {
				t.Errorf("the endpoint got %d requests", n)
			}
		})
	}
}

// An OTLP endpoint turns tracing on over http/protobuf by default, or
// gRPC when the protocol says so; spans reach it on Shutdown, under the
// process's service name unless OTEL_SERVICE_NAME names another.
func TestExportsOverOTLP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		collector func(*testing.T) (*collector, string)
		env       func(url string) []string
		service   string
	}{
		{"http endpoint", httpCollector, func(u string) []string { return []string{varEndpoint, u} }, "ghlsync-test"},
		{"http traces endpoint", httpCollector, func(u string) []string { return []string{varTracesEndpoint, u + "/v1/traces"} }, "ghlsync-test"},
		{"otlp exporter, service name", httpCollector, func(u string) []string {
			return []string{varTracesExporter, "otlp", varEndpoint, u, "OTEL_SERVICE_NAME", "clinic-sync"}
		}, "clinic-sync"},
		{"grpc", grpcCollector, func(u string) []string {
			return []string{varEndpoint, u, varProtocol, "grpc", "OTEL_EXPORTER_OTLP_INSECURE", "true"}
		}, "ghlsync-test"},
		{"grpc for traces only", grpcCollector, func(u string) []string {
			return []string{varEndpoint, u, varProtocol, "http/protobuf", varTracesProtocol, "grpc", "OTEL_EXPORTER_OTLP_INSECURE", "true"}
		}, "ghlsync-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, url := tc.collector(t)
			setenv(t, tc.env(url)...)
			p, err := Setup(context.Background(), "ghlsync-test", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Enabled() {
				t.Fatal("tracing is off")
			}
			emit(t, p, "exported")
			if _, spans := c.got(); spans["exported"] != tc.service {
				t.Errorf("the collector got %v, want span exported of service %s", spans, tc.service)
			}
		})
	}
}

// A value ghlsync cannot honour stops the process with the variable's name.
func TestSetupRefusesWhatItCannotHonour(t *testing.T) {
	for _, tc := range []struct{ env []string }{
		{[]string{varTracesExporter, "zipkin"}},
		{[]string{varEndpoint, "http://127.0.0.1:1", varProtocol, "http/json"}},
		{[]string{varEndpoint, "http://127.0.0.1:1", varTracesProtocol, "thrift"}},
	} {
		t.Run(tc.env[len(tc.env)-2]+"="+tc.env[len(tc.env)-1], func(t *testing.T) {
			setenv(t, tc.env...)
			_, err := Setup(context.Background(), "ghlsync-test", nil)
			var cerr *config.Error
			if !errors.As(err, &cerr) || cerr.Var != tc.env[len(tc.env)-2] {
				t.Errorf("Setup: %v, want a config error naming %s", err, tc.env[len(tc.env)-2])
			}
		})
	}
}
