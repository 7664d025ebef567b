package app

import "github.com/ghlsync/ghlsync/tasks"

// SyncHandlers builds the patient and appointment sync handlers on d: every
// GHL call through d.Limiter, a 401 through refresher.
func (d *Deps) SyncHandlers(refresher tasks.Refresher, enq tasks.Enqueuer) *tasks.SyncHandlers {
	return &tasks.SyncHandlers{
		Credentials: d.Store,
		State:       d.Store,
		Refresher:   refresher,
		Contacts:    d.GHL.Contacts,
		Calendars:   d.GHL.Calendars,
		Limiter:     d.Limiter,
		Locks:       &tasks.RedisLocks{Redis: d.Redis},
		Enqueuer:    enq,
		Observe: func(kind, outcome string, n int) {
			d.Metrics.SyncRecords.WithLabelValues(kind, outcome).Add(float64(n))
		},
		Log: d.Log,
		Now: d.Now,
	}
}
