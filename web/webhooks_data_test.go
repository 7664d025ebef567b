package web_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/web"
)

// A contact webhook is recorded before it is answered, once however often
// it comes; refusals record nothing; a failed enqueue still answers 200
// (the event is safe, the sweep takes it up).
func TestDataWebhookIsRecordedOnce(t *testing.T) {
	t.Parallel()
	var enqueued []int64
	var fail atomic.Bool
	b := setupWebhooks(t, func(s *web.Server) {
		s.Webhooks.Events = s.Webhooks.Store.(web.EventRecorder)
		s.Webhooks.Process = func(_ context.Context, id int64) error {
			if fail.Load() {
				return errors.New("redis: connection refused")
			}
			enqueued = append(enqueued, id)
			return nil
		}
	})
	ctx := context.Background()
	pending := func() int {
		evs, err := b.stack.Store.UnprocessedWebhookEvents(ctx, time.Now().Add(time.Hour), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	body := event("ContactUpdate", map[string]any{"locationId": "loc1", "id": "c1", "firstName": "Ann"})
	for i, want := range []string{"ok", "already received", "already received"} {
		rec := b.send(t, body)
		if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
			t.Fatalf("post %d: %d %q, want 200 %q", i+1, rec.Code, rec.Body, want)
		}
	}
	if len(enqueued) != 1 || pending() != 1 {
		t.Fatalf("enqueued %v, %d recorded; want one of each", enqueued, pending())
	}
	ev, err := b.stack.Store.WebhookEventByID(ctx, enqueued[0])
	if err != nil || ev.Type != "ContactUpdate" || ev.LocationID != "loc1" || ev.Payload != string(body) || ev.OccurredAt == nil {
		t.Fatalf("recorded %+v, %v", ev, err)
	}

	stale := event("ContactUpdate", map[string]any{"locationId": "loc1", "id": "c1", "timestamp": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)})
	noLoc := event("AppointmentCreate", map[string]any{"appointment": map[string]any{"id": "e1"}})
	for _, c := range []struct {
		code int
		rec  func() int
	}{
		{http.StatusUnauthorized, func() int { return b.post(t, body, map[string]string{"x-ghl-signature": b.sign([]byte("other"))}).Code }},
		{http.StatusBadRequest, func() int { return b.send(t, stale).Code }},
		{http.StatusBadRequest, func() int { return b.send(t, noLoc).Code }},
	} {
		if got := c.rec(); got != c.code {
			t.Errorf("answer %d, want %d", got, c.code)
		}
	}
	if pending() != 1 {
		t.Fatalf("%d events recorded after the refusals, want 1", pending())
	}

	fail.Store(true)
	if rec := b.send(t, event("ContactDelete", map[string]any{"locationId": "loc1", "id": "c2"})); rec.Code != http.StatusOK {
		t.Fatalf("with the enqueue failing: %d %s", rec.Code, rec.Body)
	}
	if pending() != 2 || !strings.Contains(b.logs.String(), "the worker's sweep takes it up") {
		t.Fatalf("%d recorded; log:\n%s", pending(), b.logs)
	}
}
