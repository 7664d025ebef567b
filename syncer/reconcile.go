package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// Reconciliation compares a location's contacts in GHL with ghlsync's
// sync state, and repairs what the two directions missed: a patient whose
// contact GHL no longer has is marked to be sent again (the next sync
// creates it), a second contact of one patient (both carry the patient's
// id in the ghlsync patient id field) is reported in the inbox with both
// ids, and a change that no webhook delivered lands in the inbox as a
// webhook would have put it. It reads GHL a page of 500 contacts at a
// time, through the location's limiter like every other call.

// ReconcileStore is what a reconciliation needs of the store beyond
// InboundStore; *store.Store is one.
type ReconcileStore interface {
	SyncedContacts(ctx context.Context, loc string) (map[string]string, error)
	AllSent(ctx context.Context, loc, kind string) (map[string]store.FieldHashes, error)
	AllSeen(ctx context.Context, loc, kind string) (map[string]store.FieldHashes, error)
	ResendPatients(ctx context.Context, loc string, externalIDs []string) error
	RecordWebhookEvent(ctx context.Context, ev *store.WebhookEvent) (bool, error)
	AddChange(ctx context.Context, c *store.Change) (bool, error)
	SaveReconcileRun(ctx context.Context, r *store.ReconcileRun) error
	SaveSeen(ctx context.Context, loc, kind, ghlID string, fields store.FieldHashes, at time.Time) error
	AppointmentWindow(ctx context.Context, loc string) (calendars []string, from, to time.Time, err error)
	SyncedEvents(ctx context.Context, loc string) (map[string]string, error)
	ResendAppointments(ctx context.Context, loc string, externalIDs []string) error
}

// ContactPager pages through a location's contacts;
// *ghl.ContactsService is one.
type ContactPager interface {
	SearchPage(ctx context.Context, accessToken, locationID string, page, limit int) (*ghl.ContactPage, *ghl.Response, error)
}

// Duplicate is a second GHL contact of one patient, or a second GHL
// appointment of one of the clinic's (Kind store.RecordAppointment; its
// ContactID is then the recorded event's id).
type Duplicate struct {
	Kind       string `json:"kind"`
	ExternalID string `json:"external_id"`
	ContactID  string `json:"contact_id,omitempty"`
	EventID    string `json:"event_id,omitempty"`
	Duplicate  string `json:"duplicate_id"`
}

// ReconcileResult is what a reconciliation found and did.
type ReconcileResult struct {
	Location string `json:"location"`
	Outcome  string `json:"outcome"`
	// Contacts is how many contacts GHL holds.
	Contacts int `json:"contacts"`
	// Missing lists (up to MaxFailedListed) the patients whose contact
	// is gone from GHL, marked to be sent again; MissingCount counts all.
	Missing      []string `json:"missing"`
	MissingCount int      `json:"missing_count"`
	// Duplicates lists the second contacts of patients; NewDuplicates
	// counts those not reported before.
	Duplicates    []Duplicate `json:"duplicates"`
	NewDuplicates int         `json:"new_duplicates"`
	// Changes counts the contacts' changes no webhook had delivered, now
	// in the inbox; AppointmentChanges the appointments'.
	Changes            int `json:"changes"`
	AppointmentChanges int `json:"appointment_changes"`
	// Events is how many events GHL's calendars hold in the span of the
	// location's appointments; MissingAppointments lists (up to
	// MaxFailedListed) the appointments whose event is gone, marked to be
	// sent again, MissingAppointmentsCount counts them all.
	Events                   int      `json:"events"`
	MissingAppointments      []string `json:"missing_appointments"`
	MissingAppointmentsCount int      `json:"missing_appointments_count"`
	// Calls is the GHL calls made.
	Calls     int       `json:"ghl_calls"`
	StartedAt time.Time `json:"started_at"`
	Duration  string    `json:"duration"`
	Message   string    `json:"message,omitempty"`
}

