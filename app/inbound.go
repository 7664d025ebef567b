package app

import (
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// InboundHandlers are the handlers of the inbound tasks (GHL's webhooks
// into the inbox), making their GHL calls as syncs does.
func (d *Deps) InboundHandlers(syncs *tasks.SyncHandlers) *tasks.InboundHandlers {
	return &tasks.InboundHandlers{
		Inbound:    &syncer.Inbound{Store: d.Store, Engine: &syncs.Engine, Contacts: d.GHL.Contacts},
		Reconciles: d.Store,
		Pager:      d.GHL.Contacts,
		Locations:  d.Store,
		Enqueuer:   syncs.Enqueuer,
		Log:        d.Log,
	}
}
