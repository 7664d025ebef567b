package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The inbound direction: GHL's webhooks of contact and appointment
// changes, recorded first (webhook_events), then processed into the
// clinic's inbox (ghl_changes). ghlsync's own memory of what it sent and
// what GHL last showed, field by field, is in sync_sent_fields and
// sync_seen_fields; only hashes are kept there.

// WebhookEvent is one GHL webhook as it arrived, kept until it is
// processed (and a while after, see PurgeWebhookEvents). WebhookID is
// GHL's id: a webhook delivered twice is recorded once.
type WebhookEvent struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	WebhookID  string `gorm:"size:255;not null;uniqueIndex"`
	Type       string `gorm:"size:64;not null;default:''"`
	LocationID string `gorm:"size:255;not null;default:''"`
	Payload    string `gorm:"type:text;not null"`
	// OccurredAt is the webhook's timestamp: when GHL says it happened.
	OccurredAt *time.Time
	ReceivedAt time.Time `gorm:"not null"`
	// ProcessedAt is set in the transaction that writes the event's
	// inbox row, so an event is processed once whoever runs it.
	ProcessedAt *time.Time `gorm:"index:webhook_events_pending,where:processed_at IS NULL"`
	Attempts    int        `gorm:"not null;default:0"`
	LastError   string     `gorm:"type:text;not null;default:''"`
}

// TableName pins the table name.
func (WebhookEvent) TableName() string { return "webhook_events" }

// Change is one row of the clinic's inbox: a change made in GHL (or found
// by a reconciliation), for the clinic system to read and mark processed.
type Change struct {
	ID int64 `gorm:"primaryKey;autoIncrement"`
	// EventID is what the row came from (a webhookId, or a
	// reconciliation's or a sync's own key): each lands once.
	EventID    string `gorm:"size:255;not null;uniqueIndex"`
	LocationID string `gorm:"size:255;not null;index:ghl_changes_inbox,priority:1"`
	// Kind is one of the Change* constants.
	Kind  string `gorm:"size:32;not null"`
	GHLID string `gorm:"column:ghl_id;size:255;not null;default:''"`
	// ExternalID is the clinic's id of the record, when ghlsync knows it.
	ExternalID string `gorm:"size:128;not null;default:''"`
	// PatientExternalID is, for an appointment, its patient's external
	// id when ghlsync knows the contact.
	PatientExternalID string `gorm:"size:128;not null;default:''"`
	// Changes is a JSON object: field name → new value, in GHL's names.
	Changes       string     `gorm:"type:text;not null;default:'{}'"`
	GHLOccurredAt *time.Time `gorm:"column:ghl_occurred_at"`
	ReceivedAt    time.Time  `gorm:"not null"`
	// Processed is the clinic system's: it sets it once it has taken the
	// change in.
	Processed   bool `gorm:"not null;default:false;index:ghl_changes_inbox,priority:2"`
	ProcessedAt *time.Time
}

// TableName pins the table name.
func (Change) TableName() string { return "ghl_changes" }

// Kinds of inbox rows.
const (
	ChangeContactCreated     = "contact.created"
	ChangeContactUpdated     = "contact.updated"
	ChangeContactDeleted     = "contact.deleted"
	ChangeAppointmentCreated = "appointment.created"
	ChangeAppointmentUpdated = "appointment.updated"
	ChangeAppointmentDeleted = "appointment.deleted"
	// ChangeContactOverwritten: a sync overwrote a value staff had changed
	// in GHL (conflict_policy clinic); Changes holds GHL's values.
	ChangeContactOverwritten = "contact.overwritten"
	// ChangeContactConflict: a sync left a contact alone that changed in
	// GHL and in the clinic (conflict_policy report); Changes holds GHL's
	// values.
	ChangeContactConflict = "contact.conflict"
	// ChangeContactDuplicate, ChangeAppointmentDuplicate: a
	// reconciliation found a second GHL record of one clinic record;
	// Changes names both ids.
	ChangeContactDuplicate     = "contact.duplicate"
	ChangeAppointmentDuplicate = "appointment.duplicate"
)

// Kinds of record in sync_sent_fields and sync_seen_fields.
const (
	RecordContact     = "contact"
	RecordAppointment = "appointment"
)

