package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// Each write is a client span under its caller's, naming the operation,
// the table and the statement with its placeholders: not the tokens
// written, sealed or not. Reads make no span.
func TestWriteSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	st, _ := storetest.Open(t, "", store.WithTracer(tp))
	exp.Reset() // the migration's statements

	const access, refresh = "at-trace-access-0123456789", "rt-trace-refresh-0123456789"
	ctx, parent := tp.Tracer("test").Start(context.Background(), "callback")
	err := st.Connect(ctx, store.Connection{LocationID: "loc-t1", CompanyID: "comp1", UserType: store.UserTypeLocation,
		Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: time.Now().Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Credential(ctx, "loc-t1")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetStatus(ctx, "loc-t1", store.StatusNeedsReauth, "test"); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var writes []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Name() != "callback" {
			writes = append(writes, s)
		}
	}
	if len(writes) < 2 {
		t.Fatalf("%d write spans, want the connect's and the status's at least", len(writes))
	}
	var sawInsert, sawUpdate bool
	for _, s := range writes {
		attrs := map[attribute.Key]attribute.Value{}
		text := s.Name()
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
			text += " " + kv.Value.Emit()
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %q is not a client span under its caller's", s.Name())
		}
		op, table := attrs["db.operation.name"].AsString(), attrs["db.collection.name"].AsString()
		if s.Name() != op+" "+table || attrs["db.query.text"].AsString() == "" {
			t.Errorf("span %q: operation %q, table %q, query %q", s.Name(), op, table, attrs["db.query.text"].AsString())
		}
		sawInsert = sawInsert || op == "INSERT" && table == "credentials"
		sawUpdate = sawUpdate || op == "UPDATE" && table == "credentials" && attrs["db.response.rows_affected"].AsInt64() == 1
		for _, secret := range []string{access, refresh, c.AccessTokenEnc, c.RefreshTokenEnc} {
			if secret != "" && strings.Contains(text, secret) {
				t.Errorf("span %q holds a token: %s", s.Name(), text)
			}
		}
	}
	if !sawInsert || !sawUpdate {
		t.Errorf("spans %v: want an INSERT and an UPDATE (1 row) of credentials", names(writes))
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
