package syncer

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/ghlsync/ghlsync/store"
)

// Conflicts: a contact that staff changed in GHL (its webhooks showed a
// value other than the one ghlsync last sent) and that the clinic changed
// too (the sync is about to send it) is a conflict, settled by the
// location's conflict_policy: clinic overwrites GHL and records what it
// overwrote in the inbox; report leaves GHL's values, records the conflict
// in the inbox and fails the record with why, until it changes again.

// conflictStore is what conflicts need of the state; *store.Store is one.
// A State that is not one (a test's) sees no conflicts.
type conflictStore interface {
	Sent(ctx context.Context, loc, kind, externalID string) (store.FieldHashes, error)
	Seen(ctx context.Context, loc, kind, ghlID string) (store.FieldHashes, error)
	LatestChangeValues(ctx context.Context, loc, ghlID string, fields []string) (map[string]any, error)
	AddChange(ctx context.Context, c *store.Change) (bool, error)
}

// settleConflict checks the patient's contact for changes made in GHL
// that sending fields would overwrite, and applies the location's policy;
// an error from it refuses the record (report).
func (r *run) settleConflict(ctx context.Context, externalID, contactID, hash string, fields map[string]string) error {
	cs, ok := r.e.State.(conflictStore)
	if !ok || r.dryRun || contactID == "" {
		return nil
	}
	seen, err := cs.Seen(ctx, r.loc, store.RecordContact, contactID)
	if err != nil || len(seen) == 0 {
		return err
	}
	sent, err := cs.Sent(ctx, r.loc, store.RecordContact, externalID)
	if err != nil {
		return err
	}
	var changed []string
	for f, v := range fields {
		if h := seen[f]; h != "" && h != sent[f] && h != hashField(f, v) {
			changed = append(changed, f)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	slices.Sort(changed)
	values, err := cs.LatestChangeValues(ctx, r.loc, contactID, changed)
	if err != nil {
		return err
	}
	// A field ghlsync never sent (DND it never turned on) shows GHL's
	// default in the webhooks until staff change it, and a staff change
	// is in the inbox: without one there, what the webhooks showed is the
	// default, not staff's.
	changed = slices.DeleteFunc(changed, func(f string) bool {
		_, staff := values[f]
		return sent[f] == "" && !staff
	})
	if len(changed) == 0 {
		return nil
	}
	ls, err := r.locationSettings(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(values)
	if err != nil {
		return err
	}
	c := &store.Change{LocationID: r.loc, GHLID: contactID, ExternalID: externalID, Changes: string(b)}
	policy := ls.Conflicts()
	if policy == store.ConflictReport {
		c.Kind, c.EventID = store.ChangeContactConflict, "conflict:"+r.loc+":"+contactID+":"+hash
	} else {
		c.Kind, c.EventID = store.ChangeContactOverwritten, "overwritten:"+r.loc+":"+contactID+":"+hash
	}
	if _, err := cs.AddChange(ctx, c); err != nil {
		return err
	}
	if policy == store.ConflictReport {
		return refusedf("conflict: %s changed in GHL and the patient changed in the clinic since the last sync; "+
			"conflict_policy is report, so GHL's values stay (see the inbox, ghl_changes); change the patient "+
			"in the clinic to send it again, or set conflict_policy clinic", strings.Join(changed, ", "))
	}
	r.e.log().Info("a sync overwrites values staff changed in GHL; the inbox has them",
		"location", r.loc, "patient", externalID, "contact", contactID, "fields", changed)
	return nil
}