// SentFields is what ghlsync last sent GHL of one record, field by field
// (a hash of each value), written before the call: a webhook that shows
// these values is ghlsync's own write coming back.
type SentFields struct {
	LocationID string `gorm:"primaryKey;size:255"`
	Kind       string `gorm:"primaryKey;size:16"`
	ExternalID string `gorm:"primaryKey;size:128"`
	GHLID      string `gorm:"column:ghl_id;size:255;not null;default:'';index"`
	Fields     string `gorm:"type:text;not null;default:'{}'"`
	UpdatedAt  time.Time
}

// TableName pins the table name.
func (SentFields) TableName() string { return "sync_sent_fields" }

// SeenFields is what GHL's webhooks last showed of one GHL record, field
// by field (hashes), as of SeenAt: a webhook's changes are the fields that
// differ from it.
type SeenFields struct {
	LocationID string `gorm:"primaryKey;size:255"`
	Kind       string `gorm:"primaryKey;size:16"`
	GHLID      string `gorm:"column:ghl_id;primaryKey;size:255"`
	Fields     string `gorm:"type:text;not null;default:'{}'"`
	SeenAt     time.Time
}

// TableName pins the table name.
func (SeenFields) TableName() string { return "sync_seen_fields" }

// RecordWebhookEvent inserts ev unless an event of its WebhookID is
// already recorded; fresh says whether it was inserted (ev.ID is then
// set).
func (s *Store) RecordWebhookEvent(ctx context.Context, ev *WebhookEvent) (fresh bool, err error) {
	if ev.ReceivedAt.IsZero() {
		ev.ReceivedAt = s.now().UTC()
	}
	res := s.db.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "webhook_id"}}, DoNothing: true}).Create(ev)
	if res.Error != nil {
		return false, fmt.Errorf("store.RecordWebhookEvent %s: %w", ev.WebhookID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// WebhookEventByID returns the event id, or an error wrapping ErrNotFound.
func (s *Store) WebhookEventByID(ctx context.Context, id int64) (*WebhookEvent, error) {
	var ev WebhookEvent
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&ev).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("store.WebhookEventByID %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store.WebhookEventByID %d: %w", id, err)
	}
	return &ev, nil
}

// UnprocessedWebhookEvents returns up to limit events after the id
// afterID, received before before and not processed, oldest first.
func (s *Store) UnprocessedWebhookEvents(ctx context.Context, before time.Time, afterID int64, limit int) ([]WebhookEvent, error) {
	var evs []WebhookEvent
	err := s.db.WithContext(ctx).Select("id", "webhook_id", "type", "location_id", "received_at", "attempts").
		Where("processed_at IS NULL AND received_at < ? AND id > ?", before.UTC(), afterID).Order("id").Limit(limit).Find(&evs).Error
	if err != nil {
		return nil, fmt.Errorf("store.UnprocessedWebhookEvents: %w", err)
	}
	return evs, nil
}

// WebhookEventFailed counts a failed attempt at processing event id.
func (s *Store) WebhookEventFailed(ctx context.Context, id int64, why string) error {
	err := s.db.WithContext(ctx).Model(&WebhookEvent{}).Where("id = ?", id).
		Updates(map[string]any{"attempts": gorm.Expr("attempts + 1"), "last_error": why}).Error
	if err != nil {
		return fmt.Errorf("store.WebhookEventFailed %d: %w", id, err)
	}
	return nil
}

