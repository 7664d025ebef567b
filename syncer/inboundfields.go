package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// Field by field, what ghlsync sends GHL and what GHL's webhooks show
// back, in GHL's field names, each value normalised so that ghlsync's own
// write and its echo compare equal (an email's case, a date of birth as a
// date or a timestamp, a time in another offset).

// contactFields are the contact fields the inbound direction follows, as
// GHL's contact webhooks carry them (docs/webhook events/ContactUpdate.md);
// custom fields come as customFields.<id>. A documented field missing from
// a webhook is empty.
var contactFields = []string{"firstName", "lastName", "email", "phone", "address1", "city", "state",
	"postalCode", "country", "dateOfBirth", "dnd", "tags", "companyName", "website"}

// appointmentFields are the appointment fields of GHL's appointment
// webhooks (docs/webhook events/AppointmentCreate.md) that are followed.
var appointmentFields = []string{"calendarId", "contactId", "title", "appointmentStatus", "assignedUserId",
	"address", "notes", "startTime", "endTime"}

// customFieldPrefix names a custom field by its id in a record's fields.
const customFieldPrefix = "customFields."

// deletedField is the mark a deletion ghlsync made leaves in what was
// sent: the webhook of that deletion is its echo.
const deletedField = "_deleted"

// normField normalises a field's value for comparison.
func normField(field, v string) string {
	v = strings.TrimSpace(v)
	switch field {
	case "email":
		return strings.ToLower(v)
	case "phone":
		return strings.Map(func(r rune) rune {
			if r == '+' || r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, v)
	case "country":
		return strings.ToUpper(v)
	case "dateOfBirth":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && len(v) > 8 {
			return time.UnixMilli(n).UTC().Format(time.DateOnly)
		}
		if len(v) >= 10 && v[4] == '-' {
			return v[:10]
		}
	case "startTime", "endTime":
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t.UTC().Format(time.RFC3339)
			}
		}
	case "dnd":
		if v == "true" {
			return "true"
		}
		return ""
	case "tags":
		// The tag a deletion adds is ghlsync's own (store.DeletedTag).
		tags := strings.Split(v, ",")
		return strings.Join(slices.DeleteFunc(tags, func(t string) bool { return t == store.DeletedTag }), ",")
	}
	return v
}

// hashField is the hash kept of a field's value (only hashes are kept of
// what was sent or seen).
func hashField(field, v string) string {
	sum := sha256.Sum256([]byte(field + "\x00" + normField(field, v)))
	return hex.EncodeToString(sum[:12])
}

// hashFields hashes every field of values.
func hashFields(values map[string]string) store.FieldHashes {
	out := make(store.FieldHashes, len(values))
	for f, v := range values {
		out[f] = hashField(f, v)
	}
	return out
}

// valueString is a webhook's JSON value as text: a string as is, a list
// of strings sorted and joined (tags), anything else its JSON.
func valueString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		for i := range list {
			list[i] = strings.ToLower(strings.TrimSpace(list[i]))
		}
		slices.Sort(list)
		return strings.Join(slices.Compact(list), ",")
	}
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

// recordFields returns the followed fields of a GHL record's JSON (a
// contact or an appointment object) as text, and their raw values, every
// documented field present (empty when missing).
func recordFields(kind string, obj map[string]json.RawMessage) (map[string]string, map[string]json.RawMessage) {
	names := contactFields
	if kind == store.RecordAppointment {
		names = appointmentFields
	}
	text := make(map[string]string, len(names))
	raw := make(map[string]json.RawMessage, len(names))
	for _, f := range names {
		v, ok := obj[f]
		if !ok {
			v = json.RawMessage(`""`)
		}
		text[f], raw[f] = valueString(v), v
	}
	if kind == store.RecordContact {
		var cfs []struct {
			ID         string          `json:"id"`
			Value      json.RawMessage `json:"value"`
			FieldValue json.RawMessage `json:"field_value"`
		}
		if b, ok := obj["customFields"]; ok && json.Unmarshal(b, &cfs) == nil {
			for _, cf := range cfs {
				if cf.ID == "" {
					continue
				}
				v := cf.Value
				if len(v) == 0 {
					v = cf.FieldValue
				}
				if len(v) == 0 {
					v = json.RawMessage(`""`)
				}
				text[customFieldPrefix+cf.ID], raw[customFieldPrefix+cf.ID] = valueString(v), v
			}
		}
	}
	return text, raw
}