// Reconcile reconciles the location loc once; see the top of this file.
func (in *Inbound) Reconcile(ctx context.Context, rs ReconcileStore, pager ContactPager, loc string) (res ReconcileResult, err error) {
	e := in.Engine
	res = ReconcileResult{Location: loc, StartedAt: e.now().UTC(), Missing: []string{}, Duplicates: []Duplicate{},
		MissingAppointments: []string{}}
	logRun := &store.ReconcileRun{LocationID: loc, StartedAt: res.StartedAt}
	if err := rs.SaveReconcileRun(ctx, logRun); err != nil {
		return res, err
	}
	defer func() {
		res.Outcome = OutcomeCompleted
		if err != nil {
			res.Outcome, res.Message = OutcomeError, err.Error()
		}
		res.Duration = e.now().Sub(res.StartedAt).Round(time.Millisecond).String()
		now := e.now().UTC()
		logRun.FinishedAt, logRun.Outcome, logRun.Error = &now, res.Outcome, res.Message
		logRun.Contacts, logRun.Missing, logRun.Duplicates = res.Contacts, res.MissingCount+res.MissingAppointmentsCount, len(res.Duplicates)
		logRun.Changes, logRun.AppointmentChanges, logRun.Calls = res.Changes, res.AppointmentChanges, res.Calls
		if serr := rs.SaveReconcileRun(context.WithoutCancel(ctx), logRun); serr != nil && err == nil {
			err = serr
		}
	}()
	r := newRun(e, patientsKind, loc)
	if err := r.ghl.load(ctx); err != nil {
		return res, err
	}
	field, err := r.patientField(ctx)
	if err != nil {
		return res, err
	}
	res.Calls++
	synced, err := rs.SyncedContacts(ctx, loc)
	if err != nil {
		return res, err
	}
	sentAll, err := rs.AllSent(ctx, loc, store.RecordContact)
	if err != nil {
		return res, err
	}
	seenAll, err := rs.AllSeen(ctx, loc, store.RecordContact)
	if err != nil {
		return res, err
	}
	patientOf := make(map[string]string, len(synced))
	for ext, c := range synced {
		patientOf[c] = ext
	}
	inGHL := map[string]bool{}
	byPatient := map[string][]string{}
	var drifted []json.RawMessage
	// baselines are patients' contacts of which ghlsync knows nothing
	// field by field (synced before it kept fields): GHL's values are
	// taken as they are, not reported.
	baselines := map[string]store.FieldHashes{}
	for page := 1; ; page++ {
		var p *ghl.ContactPage
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
			p, resp, err = pager.SearchPage(ctx, token, loc, page, ghl.MaxSearchPage)
			return resp, err
		})
		res.Calls++
		if err != nil {
			return res, fmt.Errorf("reading page %d of the location's contacts: %w", page, err)
		}
		for i, raw := range p.Contacts {
			id := p.IDs[i]
			if inGHL[id] {
				continue
			}
			inGHL[id] = true
			var obj map[string]json.RawMessage
			if json.Unmarshal(raw, &obj) != nil {
				continue
			}
			text, _ := recordFields(store.RecordContact, obj)
			if ext := text[customFieldPrefix+field]; ext != "" {
				byPatient[ext] = append(byPatient[ext], id)
			}
			ext := patientOf[id]
			seen, known := seenAll[id]
			if ext == "" && !known {
				// Neither a patient's nor seen by a webhook: the CRM's own.
				continue
			}
			if !known && len(sentAll[ext]) == 0 {
				baselines[id] = hashFields(text)
				continue
			}
			if !known {
				seen = store.FieldHashes{}
			}
			if drift(text, seen, sentAll[ext]) {
				drifted = append(drifted, raw)
			}
		}
		if len(p.Contacts) < ghl.MaxSearchPage || p.Total > 0 && page*ghl.MaxSearchPage >= p.Total {
			break
		}
	}
	res.Contacts = len(inGHL)
	for id, h := range baselines {
		if err := rs.SaveSeen(ctx, loc, store.RecordContact, id, h, res.StartedAt); err != nil {
			return res, err
		}
	}

	var missing []string
	for ext, c := range synced {
		if !inGHL[c] {
			missing = append(missing, ext)
		}
	}
	slices.Sort(missing)
	res.MissingCount = len(missing)
	res.Missing = append(res.Missing, missing[:min(len(missing), MaxFailedListed)]...)
	if err := rs.ResendPatients(ctx, loc, missing); err != nil {
		return res, err
	}

	exts := make([]string, 0, len(byPatient))
	for ext, ids := range byPatient {
		if len(ids) > 1 {
			exts = append(exts, ext)
		}
	}
	slices.Sort(exts)
	for _, ext := range exts {
		ids := byPatient[ext]
		kept := synced[ext]
		if !slices.Contains(ids, kept) {
			kept = ids[0]
		}
		for _, other := range ids {
			if other == kept {
				continue
			}
			d := Duplicate{Kind: store.RecordContact, ExternalID: ext, ContactID: kept, Duplicate: other}
			res.Duplicates = append(res.Duplicates, d)
			b, _ := json.Marshal(d)
			fresh, err := rs.AddChange(ctx, &store.Change{EventID: "duplicate:" + loc + ":" + other, LocationID: loc,
				Kind: store.ChangeContactDuplicate, GHLID: other, ExternalID: ext, Changes: string(b)})
			if err != nil {
				return res, err
			}
			if fresh {
				res.NewDuplicates++
			}
		}
	}

	for _, raw := range drifted {
		n, err := in.landDrift(ctx, rs, loc, raw)
		if err != nil {
			return res, err
		}
		res.Changes += n
	}
	if err := in.reconcileEvents(ctx, rs, r, &res); err != nil {
		return res, err
	}
	e.log().Info("reconciled the location with GHL", "location", loc, "contacts", res.Contacts,
		"missing", res.MissingCount, "duplicates", len(res.Duplicates), "new_duplicates", res.NewDuplicates,
		"changes", res.Changes, "appointment_changes", res.AppointmentChanges, "ghl_calls", res.Calls)
	return res, nil
}

