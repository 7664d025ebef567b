package app

import (
	"time"

	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// SyncHandlers builds the patient and appointment sync handlers on d: every
// GHL call through d.Limiter, a 401 through refresher.
func (d *Deps) SyncHandlers(refresher refresh.Renewer, enq tasks.Enqueuer) *tasks.SyncHandlers {
	return &tasks.SyncHandlers{
		Engine: syncer.Engine{
			Credentials: d.Store,
			State:       d.Store,
			Refresher:   refresher,
			Contacts:    d.GHL.Contacts,
			Calendars:   d.GHL.Calendars,
			Users:       d.GHL.Users,
			Locations:   d.GHL.Locations,
			Limiter:     d.Limiter,
			Locks:       &syncer.Locks{Redis: d.Redis, Clock: d.Clock},
			Observe: func(kind, outcome string, n int) {
				d.Metrics.SyncRecords.WithLabelValues(kind, outcome).Add(float64(n))
			},
			ObserveRun: func(kind, outcome string) {
				d.Metrics.SyncRuns.WithLabelValues(kind, outcome).Inc()
			},
			Log:   d.Log,
			Clock: d.Clock,
			// Tests build Deps without a Config.
			Overlap: d.syncOverlap(),
		},
		Locations: d.Store,
		Enqueuer:  enq,
	}
}

// syncOverlap is the configured SYNC_OVERLAP, 0 (the engine's default)
// without a configuration.
func (d *Deps) syncOverlap() time.Duration {
	if d.Config == nil {
		return 0
	}
	return d.Config.SyncOverlap
}
