package store

import (
	"context"
	"fmt"
	"time"
)

// ReconcileRun is the log of one reconciliation of a location: GHL's
// records compared with ghlsync's sync state (see syncer.Reconcile).
type ReconcileRun struct {
	ID         int64     `gorm:"primaryKey;autoIncrement"`
	LocationID string    `gorm:"size:255;not null;index:reconcile_runs_location,priority:1"`
	StartedAt  time.Time `gorm:"not null;index:reconcile_runs_location,priority:2"`
	FinishedAt *time.Time
	// Outcome is "completed" or "error".
	Outcome string `gorm:"size:32;not null;default:''"`
	// Contacts is how many contacts GHL holds; Missing the patients whose
	// contact GHL no longer has (sent again by the next sync);
	// Duplicates the contacts that are a second one of a patient; Changes
	// the contacts' changes no webhook delivered (now in the inbox),
	// AppointmentChanges the appointments'.
	Contacts           int    `gorm:"not null;default:0"`
	Missing            int    `gorm:"not null;default:0"`
	Duplicates         int    `gorm:"not null;default:0"`
	Changes            int    `gorm:"not null;default:0"`
	AppointmentChanges int    `gorm:"not null;default:0"`
	Calls              int    `gorm:"not null;default:0"`
	Error              string `gorm:"type:text;not null;default:''"`
}

// TableName pins the table name.
func (ReconcileRun) TableName() string { return "reconcile_runs" }

// SaveReconcileRun inserts or updates r.
func (s *Store) SaveReconcileRun(ctx context.Context, r *ReconcileRun) error {
	if err := s.db.WithContext(ctx).Save(r).Error; err != nil {
		return fmt.Errorf("store.SaveReconcileRun %s: %w", r.LocationID, err)
	}
	return nil
}

// LatestReconcileRuns returns each location's latest reconciliation.
func (s *Store) LatestReconcileRuns(ctx context.Context) (map[string]ReconcileRun, error) {
	var runs []ReconcileRun
	latest := s.db.Model(&ReconcileRun{}).Select("MAX(id)").Group("location_id")
	if err := s.db.WithContext(ctx).Where("id IN (?)", latest).Find(&runs).Error; err != nil {
		return nil, fmt.Errorf("store.LatestReconcileRuns: %w", err)
	}
	out := make(map[string]ReconcileRun, len(runs))
	for _, r := range runs {
		out[r.LocationID] = r
	}
	return out, nil
}

// SyncedContacts returns, for every patient of loc whose contact is
// recorded, its contact id by external id.
func (s *Store) SyncedContacts(ctx context.Context, loc string) (map[string]string, error) {
	var rows []PatientSync
	err := s.db.WithContext(ctx).Select("external_id", "contact_id").
		Where("location_id = ? AND contact_id <> ''", loc).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store.SyncedContacts %s: %w", loc, err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.ExternalID] = r.ContactID
	}
	return out, nil
}

// AllSent returns what ghlsync last sent of every record of loc and kind,
// by external id.
func (s *Store) AllSent(ctx context.Context, loc, kind string) (map[string]FieldHashes, error) {
	var rows []SentFields
	if err := s.db.WithContext(ctx).Where("location_id = ? AND kind = ?", loc, kind).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.AllSent %s: %w", loc, err)
	}
	out := make(map[string]FieldHashes, len(rows))
	for _, r := range rows {
		out[r.ExternalID] = decodeHashes(r.Fields)
	}
	return out, nil
}

// AllSeen returns what GHL last showed of every record of loc and kind,
// by GHL id.
func (s *Store) AllSeen(ctx context.Context, loc, kind string) (map[string]FieldHashes, error) {
	var rows []SeenFields
	if err := s.db.WithContext(ctx).Where("location_id = ? AND kind = ?", loc, kind).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.AllSeen %s: %w", loc, err)
	}
	out := make(map[string]FieldHashes, len(rows))
	for _, r := range rows {
		out[r.GHLID] = decodeHashes(r.Fields)
	}
	return out, nil
}

// ResendPatients makes the next sync send the patients of loc again, as
// changed: their contact is gone from GHL.
func (s *Store) ResendPatients(ctx context.Context, loc string, externalIDs []string) error {
	for i := 0; i < len(externalIDs); i += 500 {
		batch := externalIDs[i:min(i+500, len(externalIDs))]
		err := s.db.WithContext(ctx).Model(&PatientSync{}).Where("location_id = ? AND external_id IN ?", loc, batch).
			Updates(map[string]any{"sent_hash": "", "failed_hash": "", "updated_at": s.now().UTC()}).Error
		if err != nil {
			return fmt.Errorf("store.ResendPatients %s: %w", loc, err)
		}
	}
	return nil
}