// drift reports whether a contact as GHL holds it differs from what its
// webhooks last showed (or, never shown, from what ghlsync sent) by more
// than ghlsync's own writes.
func drift(text map[string]string, seen, sent store.FieldHashes) bool {
	text = withoutManagedTags(text, sent)
	for f, v := range text {
		h := hashField(f, v)
		base := seen[f]
		if len(seen) == 0 {
			base = sent[f]
		}
		switch {
		case h == base, h == sent[f]:
		case base == "" && normField(f, v) == "":
		default:
			return true
		}
	}
	return false
}

// landDrift records a contact whose change no webhook delivered as the
// ContactUpdate GHL would have sent, and processes it; it returns 1 when
// that made an inbox row. The event's id is the contact's content, so a
// reconciliation run again records nothing twice.
func (in *Inbound) landDrift(ctx context.Context, rs ReconcileStore, loc string, raw json.RawMessage) (int, error) {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return 0, err
	}
	obj["type"], obj["locationId"] = EventContactUpdate, loc
	body, err := json.Marshal(obj)
	if err != nil {
		return 0, err
	}
	id, _ := obj["id"].(string)
	return in.landReconciled(ctx, rs, loc, id, EventContactUpdate, body)
}

// eventSpan is the longest span of time one calendar events call reads.
const eventSpan = 31 * 24 * time.Hour

// reconcileEvents reads the events of the calendars the location's
// appointments are in, over their span (a call per calendar and month),
// and compares them with the recorded events: an appointment whose event
// is gone is marked to be sent again, a second event for one
// appointment (its contact, calendar and start) is reported in the inbox,
// and an event whose fields differ from what the webhooks last showed
// (or ghlsync last sent) lands in the inbox as the AppointmentUpdate GHL
// would have sent. The events answer carries no notes: the fields it
// lacks are not compared.
func (in *Inbound) reconcileEvents(ctx context.Context, rs ReconcileStore, r *run, res *ReconcileResult) error {
	loc := r.loc
	cals, from, to, err := rs.AppointmentWindow(ctx, loc)
	if err != nil || len(cals) == 0 {
		return err
	}
	synced, err := rs.SyncedEvents(ctx, loc)
	if err != nil {
		return err
	}
	sentAll, err := rs.AllSent(ctx, loc, store.RecordAppointment)
	if err != nil {
		return err
	}
	seenAll, err := rs.AllSeen(ctx, loc, store.RecordAppointment)
	if err != nil {
		return err
	}
	events := map[string]ghl.Event{}
	var order []string // event ids as read, for a stable landing order
	for _, cal := range cals {
		for start := from.Add(-time.Minute); start.Before(to); start = start.Add(eventSpan) {
			var page []ghl.Event
			err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
				page, resp, err = in.Engine.Calendars.Events(ctx, token, ghl.EventsQuery{LocationID: loc, CalendarID: cal,
					Start: start, End: earliest(start.Add(eventSpan), to.Add(time.Minute))})
				return resp, err
			})
			res.Calls++
			if err != nil {
				return fmt.Errorf("reading the events of calendar %s: %w", cal, err)
			}
			for _, ev := range page {
				if _, ok := events[ev.ID]; !ok {
					order = append(order, ev.ID)
				}
				events[ev.ID] = ev
			}
		}
	}
	res.Events = len(events)
	recorded := make(map[string]string, len(synced)) // event id -> appointment
	var missing []string
	for ext, id := range synced {
		recorded[id] = ext
		if _, ok := events[id]; !ok {
			missing = append(missing, ext)
		}
	}
	slices.Sort(missing)
	res.MissingAppointmentsCount = len(missing)
	res.MissingAppointments = append(res.MissingAppointments, missing[:min(len(missing), MaxFailedListed)]...)
	if err := rs.ResendAppointments(ctx, loc, missing); err != nil {
		return err
	}
	if err := in.eventDrift(ctx, rs, loc, order, events, recorded, sentAll, seenAll, res); err != nil {
		return err
	}
	type slot struct {
		contact, calendar string
		start             int64
	}
	bySlot := map[slot][]string{}
	for id, ev := range events {
		k := slot{ev.ContactID, ev.CalendarID, 0}
		if t, err := ev.StartTime.In(time.UTC); err == nil {
			k.start = t.Unix()
		}
		bySlot[k] = append(bySlot[k], id)
	}
	var dups []Duplicate
	for _, ids := range bySlot {
		kept := ""
		for _, id := range ids {
			if recorded[id] != "" {
				kept = id
			}
		}
		if kept == "" || len(ids) < 2 {
			continue
		}
		for _, id := range ids {
			if recorded[id] == "" {
				dups = append(dups, Duplicate{Kind: store.RecordAppointment, ExternalID: recorded[kept], EventID: kept, Duplicate: id})
			}
		}
	}
	slices.SortFunc(dups, func(a, b Duplicate) int { return strings.Compare(a.Duplicate, b.Duplicate) })
	for _, d := range dups {
		res.Duplicates = append(res.Duplicates, d)
		b, _ := json.Marshal(d)
		fresh, err := rs.AddChange(ctx, &store.Change{EventID: "duplicate:" + loc + ":" + d.Duplicate, LocationID: loc,
			Kind: store.ChangeAppointmentDuplicate, GHLID: d.Duplicate, ExternalID: d.ExternalID, Changes: string(b)})
		if err != nil {
			return err
		}
		if fresh {
			res.NewDuplicates++
		}
	}
	return nil
}

