// Package tasks is ghlsync's asynq contract: task type names, payloads,
// NewXxxTask constructors, thin handlers over the engines (refresh, syncer),
// fan-out to a task per location (or per batch of locations' refreshes),
// the retry policy (RetryDelay, IsFailure) and waiting for a task's result
// (Wait, WaitFanOut).
//
// Task type strings are stable: a worker of a newer release must still run
// the tasks that an older one enqueued, so never rename one after release.
package tasks

// Task types.
const (
	// TypeTokenRefresh refreshes the OAuth token of one location.
	TypeTokenRefresh = "ghl:token:refresh"
	// TypeTokenRefreshBatch refreshes the OAuth tokens of a few
	// locations, one after another: the schedule's fan-out enqueues its
	// refreshes so, a task per RefreshBatch locations.
	TypeTokenRefreshBatch = "ghl:token:refresh-batch"
	// TypeTokenRefreshDue enqueues a TypeTokenRefresh for every location
	// whose token expires within the refresh window.
	TypeTokenRefreshDue = "ghl:token:refresh-due"
	// TypePatientsSync pushes changed patients into GHL as contacts.
	TypePatientsSync = "ghl:patients:sync"
	// TypeAppointmentsSync pushes changed appointments into GHL.
	TypeAppointmentsSync = "ghl:appointments:sync"
	// TypeAlertsEvaluate evaluates the alert conditions and delivers the
	// alerts that are due.
	TypeAlertsEvaluate = "ghl:alerts:evaluate"
)

// Queues. Token work has a queue, and worker slots, of its own so that sync
// work can never starve it.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
)
