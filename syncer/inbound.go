package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// The inbound direction: a GHL webhook of a contact or an appointment,
// recorded by the web process (store.WebhookEvent), becomes at most one
// row of the clinic's inbox (store.Change). What changed is what differs
// from what GHL's webhooks last showed of the record; a value equal to
// what ghlsync itself last sent is its own write coming back (an echo)
// and is left out, so the two directions never ping-pong.

// Webhook event types of GHL's data webhooks that ghlsync takes.
const (
	EventContactCreate     = "ContactCreate"
	EventContactUpdate     = "ContactUpdate"
	EventContactDelete     = "ContactDelete"
	EventContactDndUpdate  = "ContactDndUpdate"
	EventContactTagUpdate  = "ContactTagUpdate"
	EventAppointmentCreate = "AppointmentCreate"
	EventAppointmentUpdate = "AppointmentUpdate"
	EventAppointmentDelete = "AppointmentDelete"
)

// DataEvents lists the data webhook types ghlsync records.
var DataEvents = []string{EventContactCreate, EventContactUpdate, EventContactDelete, EventContactDndUpdate,
	EventContactTagUpdate, EventAppointmentCreate, EventAppointmentUpdate, EventAppointmentDelete}

// InboundStore is what processing a webhook event needs of the store;
// *store.Store is one.
type InboundStore interface {
	WebhookEventByID(ctx context.Context, id int64) (*store.WebhookEvent, error)
	ProcessWebhookEvent(ctx context.Context, id int64, lockKey string, fn func(tx *store.InboundTx, ev *store.WebhookEvent) error) error
	WebhookEventFailed(ctx context.Context, id int64, why string) error
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	PatientOfContact(ctx context.Context, loc, contactID string) (string, error)
}

// ContactReader reads one contact from GHL; *ghl.ContactsService is one.
type ContactReader interface {
	Get(ctx context.Context, accessToken, contactID string) (*ghl.Contact, *ghl.Response, error)
}

// Inbound processes recorded webhook events into the inbox.
type Inbound struct {
	Store InboundStore
	// Engine makes the GHL calls processing needs (the contact of an
	// appointment booked for someone ghlsync does not know), with its
	// credentials, refresher and limiter.
	Engine *Engine
	// Contacts reads that contact.
	Contacts ContactReader
}

// Validate reports a required field that is not set.
func (in *Inbound) Validate() error {
	switch {
	case in.Store == nil:
		return errors.New("syncer.Inbound: Store is required")
	case in.Engine == nil:
		return errors.New("syncer.Inbound: Engine is required")
	case in.Contacts == nil:
		return errors.New("syncer.Inbound: Contacts is required")
	}
	return in.Engine.Validate()
}

// dataEvent is the part of a data webhook processing reads.
type dataEvent struct {
	Type        string                     `json:"type"`
	LocationID  string                     `json:"locationId"`
	ID          string                     `json:"id"`
	Appointment map[string]json.RawMessage `json:"appointment"`
}

