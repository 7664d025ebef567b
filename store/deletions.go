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
	changed, arg, hint := s.changedSince("p", "patients", since)
	var out []Deletion
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id, s.contact_id AS ghl_id FROM patients p`+hint+`
		JOIN sync_patients s ON s.location_id = p.location_id AND s.external_id = p.external_id
		WHERE p.location_id = ? AND `+changed+` AND p.deleted_at IS NOT NULL AND s.contact_id <> ''
		ORDER BY s.external_id LIMIT ?`, loc, arg, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.DeletedPatientsSince %s: %w", loc, err)
	}
	return out, nil
}

// DeletedAppointmentsSince is DeletedPatientsSince for appointments.
func (s *Store) DeletedAppointmentsSince(ctx context.Context, loc string, since time.Time, limit int) ([]Deletion, error) {
	changed, arg, hint := s.changedSince("a", "appointments", since)
	var out []Deletion
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id, s.event_id AS ghl_id FROM appointments a`+hint+`
		JOIN sync_appointments s ON s.location_id = a.location_id AND s.external_id = a.external_id
		WHERE a.location_id = ? AND `+changed+` AND a.deleted_at IS NOT NULL AND s.event_id <> ''
		ORDER BY s.external_id LIMIT ?`, loc, arg, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.DeletedAppointmentsSince %s: %w", loc, err)
	}
	return out, nil
}
