package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// EventRecorder records GHL's data webhooks durably; *store.Store is one.
type EventRecorder interface {
	RecordWebhookEvent(ctx context.Context, ev *store.WebhookEvent) (fresh bool, err error)
}

// enqueueTimeout bounds the enqueue of a recorded event: an enqueue takes
// a millisecond, and one that cannot be made in time is left to the sweep
// rather than holding GHL's request.
const enqueueTimeout = 500 * time.Millisecond

// isDataEvent reports whether typ is one of the contact and appointment
// webhooks ghlsync takes into the inbox.
func isDataEvent(typ string) bool { return slices.Contains(syncer.DataEvents, typ) }

// dataWebhook takes a contact or appointment webhook whose signature,
// app and fields checked out (webhook): it records the event in the database, then enqueues its
// processing, and answers. Nothing else is done on the request, so the
// answer takes milliseconds and a burst loses nothing: once the row is
// written the event is safe, whatever becomes of the enqueue (the
// worker's sweep takes up an event no task processed). A webhook GHL
// delivers twice (its retry of an answer it did not get) is recorded once
// and answered 200, so GHL stops retrying.
func (s *Server) dataWebhook(w http.ResponseWriter, r *http.Request, ev *appEvent, body []byte) {
	wh := &s.Webhooks
	if ev.LocationID == "" {
		http.Error(w, "locationId is missing", http.StatusBadRequest)
		return
	}
	ts, err := parseTimestamp(ev.Timestamp)
	if err != nil {
		http.Error(w, "timestamp is not an ISO 8601 time", http.StatusBadRequest)
		return
	}
	if d := clock.Since(wh.Clock, ts); d > webhookTolerance || d < -webhookTolerance {
		s.Log.Warn("webhook refused: stale timestamp", "type", ev.Type, "webhook_id", ev.WebhookID, "timestamp", ts)
		http.Error(w, "timestamp is more than 5 minutes from now", http.StatusBadRequest)
		return
	}
	occurred := ts.UTC()
	rec := &store.WebhookEvent{WebhookID: ev.WebhookID, Type: ev.Type, LocationID: ev.LocationID,
		Payload: string(body), OccurredAt: &occurred, ReceivedAt: clock.Or(wh.Clock).Now().UTC()}
	if !json.Valid(body) {
		http.Error(w, "body is not a JSON webhook", http.StatusBadRequest)
		return
	}
	fresh, err := wh.Events.RecordWebhookEvent(r.Context(), rec)
	if err != nil {
		s.Log.Error("webhook: recording it", "type", ev.Type, "webhook_id", ev.WebhookID, "err", err)
		http.Error(w, "cannot take webhooks now; try again", http.StatusServiceUnavailable)
		return
	}
	if !fresh {
		io.WriteString(w, "already received\n")
		return
	}
	if wh.Process != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), enqueueTimeout)
		if err := wh.Process(ctx, rec.ID); err != nil {
			s.Log.Warn("webhook recorded, but its processing could not be enqueued; the worker's sweep takes it up",
				"type", ev.Type, "webhook_id", ev.WebhookID, "event", rec.ID, "err", err)
		}
		cancel()
	}
	io.WriteString(w, "ok\n")
}