// PurgeWebhookEvents deletes the events processed before before.
func (s *Store) PurgeWebhookEvents(ctx context.Context, before time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Where("processed_at IS NOT NULL AND processed_at < ?", before.UTC()).Delete(&WebhookEvent{})
	if res.Error != nil {
		return 0, fmt.Errorf("store.PurgeWebhookEvents: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// FieldHashes is a record's fields by name, each as a hash of its value.
type FieldHashes map[string]string

func decodeHashes(s string) FieldHashes {
	out := FieldHashes{}
	_ = json.Unmarshal([]byte(s), &out) // a row written by hand that does not parse counts as empty
	return out
}

func encodeHashes(h FieldHashes) string {
	if h == nil {
		return "{}"
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// RecordSent merges fields into what ghlsync last sent of the record
// (loc, kind, externalID), now held by GHL's ghlID ("" when not known yet,
// keeping the one recorded). One sync of a location runs at a time, so
// the merge has one writer per record.
//
// A sync records every contact before its call, so the merge is done by
// the database's JSON functions, in one statement with the other records
// recorded meanwhile (groupcommit.go); a row whose fields do not parse
// (written by hand) fails it, and is merged as empty by reading it first.
func (s *Store) RecordSent(ctx context.Context, loc, kind, externalID, ghlID string, fields FieldHashes) error {
	return s.sentWrites.save(ctx, sentWrite{loc: loc, kind: kind, externalID: externalID, ghlID: ghlID,
		fields: encodeHashes(fields), merge: fields})
}

// sentWrite is one RecordSent.
type sentWrite struct {
	loc, kind, externalID, ghlID string
	// fields is merge, encoded.
	fields string
	merge  FieldHashes
}

// recordSents merges the records ws in one statement, each at most once.
func (s *Store) recordSents(ctx context.Context, ws []sentWrite) error {
	merge := "(sync_sent_fields.fields::jsonb || excluded.fields::jsonb)::text"
	if !s.Postgres() {
		merge = "json_patch(sync_sent_fields.fields, excluded.fields)"
	}
	now := s.now().UTC()
	var q strings.Builder
	q.WriteString("INSERT INTO sync_sent_fields (location_id, kind, external_id, ghl_id, fields, updated_at) VALUES ")
	args := make([]any, 0, 6*len(ws))
	for i, w := range ws {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?)")
		args = append(args, w.loc, w.kind, w.externalID, w.ghlID, w.fields, now)
	}
	q.WriteString(` ON CONFLICT (location_id, kind, external_id) DO UPDATE SET
		ghl_id = CASE WHEN excluded.ghl_id <> '' THEN excluded.ghl_id ELSE sync_sent_fields.ghl_id END,
		fields = ` + merge + `, updated_at = excluded.updated_at`)
	if err := s.single(ctx).Exec(q.String(), args...).Error; err != nil {
		return fmt.Errorf("store.RecordSent %s (%d together): %w", ws[0].loc, len(ws), err)
	}
	return nil
}

// recordSent merges one record.
func (s *Store) recordSent(ctx context.Context, w sentWrite) error {
	if err := s.recordSents(ctx, []sentWrite{w}); err == nil {
		return nil
	}
	loc, kind, externalID, ghlID, fields := w.loc, w.kind, w.externalID, w.ghlID, w.merge
	var row SentFields
	err := s.db.WithContext(ctx).Where("location_id = ? AND kind = ? AND external_id = ?", loc, kind, externalID).Take(&row).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("store.RecordSent %s %s: %w", loc, externalID, err)
	}
	merged := decodeHashes(row.Fields)
	for k, v := range fields {
		merged[k] = v
	}
	row.LocationID, row.Kind, row.ExternalID = loc, kind, externalID
	if ghlID != "" {
		row.GHLID = ghlID
	}
	row.Fields, row.UpdatedAt = encodeHashes(merged), s.now().UTC()
	err = s.single(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}, {Name: "kind"}, {Name: "external_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"ghl_id", "fields", "updated_at"}),
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("store.RecordSent %s %s: %w", loc, externalID, err)
	}
	return nil
}

// Sent returns what ghlsync last sent of the record, empty when nothing.
func (s *Store) Sent(ctx context.Context, loc, kind, externalID string) (FieldHashes, error) {
	return (&InboundTx{db: s.db.WithContext(ctx)}).Sent(loc, kind, externalID)
}

// Seen returns what GHL's webhooks last showed of the GHL record ghlID.
func (s *Store) Seen(ctx context.Context, loc, kind, ghlID string) (FieldHashes, error) {
	h, _, err := (&InboundTx{db: s.db.WithContext(ctx)}).Seen(loc, kind, ghlID)
	return h, err
}

// SaveSeen replaces what GHL last showed of ghlID (a reconciliation's
// reading).
func (s *Store) SaveSeen(ctx context.Context, loc, kind, ghlID string, fields FieldHashes, at time.Time) error {
	return (&InboundTx{db: s.db.WithContext(ctx)}).SaveSeen(loc, kind, ghlID, fields, at)
}

// errProcessed ends the transaction of an event processed already.
var errProcessed = errors.New("store: webhook event already processed")

// ProcessWebhookEvent runs fn in one transaction that ends by marking the
// event id processed; an event already processed is skipped (fn is not
// called). The changes fn writes and the mark commit together, so a worker
// killed half way leaves the event to be processed again whole. Events of
// one record (lockKey) are processed one at a time: on PostgreSQL by a
// transaction-scoped advisory lock, on SQLite by its single writer.
func (s *Store) ProcessWebhookEvent(ctx context.Context, id int64, lockKey string, fn func(tx *InboundTx, ev *WebhookEvent) error) error {
	err := s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		if s.Postgres() {
			h := fnv.New64a()
			h.Write([]byte("ghlsync.inbound\x00" + lockKey))
			if err := db.Exec("SELECT pg_advisory_xact_lock(?)", int64(h.Sum64()>>1)).Error; err != nil {
				return err
			}
		}
		var ev WebhookEvent
		if err := db.Where("id = ?", id).Take(&ev).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return ErrNotFound
			}
			return err
		}
		if ev.ProcessedAt != nil {
			return errProcessed
		}
		tx := &InboundTx{db: db, now: s.now().UTC()}
		if err := fn(tx, &ev); err != nil {
			return err
		}
		return db.Model(&WebhookEvent{}).Where("id = ? AND processed_at IS NULL", id).
			Updates(map[string]any{"processed_at": tx.now, "attempts": gorm.Expr("attempts + 1"), "last_error": ""}).Error
	})
	if errors.Is(err, errProcessed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store.ProcessWebhookEvent %d: %w", id, err)
	}
	return nil
}

