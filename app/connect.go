package app

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// firstSync stores the web's connections (the OAuth callback, GHL's
// INSTALL webhook, and those the worker completes from Redis): a location
// connected has its patients and appointments synced at once rather than
// at the next run of the hourly schedules, in tasks that carry on the
// trace of the request that connected it.
type firstSync struct {
	web.Connector
	enq tasks.Enqueuer
	log *slog.Logger
}

// connector is d's store as the web's Connector, enqueueing a location's
// first sync through enq.
func (d *Deps) connector(enq tasks.Enqueuer) web.Connector {
	return &firstSync{Connector: d.Store, enq: enq, log: d.Log}
}

// Connect stores c and, for a location, enqueues its syncs. A failed
// enqueue is logged, not returned: the connection is stored, and the
// schedules sync the location anyway.
func (f *firstSync) Connect(ctx context.Context, c store.Connection) error {
	if err := f.Connector.Connect(ctx, c); err != nil {
		return err
	}
	if c.UserType != store.UserTypeLocation {
		return nil
	}
	for _, newTask := range []func(string) (*asynq.Task, error){tasks.NewPatientsSyncTask, tasks.NewAppointmentsSyncTask} {
		task, err := newTask(c.LocationID)
		if err == nil {
			_, err = f.enq.EnqueueContext(ctx, task)
		}
		if err != nil {
			f.log.Warn("the first sync of a connected location was not enqueued; the schedules sync it", "location", c.LocationID, "err", err)
		}
	}
	return nil
}