// InboundStatus is a location's inbound direction at a glance, for the
// status page.
type InboundStatus struct {
	// Changes and Pending count the inbox rows, all and those the clinic
	// has not processed; Conflicts those of the pending that are
	// conflicts a sync left alone (conflict_policy report).
	Changes, Pending, Conflicts int64
	// LastReconcile is the latest reconciliation, nil when none ran.
	LastReconcile *ReconcileRun
}

// InboundStatus returns the inbox counts and the latest reconciliation of
// loc.
func (s *Store) InboundStatus(ctx context.Context, loc string) (InboundStatus, error) {
	var st InboundStatus
	var err error
	if st.Changes, st.Pending, err = s.CountChanges(ctx, loc); err != nil {
		return st, err
	}
	err = s.db.WithContext(ctx).Model(&Change{}).Where("location_id = ? AND processed = ? AND kind = ?", loc, false, ChangeContactConflict).
		Count(&st.Conflicts).Error
	if err != nil {
		return st, fmt.Errorf("store.InboundStatus %s: %w", loc, err)
	}
	var runs []ReconcileRun
	if err := s.db.WithContext(ctx).Where("location_id = ?", loc).Order("id DESC").Limit(1).Find(&runs).Error; err != nil {
		return st, fmt.Errorf("store.InboundStatus %s: %w", loc, err)
	}
	if len(runs) == 1 {
		st.LastReconcile = &runs[0]
	}
	return st, nil
}

// AppointmentWindow returns the calendars the appointments of loc that
// GHL holds are in, and the span of their times, for a reconciliation's
// reading of GHL's calendars; no calendars when there are none.
func (s *Store) AppointmentWindow(ctx context.Context, loc string) (calendars []string, from, to time.Time, err error) {
	err = s.db.WithContext(ctx).Raw(`SELECT DISTINCT a.calendar_id FROM appointments a
		JOIN sync_appointments s ON s.location_id = a.location_id AND s.external_id = a.external_id
		WHERE a.location_id = ? AND s.event_id <> '' ORDER BY a.calendar_id`, loc).Scan(&calendars).Error
	if err != nil || len(calendars) == 0 {
		return nil, time.Time{}, time.Time{}, err
	}
	var span struct {
		From, To string
	}
	// Read as text: SQLite keeps the times as text, and MIN of those is a
	// string to the driver.
	err = s.db.WithContext(ctx).Raw(`SELECT MIN(a.starts_at) AS "from", MAX(a.ends_at) AS "to" FROM appointments a
		JOIN sync_appointments s ON s.location_id = a.location_id AND s.external_id = a.external_id
		WHERE a.location_id = ? AND s.event_id <> ''`, loc).Scan(&span).Error
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("store.AppointmentWindow %s: %w", loc, err)
	}
	if from, err = parseDBTime(span.From); err == nil {
		to, err = parseDBTime(span.To)
	}
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("store.AppointmentWindow %s: %w", loc, err)
	}
	return calendars, from, to, nil
}

// parseDBTime reads a time as PostgreSQL and SQLite write it as text.
func parseDBTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05-07"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read the time %q", s)
}

// SyncedEvents returns, for every appointment of loc that GHL holds, its
// GHL event id by external id.
func (s *Store) SyncedEvents(ctx context.Context, loc string) (map[string]string, error) {
	var rows []AppointmentSync
	err := s.db.WithContext(ctx).Select("external_id", "event_id").
		Where("location_id = ? AND event_id <> ''", loc).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store.SyncedEvents %s: %w", loc, err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.ExternalID] = r.EventID
	}
	return out, nil
}

// ResendAppointments makes the next sync send the appointments of loc
// again, as changed: their event is gone from GHL.
func (s *Store) ResendAppointments(ctx context.Context, loc string, externalIDs []string) error {
	for i := 0; i < len(externalIDs); i += 500 {
		batch := externalIDs[i:min(i+500, len(externalIDs))]
		err := s.db.WithContext(ctx).Model(&AppointmentSync{}).Where("location_id = ? AND external_id IN ?", loc, batch).
			Updates(map[string]any{"sent_hash": "", "failed_hash": "", "updated_at": s.now().UTC()}).Error
		if err != nil {
			return fmt.Errorf("store.ResendAppointments %s: %w", loc, err)
		}
	}
	return nil
}