// InboundTx is the view of the database a webhook event's processing
// has, inside ProcessWebhookEvent's transaction.
type InboundTx struct {
	db  *gorm.DB
	now time.Time
}

// PatientOfContact returns the external id of the patient of loc whose
// contact is contactID, "" when none.
func (tx *InboundTx) PatientOfContact(loc, contactID string) (string, error) {
	var ids []string
	err := tx.db.Model(&PatientSync{}).Where("location_id = ? AND contact_id = ?", loc, contactID).
		Order("external_id").Limit(1).Pluck("external_id", &ids).Error
	if err != nil || len(ids) == 0 {
		return "", err
	}
	return ids[0], nil
}

// AppointmentOfEvent returns the external id of the appointment of loc
// booked as GHL's eventID, "" when none. An appointment whose create is
// in flight is found by what it books (contact, calendar, start).
func (tx *InboundTx) AppointmentOfEvent(loc, eventID, contactID, calendarID string, start time.Time) (string, error) {
	var ids []string
	err := tx.db.Model(&AppointmentSync{}).Where("location_id = ? AND event_id = ?", loc, eventID).
		Limit(1).Pluck("external_id", &ids).Error
	if err != nil || len(ids) > 0 || contactID == "" || start.IsZero() {
		return firstOr(ids), err
	}
	err = tx.db.Model(&AppointmentSync{}).Where("location_id = ? AND event_id = '' AND intent_contact_id = ? AND intent_calendar_id = ? AND intent_starts_at = ?",
		loc, contactID, calendarID, start.UTC()).Limit(1).Pluck("external_id", &ids).Error
	return firstOr(ids), err
}

