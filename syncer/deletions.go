package syncer

import (
	"context"
	"fmt"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// Deletions. The first run of a pass compares ghlsync's sync state with
// the source table: a record GHL holds whose row has deleted_at set, or is
// gone from the table, is a deletion. Before anything is sent, the run
// acts on each, by the location's settings: a patient's contact is tagged
// store.DeletedTag with DND turned on (tag_dnd, the default), deleted
// (delete) or left alone (none); an appointment is cancelled in GHL. A
// record GHL no longer has counts as acted on. Once acted on, the
// record's sync state is forgotten, so it is acted on once and a row that
// comes back is pushed as new.
//
// The cap: a pass that finds more deletions than the location's
// DeletionLimit acts on none and sends nothing, and its result says why
// (OutcomeDeletionCapped), so that a truncated or half-loaded table never
// wipes a CRM.

// deletionCapError: the pass found more deletions than the cap allows.
type deletionCapError struct {
	kind      string
	limit     int
	records   int
	configure bool // the cap is the default one
}

func (e *deletionCapError) Error() string {
	how := fmt.Sprintf("the location's deletion_cap setting is %d", e.limit)
	if e.configure {
		how = fmt.Sprintf("the cap is 5%% of the %d %s in GHL or %d, whichever is larger; "+
			"set deletion_cap in location_settings to allow more", e.records, e.kind, store.DefaultDeletionCap)
	}
	return fmt.Sprintf("deletions refused: more than %d %s are deleted in the clinic's table, more than one pass may act on (%s); "+
		"nothing was changed in GHL: check that the table is whole", e.limit, e.kind, how)
}

// deletions acts on the run's deletions, or stops the run.
func (r *run) deletions(ctx context.Context) {
	ls, err := r.e.State.Settings(ctx, r.loc)
	if err != nil {
		r.stop(err)
		return
	}
	list, listSince := r.e.State.DeletedPatients, r.e.State.DeletedPatientsSince
	if r.kind.name == KindAppointments {
		list, listSince = r.e.State.DeletedAppointments, r.e.State.DeletedAppointmentsSince
	}
	if r.since != nil {
		// An incremental pass sees the rows deleted by deleted_at since
		// it changed updated_at; only a full pass sees the rows gone.
		since := *r.since
		list = func(ctx context.Context, loc string, limit int) ([]store.Deletion, error) {
			return listSince(ctx, loc, since, limit)
		}
	}
	// One more than the cap is enough to know the cap is passed. The cap
	// is never under DefaultDeletionCap, so the records GHL holds are
	// counted only when more deletions than that are found.
	limit, records := ls.DeletionCap, 0
	if limit <= 0 {
		limit = store.DefaultDeletionCap
	}
	found, err := list(ctx, r.loc, limit+1)
	if err == nil && ls.DeletionCap <= 0 && len(found) > limit {
		var patients, appointments int
		patients, appointments, err = r.e.State.SyncedCounts(ctx, r.loc)
		records = patients
		if r.kind.name == KindAppointments {
			records = appointments
		}
		if limit = ls.DeletionLimit(records); err == nil && limit > store.DefaultDeletionCap {
			found, err = list(ctx, r.loc, limit+1)
		}
	}
	if err != nil {
		r.stop(err)
		return
	}
	if len(found) > limit {
		r.stop(&deletionCapError{kind: r.kind.name, limit: limit,
			records: records, configure: ls.DeletionCap == 0})
		return
	}
	if r.dryRun {
		r.mu.Lock()
		r.n.deleted += len(found)
		r.mu.Unlock()
		return
	}
	for _, d := range found {
		if r.stopping() || r.e.shuttingDown() {
			return
		}
		err := r.actOnDeletion(ctx, ls, d)
		if refused, _ := classify(ctx, err); err != nil && refused {
			// GHL refused this one: reported, and tried again next pass.
			r.mu.Lock()
			r.failLocked(d.ExternalID, "deleting it in GHL: "+reason(err))
			r.mu.Unlock()
			continue
		}
		if err != nil {
			r.stop(err)
			return
		}
		r.mu.Lock()
		r.n.deleted++
		r.mu.Unlock()
	}
}

// actOnDeletion acts on one deletion in GHL and forgets its sync state.
func (r *run) actOnDeletion(ctx context.Context, ls store.LocationSettings, d store.Deletion) error {
	action := ls.Deletion()
	var err error
	switch {
	case r.kind.name == KindAppointments:
		cancel := &ghl.Appointment{AppointmentStatus: ghl.AppointmentStatusCancelled}
		if !ls.Notify {
			// As every write: no confirmation or cancellation message
			// unless the location wants GHL's automations.
			cancel.ToNotify = ptr(false)
		}
		err = r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Calendars.UpdateAppointment(ctx, token, d.GHLID, cancel)
			return resp, err
		})
	case action == store.DeletionTagDND:
		err = r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Contacts.AddTags(ctx, token, d.GHLID, []string{store.DeletedTag})
			return resp, err
		})
		if err == nil {
			err = r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
				return r.e.Contacts.SetDND(ctx, token, d.GHLID, true)
			})
		}
	case action == store.DeletionDelete:
		err = r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			return r.e.Contacts.Delete(ctx, token, d.GHLID)
		})
	}
	if err != nil && !ghl.IsNotFound(err) {
		// Gone from GHL already is as good as done.
		return err
	}
	forget := r.e.State.ForgetPatientSync
	if r.kind.name == KindAppointments {
		forget = r.e.State.ForgetAppointmentSync
	}
	return r.persist(ctx, func(ctx context.Context) error { return forget(ctx, r.loc, d.ExternalID) })
}
