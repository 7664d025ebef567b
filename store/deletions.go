package store

import (
	"context"
	"fmt"
	"time"
)

// Deletions: a record ghlsync pushed to GHL whose source row has deleted_at
// set, or is gone from the table, is a deletion. The sync acts on it in
// GHL (syncer/deletions.go) and then forgets its sync state, so that it is
// acted on once; a row that comes back (deleted_at cleared, or inserted
// again) is new to ghlsync and pushed again.

// Deletion is a record to act on in GHL: its external id and its GHL id
// (the contact of a patient, the event of an appointment).
type Deletion struct {
	ExternalID string
	GHLID      string
}

// DeletedPatients returns up to limit patients of loc that have a contact
// in GHL but no live row in patients (deleted_at set, or the row gone), in
// external id order.
func (s *Store) DeletedPatients(ctx context.Context, loc string, limit int) ([]Deletion, error) {
	var out []Deletion
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id, s.contact_id AS ghl_id FROM sync_patients s
		WHERE s.location_id = ? AND s.contact_id <> '' AND NOT EXISTS (SELECT 1 FROM patients p
			WHERE p.location_id = s.location_id AND p.external_id = s.external_id AND p.deleted_at IS NULL)
		ORDER BY s.external_id LIMIT ?`, loc, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.DeletedPatients %s: %w", loc, err)
	}
	return out, nil
}

// DeletedAppointments is DeletedPatients for appointments: those with an
// event in GHL but no live row in appointments.
func (s *Store) DeletedAppointments(ctx context.Context, loc string, limit int) ([]Deletion, error) {
	var out []Deletion
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id, s.event_id AS ghl_id FROM sync_appointments s
		WHERE s.location_id = ? AND s.event_id <> '' AND NOT EXISTS (SELECT 1 FROM appointments a
			WHERE a.location_id = s.location_id AND a.external_id = s.external_id AND a.deleted_at IS NULL)
		ORDER BY s.external_id LIMIT ?`, loc, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.DeletedAppointments %s: %w", loc, err)
	}
	return out, nil
}

// SyncedCounts returns how many patients and appointments of loc ghlsync
// holds in GHL: the base of the deletion cap.
func (s *Store) SyncedCounts(ctx context.Context, loc string) (patients, appointments int, err error) {
	var p, a int64
	db := s.db.WithContext(ctx)
	if err = db.Model(&PatientSync{}).Where("location_id = ? AND contact_id <> ''", loc).Count(&p).Error; err == nil {
		err = db.Model(&AppointmentSync{}).Where("location_id = ? AND event_id <> ''", loc).Count(&a).Error
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store.SyncedCounts %s: %w", loc, err)
	}
	return int(p), int(a), nil
}

// ForgetPatientSync removes a patient's sync state, once its deletion was
// acted on in GHL.
func (s *Store) ForgetPatientSync(ctx context.Context, loc, externalID string) error {
	err := s.db.WithContext(ctx).Where("location_id = ? AND external_id = ?", loc, externalID).Delete(&PatientSync{}).Error
	if err != nil {
		return fmt.Errorf("store.ForgetPatientSync %s %s: %w", loc, externalID, err)
	}
	return nil
}

// ForgetAppointmentSync removes an appointment's sync state, once it was
// cancelled in GHL.
func (s *Store) ForgetAppointmentSync(ctx context.Context, loc, externalID string) error {
	err := s.db.WithContext(ctx).Where("location_id = ? AND external_id = ?", loc, externalID).Delete(&AppointmentSync{}).Error
	if err != nil {
		return fmt.Errorf("store.ForgetAppointmentSync %s %s: %w", loc, externalID, err)
	}
	return nil
}

// DeletedPatientsSince returns up to limit patients of loc that have a
// contact in GHL and whose row was deleted (deleted_at set) and changed at
// or after since, in external id order: the deletions an incremental pass
// sees. A row gone from the table is seen only by DeletedPatients, which
// a full pass asks.
func (s *Store) DeletedPatientsSince(ctx context.Context, loc string, since time.Time, limit int) ([]Deletion, error) {
	return s.deletedSince(ctx, "store.DeletedPatientsSince", "patients", "contact_id", loc, since, limit)
}

// DeletedAppointmentsSince is DeletedPatientsSince for appointments.
func (s *Store) DeletedAppointmentsSince(ctx context.Context, loc string, since time.Time, limit int) ([]Deletion, error) {
	return s.deletedSince(ctx, "store.DeletedAppointmentsSince", "appointments", "event_id", loc, since, limit)
}

// deletedSince is DeletedPatientsSince of the clinic's table (patients or
// appointments), whose sync state (sync_<table>) keeps the GHL id in
// ghlColumn.
func (s *Store) deletedSince(ctx context.Context, op, table, ghlColumn, loc string, since time.Time, limit int) ([]Deletion, error) {
	changed, arg, hint := s.changedSince("t", table, since)
	var out []Deletion
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id, s.`+ghlColumn+` AS ghl_id FROM `+table+` t`+hint+`
		JOIN sync_`+table+` s ON s.location_id = t.location_id AND s.external_id = t.external_id
		WHERE t.location_id = ? AND `+changed+` AND t.deleted_at IS NOT NULL AND s.`+ghlColumn+` <> ''
		ORDER BY s.external_id LIMIT ?`, loc, arg, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, loc, err)
	}
	return out, nil
}
