package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// traceStack is a web handler and a worker in this process on one stack,
// with a webhook key, tracing through tp (nil: the OTEL_* variables).
type traceStack struct {
	stack *storetest.Stack
	deps  *app.Deps
	web   http.Handler
	key   ed25519.PrivateKey
}

func setupTraced(t *testing.T, tp trace.TracerProvider) *traceStack {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stack := storetest.NewStack(t, ghltest.Options{})
	cfg, err := config.NewLoader(flag.NewFlagSet("worker", flag.ContinueOnError), testenv.Getenv(stack.Env(
		config.VarWebPublicURL, publicURL, config.VarWebhookKey, base64.StdEncoding.EncodeToString(pub))), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	var opts []app.OpenOption
	if tp != nil {
		opts = append(opts, app.WithTracerProvider(tp))
	}
	logs := &testenv.Buffer{}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(logs, cfg.LogLevel), true, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return &traceStack{stack: stack, deps: d, web: app.WebHandler(d), key: priv}
}

// runWorker runs the worker until the test ends.
func (s *traceStack) runWorker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunWorker(ctx, s.deps, app.WorkerOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// install sends GHL's signed INSTALL webhook of loc, a location of
// agency, whose token ghlsync holds: the web mints loc's token and
// connects it. It returns the agency's tokens.
func (s *traceStack) install(t *testing.T, agency, loc string) (access, refresh string) {
	t.Helper()
	s.stack.Fake.AddCompany(agency)
	s.stack.Fake.AddLocation(loc, agency)
	access, refresh, exp := s.stack.Fake.IssueToken(agency)
	err := s.stack.Store.Connect(context.Background(), store.Connection{LocationID: agency, CompanyID: agency,
		UserType: store.UserTypeCompany, Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp}})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"type":"INSTALL","appId":%q,"installType":"Location","companyId":%q,"locationId":%q,"webhookId":"wh-%s","timestamp":%q}`,
		web.AppID(storetest.ClientID), agency, loc, loc, time.Now().UTC().Format(time.RFC3339))
	rec := request(s.web, http.MethodPost, "/api/webhooks/ghl", body,
		map[string]string{"x-ghl-signature": base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, []byte(body)))})
	if rec.Code != http.StatusOK {
		t.Fatalf("signed INSTALL: %d %s", rec.Code, rec.Body)
	}
	if !s.stack.HoldsCurrent(t, loc) {
		t.Fatalf("%s is not connected by its INSTALL", loc)
	}
	return access, refresh
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// spanText is everything a span says: its name, attributes, events,
// links, status and resource.
func spanText(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	b.WriteString(s.Name() + " " + s.Status().Description)
	kvs := append(s.Attributes(), s.Resource().Attributes()...)
	for _, e := range s.Events() {
		b.WriteString(" " + e.Name)
		kvs = append(kvs, e.Attributes...)
	}
	for _, l := range s.Links() {
		kvs = append(kvs, l.Attributes...)
	}
	for _, kv := range kvs {
		b.WriteString(" " + string(kv.Key) + "=" + kv.Value.Emit())
	}
	return b.String()
}

// fakeSecret is any token or code the fake GHL issues.
var fakeSecret = regexp.MustCompile(`(at|rt|code)-[0-9a-f]{32}`)

// Must-show 3: GHL's INSTALL webhook, the sync it enqueues for the
// location it connects, and that sync's GHL calls are one trace: the task
// span is the child of the enqueue span under the webhook's, and the GHL
// calls (with the rate limiter's wait) and database writes are under the
// task's. No span, attribute, event or status holds a token of the fake,
// the client secret or the token key.
func TestTraceFromWebhookToGHLCall(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	s := setupTraced(t, tp)
	const loc = "loc-traced"
	if err := s.stack.Store.InsertPatients(context.Background(), []store.Patient{
		{LocationID: loc, ExternalID: "p-1", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	s.runWorker(t)
	agencyAccess, agencyRefresh := s.install(t, "agency-traced", loc)

	// The patient reaches GHL through the task; its span ends right after.
	var task sdktrace.ReadOnlySpan
	testenv.Eventually(t, 30*time.Second, "the span of "+loc+"'s patient sync", func() bool {
		for _, sp := range exp.GetSpans().Snapshots() {
			if v, _ := attr(sp, "ghlsync.location_id"); sp.Name() == tasks.TypePatientsSync && v.AsString() == loc {
				task = sp
			}
		}
		return task != nil
	})
	if n := len(s.stack.Fake.Contacts(loc)); n != 1 {
		t.Fatalf("%d contacts in GHL, want the patient's", n)
	}

	spans := exp.GetSpans().Snapshots()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byID[sp.SpanContext().SpanID()] = sp
	}
	// under reports whether ancestor is sp or one of its ancestors.
	under := func(sp, ancestor sdktrace.ReadOnlySpan) bool {
		for ; sp != nil; sp = byID[sp.Parent().SpanID()] {
			if sp.SpanContext().SpanID() == ancestor.SpanContext().SpanID() {
				return true
			}
		}
		return false
	}
	var webhook sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Name() == web.WebhookRoute {
			webhook = sp
		}
	}
	if webhook == nil {
		t.Fatalf("no %q span among %d", web.WebhookRoute, len(spans))
	}
	if webhook.Parent().IsValid() || webhook.SpanKind() != trace.SpanKindServer {
		t.Error("the webhook's span is not a server span that starts its trace")
	}
	enqueue := byID[task.Parent().SpanID()]
	if enqueue == nil || enqueue.Name() != "enqueue "+tasks.TypePatientsSync || !under(enqueue, webhook) {
		t.Fatalf("the task span's parent is %v, want the enqueue span under the webhook's", enqueue)
	}
	if task.SpanContext().TraceID() != webhook.SpanContext().TraceID() {
		t.Fatal("the task is not in the webhook's trace")
	}

	var mint, contactCalls, waited, writes int
	for _, sp := range spans {
		endpoint, isCall := attr(sp, "ghl.endpoint")
		switch {
		case isCall && endpoint.AsString() == "oauth.locationToken" && under(sp, webhook) && !under(sp, task):
			mint++
		case isCall && strings.HasPrefix(endpoint.AsString(), "contacts.") && under(sp, task):
			if sp.SpanContext().TraceID() != webhook.SpanContext().TraceID() || sp.SpanKind() != trace.SpanKindClient {
				t.Errorf("GHL call %s is not a client span of the webhook's trace", sp.Name())
			}
			if _, ok := attr(sp, "http.response.status_code"); !ok {
				t.Errorf("GHL call %s has no status", sp.Name())
			}
			if _, ok := attr(sp, "ghl.rate_limit.wait"); ok {
				waited++
			}
			contactCalls++
		}
		if _, ok := attr(sp, "db.operation.name"); ok && under(sp, task) {
			writes++
		}
	}
	if mint != 1 || contactCalls == 0 || waited != contactCalls || writes == 0 {
		t.Errorf("spans: %d location-token mints under the webhook (want 1), %d contact calls under the task (want some), "+
			"%d of them with the rate limiter's wait (want all), %d database writes under the task (want some)", mint, contactCalls, waited, writes)
	}

	locToks, cred := s.stack.StoredTokens(t, loc)
	secrets := map[string]string{
		"agency access token": agencyAccess, "agency refresh token": agencyRefresh,
		"location access token": locToks.AccessToken, "location refresh token": locToks.RefreshToken,
		"sealed access token": cred.AccessTokenEnc, "sealed refresh token": cred.RefreshTokenEnc,
		"client secret": storetest.ClientSecret, "token key": s.stack.Key,
	}
	for _, sp := range spans {
		text := spanText(sp)
		for what, secret := range secrets {
			if secret == "" {
				t.Fatalf("the %s is empty", what)
			}
			if strings.Contains(text, secret) {
				t.Errorf("span %q holds the %s: %s", sp.Name(), what, text)
			}
		}
		if m := fakeSecret.FindString(text); m != "" {
			t.Errorf("span %q holds a token of the fake GHL (%s): %s", sp.Name(), m, text)
		}
	}
}

// With no OTEL_* variable set, a process has no tracer (its GHL client,
// store, routes and tasks trace nothing) and puts no trace context into
// the tasks it enqueues.
func TestTracingOffWhenUnset(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	s := setupTraced(t, nil)
	if s.deps.Tracer != nil {
		t.Fatal("the process has a tracer with no OTEL_* variable set")
	}
	const loc = "loc-untraced"
	s.install(t, "agency-untraced", loc)
	pending, err := asynq.NewInspectorFromRedisClient(s.deps.Redis).ListPendingTasks(tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) == 0 {
		t.Fatalf("the INSTALL of %s enqueued no first sync", loc)
	}
	for _, ti := range pending {
		if len(ti.Headers) != 0 {
			t.Errorf("task %s %s carries headers %v with tracing off", ti.Type, ti.ID, ti.Headers)
		}
	}
}