func firstOr(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// PatientOfContact returns the external id of the patient of loc whose
// contact is contactID, "" when none.
func (s *Store) PatientOfContact(ctx context.Context, loc, contactID string) (string, error) {
	return (&InboundTx{db: s.db.WithContext(ctx)}).PatientOfContact(loc, contactID)
}

// Sent is Store.Sent in the transaction.
func (tx *InboundTx) Sent(loc, kind, externalID string) (FieldHashes, error) {
	var row SentFields
	err := tx.db.Where("location_id = ? AND kind = ? AND external_id = ?", loc, kind, externalID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return FieldHashes{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store.Sent %s %s: %w", loc, externalID, err)
	}
	return decodeHashes(row.Fields), nil
}

// SentByGHLID returns the record of loc and kind whose sent fields were
// last sent to GHL's ghlID (a record whose sync state is gone, after a
// deletion), "" when none.
func (tx *InboundTx) SentByGHLID(loc, kind, ghlID string) (string, FieldHashes, error) {
	var rows []SentFields
	err := tx.db.Where("location_id = ? AND kind = ? AND ghl_id = ?", loc, kind, ghlID).Order("updated_at DESC").Limit(1).Find(&rows).Error
	if err != nil {
		return "", nil, fmt.Errorf("store.SentByGHLID %s %s: %w", loc, ghlID, err)
	}
	if len(rows) == 0 {
		return "", FieldHashes{}, nil
	}
	return rows[0].ExternalID, decodeHashes(rows[0].Fields), nil
}

// Seen returns what the webhooks last showed of ghlID and as of when.
func (tx *InboundTx) Seen(loc, kind, ghlID string) (FieldHashes, time.Time, error) {
	var row SeenFields
	err := tx.db.Where("location_id = ? AND kind = ? AND ghl_id = ?", loc, kind, ghlID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return FieldHashes{}, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("store.Seen %s %s: %w", loc, ghlID, err)
	}
	return decodeHashes(row.Fields), row.SeenAt, nil
}

// SaveSeen replaces what GHL last showed of ghlID.
func (tx *InboundTx) SaveSeen(loc, kind, ghlID string, fields FieldHashes, at time.Time) error {
	row := SeenFields{LocationID: loc, Kind: kind, GHLID: ghlID, Fields: encodeHashes(fields), SeenAt: at.UTC()}
	err := tx.db.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}, {Name: "kind"}, {Name: "ghl_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"fields", "seen_at"}),
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("store.SaveSeen %s %s: %w", loc, ghlID, err)
	}
	return nil
}

// AddChange inserts c into the inbox unless a row of its EventID is
// there; it reports whether it did.
func (tx *InboundTx) AddChange(c *Change) (bool, error) {
	if c.ReceivedAt.IsZero() {
		c.ReceivedAt = tx.now
	}
	if c.Changes == "" {
		c.Changes = "{}"
	}
	res := tx.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "event_id"}}, DoNothing: true}).Create(c)
	if res.Error != nil {
		return false, fmt.Errorf("store.AddChange %s: %w", c.EventID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// AddChange inserts c into the inbox unless a row of its EventID is there
// (a sync's or a reconciliation's own row); it reports whether it did.
func (s *Store) AddChange(ctx context.Context, c *Change) (bool, error) {
	return (&InboundTx{db: s.db.WithContext(ctx), now: s.now().UTC()}).AddChange(c)
}

// Changes returns the inbox rows of loc (every location for ""), newest
// first, only those the clinic has not processed when pending.
func (s *Store) Changes(ctx context.Context, loc string, pending bool, limit int) ([]Change, error) {
	q := s.db.WithContext(ctx)
	if loc != "" {
		q = q.Where("location_id = ?", loc)
	}
	if pending {
		q = q.Where("processed = ?", false)
	}
	var out []Change
	if err := q.Order("id DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("store.Changes %s: %w", loc, err)
	}
	return out, nil
}

// LatestChangeValues returns, for the GHL record ghlID of loc, the newest
// value the inbox holds of each of fields, from its webhook rows.
func (s *Store) LatestChangeValues(ctx context.Context, loc, ghlID string, fields []string) (map[string]any, error) {
	var rows []Change
	err := s.db.WithContext(ctx).Select("changes").
		Where("location_id = ? AND ghl_id = ? AND kind IN ?", loc, ghlID, []string{ChangeContactCreated, ChangeContactUpdated}).
		Order("id DESC").Limit(50).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store.LatestChangeValues %s %s: %w", loc, ghlID, err)
	}
	out := map[string]any{}
	for _, r := range rows {
		var m map[string]any
		if json.Unmarshal([]byte(r.Changes), &m) != nil {
			continue
		}
		for _, f := range fields {
			if _, have := out[f]; have {
				continue
			}
			if v, ok := m[f]; ok {
				out[f] = v
			}
		}
	}
	return out, nil
}

// CountChanges counts the inbox rows of loc: all of them, and those not
// processed yet.
func (s *Store) CountChanges(ctx context.Context, loc string) (total, pending int64, err error) {
	q := s.db.WithContext(ctx).Model(&Change{}).Where("location_id = ?", loc)
	if err := q.Count(&total).Error; err != nil {
		return 0, 0, fmt.Errorf("store.CountChanges %s: %w", loc, err)
	}
	if err := s.db.WithContext(ctx).Model(&Change{}).Where("location_id = ? AND processed = ?", loc, false).Count(&pending).Error; err != nil {
		return 0, 0, fmt.Errorf("store.CountChanges %s: %w", loc, err)
	}
	return total, pending, nil
}