// sentContactFields are the fields of a contact as a sync sends it: those
// it sends, empty ones being left out of the body.
func sentContactFields(c *ghl.Contact) map[string]string {
	out := map[string]string{}
	for f, v := range map[string]string{"firstName": c.FirstName, "lastName": c.LastName, "email": c.Email,
		"phone": c.Phone, "address1": c.Address1, "city": c.City, "state": c.State, "postalCode": c.PostalCode,
		"country": c.Country, "dateOfBirth": c.DateOfBirth} {
		if v != "" {
			out[f] = v
		}
	}
	if c.Tags != nil {
		b, _ := json.Marshal(c.Tags)
		out["tags"] = valueString(b)
	}
	if c.DND != nil {
		out["dnd"] = strconv.FormatBool(*c.DND)
	}
	for _, cf := range c.CustomFields {
		if cf.ID != "" {
			b, _ := json.Marshal(cf.Value)
			out[customFieldPrefix+cf.ID] = valueString(b)
		}
	}
	return out
}

// sentAppointmentFields are the fields of an appointment as a sync sends
// it.
func sentAppointmentFields(a *ghl.Appointment) map[string]string {
	out := map[string]string{"calendarId": a.CalendarID, "title": a.Title, "appointmentStatus": a.AppointmentStatus,
		"assignedUserId": a.AssignedUserID, "address": a.Address}
	if a.ContactID != "" {
		out["contactId"] = a.ContactID
	}
	if !a.StartTime.IsZero() {
		out["startTime"] = a.StartTime.Format(time.RFC3339)
	}
	if !a.EndTime.IsZero() {
		out["endTime"] = a.EndTime.Format(time.RFC3339)
	}
	return out
}

// sentRecorder keeps what a sync sends, field by field, for the inbound
// direction's echo suppression; *store.Store is one. A State that is not
// one (a test's) records nothing.
type sentRecorder interface {
	RecordSent(ctx context.Context, loc, kind, externalID, ghlID string, fields store.FieldHashes) error
}

// managedTagsField keeps, beside the hashes of what a sync sent of a
// contact, the tags ghlsync manages on it (those applied and those about
// to be added or removed), as a JSON list: the tag calls change the
// contact's tags without a body to compare with, so a webhook's tags are
// compared without these, and ghlsync's own tag calls are no change while
// a tag staff set is.
const managedTagsField = "tags:managed"

// recordManagedTags records, before the tag calls, the tags ghlsync
// manages on contactID.
func (r *run) recordManagedTags(ctx context.Context, externalID, contactID string, tags []string) error {
	rec, ok := r.e.State.(sentRecorder)
	if !ok || r.dryRun || len(tags) == 0 {
		return nil
	}
	b, _ := json.Marshal(tags)
	return rec.RecordSent(ctx, r.loc, store.RecordContact, externalID, contactID, store.FieldHashes{managedTagsField: string(b)})
}

// withoutManagedTags returns text with the tags that sent names as
// ghlsync's own left out of its tags.
func withoutManagedTags(text map[string]string, sent store.FieldHashes) map[string]string {
	v, ok := text["tags"]
	var managed []string
	if !ok || v == "" || json.Unmarshal([]byte(sent[managedTagsField]), &managed) != nil || len(managed) == 0 {
		return text
	}
	for i := range managed {
		managed[i] = strings.ToLower(strings.TrimSpace(managed[i]))
	}
	out := make(map[string]string, len(text))
	for f, t := range text {
		out[f] = t
	}
	out["tags"] = strings.Join(slices.DeleteFunc(strings.Split(v, ","), func(t string) bool { return slices.Contains(managed, t) }), ",")
	return out
}

// recordSent records, before the call that sends them, the fields of a
// record a sync is about to send: the webhook GHL sends of the write may
// come before the call's answer.
func (r *run) recordSent(ctx context.Context, kind, externalID, ghlID string, fields map[string]string) error {
	rec, ok := r.e.State.(sentRecorder)
	if !ok || r.dryRun {
		return nil
	}
	return rec.RecordSent(ctx, r.loc, kind, externalID, ghlID, hashFields(fields))
}

// recordDeletion records, before the calls, what acting on a deletion
// writes to GHL, so that its webhooks (the cancellation, the tag and DND,
// the contact's deletion) are known for ghlsync's own; the record's GHL id
// goes with it, as its sync state is forgotten after.
func (r *run) recordDeletion(ctx context.Context, action string, d store.Deletion) error {
	switch {
	case r.kind.name == KindAppointments:
		return r.recordSent(ctx, store.RecordAppointment, d.ExternalID, d.GHLID, map[string]string{"appointmentStatus": ghl.AppointmentStatusCancelled})
	case action == store.DeletionTagDND:
		return r.recordSent(ctx, store.RecordContact, d.ExternalID, d.GHLID, map[string]string{"dnd": "true"})
	case action == store.DeletionDelete:
		return r.recordSent(ctx, store.RecordContact, d.ExternalID, d.GHLID, map[string]string{deletedField: "1"})
	}
	return nil
}
