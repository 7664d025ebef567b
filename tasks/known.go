package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// TypeInfo describes a task type that a worker handles.
type TypeInfo struct {
	// Type is the asynq task type, such as TypePatientsSync.
	Type string
	// Queue is the queue its tasks are enqueued on.
	Queue string
	// About says what a task of the type does, for the command line.
	About string

	// check refuses a payload that the handler would not run as its
	// sender meant; nil accepts none but the empty one.
	check func(payload []byte) error
	// handler is the type's handler among the sets NewMux routes.
	handler func(handlerSets) asynq.HandlerFunc
}

// types is the one list of task types: NewMux routes these and no other,
// and a schedule may name only these.
var types = []TypeInfo{
	{
		Type: TypeTokenRefresh, Queue: QueueCritical,
		About: `refresh one location's token; payload {"location_id":…,"force":true}`,
		check: func(p []byte) error {
			var v RefreshPayload
			if err := decodeStrict(p, &v); err != nil {
				return err
			}
			if v.LocationID == "" {
				return fmt.Errorf(`needs {"location_id":…}`)
			}
			return checkLocationID(v.LocationID)
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.tokens.HandleRefresh },
	},
	{
		Type: TypeTokenRefreshBatch, Queue: QueueCritical,
		About: `refresh a few locations' tokens, one after another (the schedule's fan-out enqueues these); payload {"location_ids":[…],"force":true}`,
		check: func(p []byte) error {
			var v RefreshBatchPayload
			if err := decodeStrict(p, &v); err != nil {
				return err
			}
			return v.check()
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.tokens.HandleRefreshBatch },
	},
	{
		Type: TypeTokenRefreshDue, Queue: QueueCritical,
		About: `refresh every token that expires within REFRESH_WINDOW; payload none, or {"all":true,"force":true}; "keep_seconds":N lists the tasks it enqueues in its result and keeps them N seconds`,
		check: func(p []byte) error {
			var v RefreshDuePayload
			return decodeStrict(p, &v)
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.tokens.HandleRefreshDue },
	},
	{
		Type: TypePatientsSync, Queue: QueueDefault,
		About:   `sync changed patients of every active location; payload none, or {"location_id":…} for one; "full":true reads every row, "since":"RFC 3339 time" only those changed since, "force":true sends every record again, "dry_run":true sends nothing and counts`,
		check:   checkSyncPayload,
		handler: func(h handlerSets) asynq.HandlerFunc { return h.syncs.HandlePatientsSync },
	},
	{
		Type: TypeAppointmentsSync, Queue: QueueDefault,
		About:   `sync changed appointments of every active location; payload none, or {"location_id":…} for one; "full":true reads every row, "since":"RFC 3339 time" only those changed since, "force":true sends every record again, "dry_run":true sends nothing and counts`,
		check:   checkSyncPayload,
		handler: func(h handlerSets) asynq.HandlerFunc { return h.syncs.HandleAppointmentsSync },
	},
	{
		Type: TypeAlertsEvaluate, Queue: QueueCritical,
		About: `evaluate the alert conditions and deliver what is due; payload none`,
		check: func(p []byte) error {
			var v AlertsPayload
			return decodeStrict(p, &v)
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.alerts.HandleEvaluate },
	},
	{
		Type: TypeWebhookProcess, Queue: QueueDefault,
		About: `process one recorded GHL webhook into the inbox (ghl_changes); payload {"event_id":…}`,
		check: func(p []byte) error {
			var v WebhookPayload
			if err := decodeStrict(p, &v); err != nil {
				return err
			}
			if v.EventID <= 0 {
				return fmt.Errorf(`needs {"event_id":…}`)
			}
			return nil
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.inbound.HandleWebhookProcess },
	},
	{
		Type: TypeReconcile, Queue: QueueDefault,
		About: `reconcile the contacts in GHL with the sync state (missing sent again, duplicates and changes no webhook delivered into the inbox); payload none, or {"location_id":…}`,
		check: func(p []byte) error {
			var v ReconcilePayload
			if err := decodeStrict(p, &v); err != nil {
				return err
			}
			if v.LocationID != "" {
				return checkLocationID(v.LocationID)
			}
			return nil
		},
		handler: func(h handlerSets) asynq.HandlerFunc { return h.inbound.HandleReconcile },
	},
}

// handlerSets are the handlers NewMux routes to.
type handlerSets struct {
	tokens *TokenHandlers
	syncs  *SyncHandlers
	alerts *AlertHandlers
	// inbound is nil for a mux built without InboundHandlers.
	inbound *InboundHandlers
}

// Types lists every task type a worker handles, in a copy.
func Types() []TypeInfo { return append([]TypeInfo(nil), types...) }

// Lookup returns the task type called name; ok is false when no handler
// knows it.
func Lookup(name string) (info TypeInfo, ok bool) {
	for _, t := range types {
		if t.Type == name {
			return t, true
		}
	}
	return TypeInfo{}, false
}

// CheckPayload refuses a payload that a task of the type, put on a
// schedule, would not run as meant: one that is not JSON, names a field
// the type does not have (a typo such as "locaton_id" would otherwise turn
// a one-location sync into one of every location), or names no valid
// location where one is needed. Empty means none.
func (t TypeInfo) CheckPayload(payload []byte) error {
	if err := t.check(payload); err != nil {
		return fmt.Errorf("payload of %s: %w", t.Type, err)
	}
	return nil
}

// checkSyncPayload accepts what an operator may ask of a sync: nothing
// (every active location) or one location, force (send every record
// again), dry_run (count, send nothing), full (read every row) and since
// (read the rows changed at or after an RFC 3339 time). The rest of SyncPayload is a pass's own bookkeeping.
func checkSyncPayload(p []byte) error {
	var v struct {
		LocationID string     `json:"location_id"`
		Force      bool       `json:"force"`
		DryRun     bool       `json:"dry_run"`
		Full       bool       `json:"full"`
		Since      *time.Time `json:"since"`
		Keep       int64      `json:"keep_seconds"`
	}
	if err := decodeStrict(p, &v); err != nil {
		return err
	}
	if v.LocationID != "" {
		return checkLocationID(v.LocationID)
	}
	return nil
}

// decodeStrict decodes the JSON object p into v, refusing unknown fields
// and anything after the object; empty p leaves v as it is.
func decodeStrict(p []byte, v any) error {
	if len(bytes.TrimSpace(p)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a JSON object this task takes: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("not one JSON object: more follows it")
	}
	return nil
}

// IsFanOut reports whether a task of taskType with payload enqueues one
// task per location (and its result is a FanOutResult) rather than doing
// the work itself.
func IsFanOut(taskType string, payload []byte) bool {
	switch taskType {
	case TypeTokenRefreshDue:
		return true
	case TypePatientsSync, TypeAppointmentsSync:
		var p SyncPayload
		return json.Unmarshal(payload, &p) != nil || p.LocationID == ""
	case TypeReconcile:
		var p ReconcilePayload
		return json.Unmarshal(payload, &p) != nil || p.LocationID == ""
	}
	return false
}