// eventDrift lands the events (ids in order) whose followed fields differ
// from what the webhooks last showed of them, or, never shown, from what
// ghlsync last sent, by more than ghlsync's own writes; recorded maps an
// event id to its appointment. An event ghlsync knows nothing of field by
// field is taken as it is. Events that are no appointment's and that no
// webhook showed are the CRM's own and are left out.
func (in *Inbound) eventDrift(ctx context.Context, rs ReconcileStore, loc string, order []string, events map[string]ghl.Event,
	recorded map[string]string, sentAll, seenAll map[string]store.FieldHashes, res *ReconcileResult) error {
	for _, id := range order {
		ev := events[id]
		var obj map[string]json.RawMessage
		if json.Unmarshal(ev.Raw, &obj) != nil {
			continue
		}
		ext := recorded[id]
		seen, known := seenAll[id]
		if ext == "" && !known {
			continue
		}
		text, _ := recordFields(store.RecordAppointment, obj)
		for f := range text {
			if _, ok := obj[f]; !ok {
				delete(text, f)
			}
		}
		sent := sentAll[ext]
		if !known && len(sent) == 0 {
			if err := rs.SaveSeen(ctx, loc, store.RecordAppointment, id, hashFields(text), res.StartedAt); err != nil {
				return err
			}
			continue
		}
		if !known {
			seen = store.FieldHashes{}
		}
		if !drift(text, seen, sent) {
			continue
		}
		n, err := in.landEventDrift(ctx, rs, loc, id, ev.Raw)
		if err != nil {
			return err
		}
		res.AppointmentChanges += n
	}
	return nil
}

// reconcilePrefix begins the id of a webhook event a reconciliation
// records.
const reconcilePrefix = "reconcile:"

// landEventDrift records an event whose change no webhook delivered as
// the AppointmentUpdate GHL would have sent, and processes it; it returns
// 1 when that made an inbox row. The event's id is the event's content,
// so a reconciliation run again records nothing twice.
func (in *Inbound) landEventDrift(ctx context.Context, rs ReconcileStore, loc, id string, raw json.RawMessage) (int, error) {
	body, err := json.Marshal(map[string]any{"type": EventAppointmentUpdate, "locationId": loc, "appointment": raw})
	if err != nil {
		return 0, err
	}
	return in.landReconciled(ctx, rs, loc, id, EventAppointmentUpdate, body)
}

// landReconciled records body, the webhook of type typ GHL would have
// sent of its record id, under an id made of its content, and processes
// it; it returns 1 when that made an inbox row, 0 when it did not or was
// recorded before.
func (in *Inbound) landReconciled(ctx context.Context, rs ReconcileStore, loc, id, typ string, body []byte) (int, error) {
	sum := sha256.Sum256(body)
	ev := &store.WebhookEvent{WebhookID: reconcilePrefix + loc + ":" + id + ":" + hex.EncodeToString(sum[:8]),
		Type: typ, LocationID: loc, Payload: string(body)}
	fresh, err := rs.RecordWebhookEvent(ctx, ev)
	if err != nil || !fresh {
		return 0, err
	}
	pr, err := in.Process(ctx, ev.ID)
	if err != nil || pr.Change == 0 {
		return 0, err
	}
	return 1, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