// ProcessResult says what processing an event did.
type ProcessResult struct {
	EventID int64  `json:"event_id"`
	Type    string `json:"type"`
	// Change is the inbox row written, 0 for none (an echo, nothing that
	// changed, a location ghlsync does not hold, or done before).
	Change int64  `json:"change,omitempty"`
	Echo   bool   `json:"echo,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Process processes the recorded event id once: a second call, or a
// call for an event another worker processed, changes nothing.
func (in *Inbound) Process(ctx context.Context, id int64) (ProcessResult, error) {
	res := ProcessResult{EventID: id}
	ev, err := in.Store.WebhookEventByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		res.Note = "no such event (purged after it was processed)"
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Type = ev.Type
	if ev.ProcessedAt != nil {
		res.Note = "processed before"
		return res, nil
	}
	var de dataEvent
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(ev.Payload), &de); err == nil {
		err = json.Unmarshal([]byte(ev.Payload), &obj)
	}
	kind, ghlID := store.RecordContact, de.ID
	if strings.HasPrefix(ev.Type, "Appointment") {
		kind, obj = store.RecordAppointment, de.Appointment
		ghlID = ""
		if v, ok := obj["id"]; ok {
			ghlID = valueString(v)
		}
	}
	loc := ev.LocationID
	var contact map[string]any
	skip := ""
	switch {
	case obj == nil || ghlID == "":
		skip = "the webhook names no record"
	default:
		c, err := in.Store.Credential(ctx, loc)
		switch {
		case errors.Is(err, store.ErrNotFound):
			skip = "a location ghlsync does not hold"
		case err != nil:
			return res, err
		case c.UserType == store.UserTypeCompany:
			skip = "an agency, not a location"
		}
	}
	if skip == "" && kind == store.RecordAppointment && ev.Type != EventAppointmentDelete {
		if contact, err = in.contactDetails(ctx, loc, valueString(obj["contactId"])); err != nil {
			return res, err
		}
	}
	err = in.Store.ProcessWebhookEvent(ctx, id, loc+"\x00"+ghlID, func(tx *store.InboundTx, ev *store.WebhookEvent) error {
		if skip != "" {
			res.Note = skip
			return nil
		}
		c, echo, err := changeOf(tx, ev, kind, ghlID, obj, contact)
		if err != nil || c == nil {
			res.Echo = echo
			return err
		}
		if _, err := tx.AddChange(c); err != nil {
			return err
		}
		res.Change = c.ID
		return nil
	})
	if err != nil {
		if ferr := in.Store.WebhookEventFailed(context.WithoutCancel(ctx), id, err.Error()); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return res, fmt.Errorf("syncer.Inbound %d: %w", id, err)
	}
	return res, nil
}

// contactDetails returns, for an appointment's contact ghlsync holds no
// patient of, the contact's details from GHL (nil for a contact that is a
// patient's). A contact GHL does not have, or a location that cannot be
// called, gives the id alone.
func (in *Inbound) contactDetails(ctx context.Context, loc, contactID string) (map[string]any, error) {
	if contactID == "" {
		return nil, nil
	}
	known, err := in.knownContact(ctx, loc, contactID)
	if err != nil || known {
		return nil, err
	}
	e := in.Engine
	s := newSession(e, loc)
	var got *ghl.Contact
	err = s.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		got, resp, err = in.Contacts.Get(ctx, token, contactID)
		return resp, err
	})
	switch {
	case err == nil:
	case ghl.IsNotFound(err), errors.Is(err, ErrFinal), isStatusError(err):
		e.log().Warn("the contact of an appointment booked in GHL could not be read; the inbox has its id alone",
			"location", loc, "contact", contactID, "err", err)
		return map[string]any{"id": contactID}, nil
	default:
		return nil, err
	}
	out := map[string]any{"id": got.ID}
	for k, v := range map[string]string{"firstName": got.FirstName, "lastName": got.LastName, "email": got.Email,
		"phone": got.Phone, "dateOfBirth": got.DateOfBirth, "address1": got.Address1, "city": got.City,
		"postalCode": got.PostalCode, "country": got.Country} {
		if v != "" {
			out[k] = v
		}
	}
	return out, nil
}

func isStatusError(err error) bool {
	var se *statusError
	return errors.As(err, &se)
}

// knownContact reports whether a patient of loc holds contactID.
func (in *Inbound) knownContact(ctx context.Context, loc, contactID string) (bool, error) {
	ext, err := in.Store.PatientOfContact(ctx, loc, contactID)
	return ext != "", err
}

// changeOf decides the inbox row of an event: nil when nothing changed,
// echo when what changed is ghlsync's own write. It records what the
// event showed.
func changeOf(tx *store.InboundTx, ev *store.WebhookEvent, kind, ghlID string, obj map[string]json.RawMessage, contact map[string]any) (*store.Change, bool, error) {
	loc := ev.LocationID
	c := &store.Change{EventID: ev.WebhookID, LocationID: loc, GHLID: ghlID, ReceivedAt: ev.ReceivedAt,
		GHLOccurredAt: ev.OccurredAt}
	text, raw := recordFields(kind, obj)
	var err error
	switch kind {
	case store.RecordContact:
		if c.ExternalID, err = tx.PatientOfContact(loc, ghlID); err != nil {
			return nil, false, err
		}
		if c.ExternalID == "" {
			// A contact whose create is in flight: its patient id
			// custom field names the patient, as ghlsync sent it.
			for f, v := range text {
				if !strings.HasPrefix(f, customFieldPrefix) || v == "" {
					continue
				}
				sent, err := tx.Sent(loc, kind, v)
				if err != nil {
					return nil, false, err
				}
				if sent[f] == hashField(f, v) {
					c.ExternalID = v
					break
				}
			}
		}
	case store.RecordAppointment:
		var start time.Time
		if s := normField("startTime", text["startTime"]); s != "" {
			start, _ = time.Parse(time.RFC3339, s)
		}
		if c.ExternalID, err = tx.AppointmentOfEvent(loc, ghlID, text["contactId"], text["calendarId"], start); err != nil {
			return nil, false, err
		}
		if contactID := text["contactId"]; contactID != "" {
			if c.PatientExternalID, err = tx.PatientOfContact(loc, contactID); err != nil {
				return nil, false, err
			}
		}
		if c.GHLOccurredAt == nil {
			if t, err := time.Parse(time.RFC3339, normField("startTime", valueString(obj["dateUpdated"]))); err == nil {
				c.GHLOccurredAt = &t
			}
		}
	}
	sent := store.FieldHashes{}
	if c.ExternalID != "" {
		if sent, err = tx.Sent(loc, kind, c.ExternalID); err != nil {
			return nil, false, err
		}
	}
	if len(sent) == 0 {
		// A record whose sync state is gone (ghlsync deleted it) is
		// known by the GHL id it was last sent to.
		ext, bySent, err := tx.SentByGHLID(loc, kind, ghlID)
		if err != nil {
			return nil, false, err
		}
		if ext != "" && (c.ExternalID == "" || c.ExternalID == ext) {
			c.ExternalID, sent = ext, bySent
		}
	}
	if ev.Type == EventContactDelete || ev.Type == EventAppointmentDelete {
		if sent[deletedField] != "" {
			return nil, true, nil
		}
		c.Kind = map[string]string{store.RecordContact: store.ChangeContactDeleted, store.RecordAppointment: store.ChangeAppointmentDeleted}[kind]
		return c, false, nil
	}
	seen, seenAt, err := tx.Seen(loc, kind, ghlID)
	if err != nil {
		return nil, false, err
	}
	at := ev.ReceivedAt
	if ev.OccurredAt != nil {
		at = *ev.OccurredAt
	}
	if at.Before(seenAt) {
		// Older than a webhook already processed, which showed the
		// record whole as of later: what this one shows is superseded
		// (GHL delivers in no set order).
		return nil, false, nil
	}
	if kind == store.RecordContact {
		text = withoutManagedTags(text, sent)
	}
	// An appointment a reconciliation read from the events answer lacks
	// fields a webhook carries (notes): those are not compared, and what
	// was seen of them is kept.
	kept := store.FieldHashes{}
	if kind == store.RecordAppointment && strings.HasPrefix(ev.WebhookID, reconcilePrefix) {
		for f := range text {
			if _, ok := obj[f]; !ok {
				delete(text, f)
				if seen[f] != "" {
					kept[f] = seen[f]
				}
			}
		}
	}
	// GHL's timestamps are to the millisecond, and ghlsync's own calls to
	// a record can fall in one (a tag added, then DND turned on): of two
	// webhooks of the same instant, GHL's order is unknown. A field that
	// such a webhook shows otherwise than the one already processed, which
	// showed ghlsync's own value, may be the state before ghlsync's call;
	// it keeps ghlsync's value rather than land in the inbox as a change
	// the clinic never made (a staff edit within that millisecond is left
	// to the reconciliation, which compares GHL with what was seen).
	tie := at.Equal(seenAt)
	changes := map[string]json.RawMessage{}
	echo := false
	for f, v := range text {
		h := hashField(f, v)
		switch {
		case seen[f] == h:
		case sent[f] == h:
			echo = true
		case tie && seen[f] != "" && seen[f] == sent[f]:
			echo = true
			kept[f] = seen[f]
		case seen[f] == "" && normField(f, v) == "":
			// Empty, and nothing known before: a default, not a change.
		default:
			changes[f] = raw[f]
		}
	}
	seenNow := hashFields(text)
	for f, h := range kept {
		seenNow[f] = h
	}
	if err := tx.SaveSeen(loc, kind, ghlID, seenNow, at); err != nil {
		return nil, false, err
	}
	if len(changes) == 0 {
		return nil, echo, nil
	}
	switch {
	case kind == store.RecordContact && ev.Type == EventContactCreate:
		c.Kind = store.ChangeContactCreated
	case kind == store.RecordContact:
		c.Kind = store.ChangeContactUpdated
	case ev.Type == EventAppointmentCreate:
		c.Kind = store.ChangeAppointmentCreated
	default:
		c.Kind = store.ChangeAppointmentUpdated
	}
	out := map[string]any{}
	for f, v := range changes {
		out[f] = v
	}
	if contact != nil && c.PatientExternalID == "" {
		out["contact"] = contact
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, false, err
	}
	c.Changes = string(b)
	return c, false, nil
}
