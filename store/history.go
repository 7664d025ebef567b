package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// RefreshRun is the log of one refresh of a location's token that called
// GHL or failed: the web's location page shows them, so that an operator
// sees what happened before a location came to need reconnecting, not
// only that it does. A request that another refresh already answered
// (outcome fresh) calls nobody and is not logged.
type RefreshRun struct {
	ID         int64     `gorm:"primaryKey;autoIncrement"`
	LocationID string    `gorm:"size:255;not null;index:refresh_runs_location,priority:1"`
	At         time.Time `gorm:"not null;index:refresh_runs_location,priority:2"`
	// Outcome is refresh's outcome (refreshed, needs_reauth, inactive),
	// or RefreshFailed.
	Outcome string `gorm:"size:32;not null"`
	// Reason is refresh.FailureReason of a failed refresh, such as
	// ghl_unavailable or key_missing.
	Reason string `gorm:"size:32;not null;default:''"`
	// Message says what went wrong, or what to do; never a token.
	Message string `gorm:"type:text;not null;default:''"`
	// ExpiresAt is when the token a successful refresh stored expires.
	ExpiresAt *time.Time
}

// TableName pins the table name.
func (RefreshRun) TableName() string { return "refresh_runs" }

// RefreshFailed is the outcome of a refresh that ended in an error other
// than GHL's verdict on the location (needs_reauth, inactive).
const RefreshFailed = "failed"

// KeepRefreshRuns is how many refresh runs of a location are kept; older
// ones are deleted as new ones are recorded. At one refresh a day it is
// months of history, and a location failing every retry cannot grow the
// table without bound.
//
// RecordRefresh (failures, and the entries of tokens stored on a retry)
// prunes at every entry. The entries SaveRefreshedLogged stores with the
// tokens of the refreshes that succeeded, nearly all of them, prune only
// when pruneDue, so a location holds at most KeepRefreshRuns +
// refreshRunsPruneEvery - 1 runs between prunes (a connection, which
// takes a token version without an entry, can stretch one such span by as
// much again).
const KeepRefreshRuns = 100

// refreshRunsPruneEvery: SaveRefreshedLogged prunes a location's runs at
// every refreshRunsPruneEvery-th token version, rather than at every
// entry: a prune reads up to KeepRefreshRuns of the location's entries to
// find the oldest to keep, work that nine refreshes in ten now skip.
const refreshRunsPruneEvery = 10

// pruneDue says whether storing the token of version v prunes its
// location's runs. The version is the location's own count of stored
// tokens, so every location prunes at the same pace whatever the others
// do.
func pruneDue(v int64) bool { return v%refreshRunsPruneEvery == 0 }

// RecordRefresh logs a refresh run (its ID is set; a zero At is now) and
// deletes the location's runs beyond the latest KeepRefreshRuns.
func (s *Store) RecordRefresh(ctx context.Context, r *RefreshRun) error {
	// One transaction: one commit (one WAL flush) for the row and its
	// prune, where two statements of their own would cost two.
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return s.recordRun(tx, r, true) })
	if err != nil {
		return fmt.Errorf("store.RecordRefresh %s: %w", r.LocationID, err)
	}
	return nil
}

// stampRun sets r's time: a zero At is now, and every At is UTC.
func (s *Store) stampRun(r *RefreshRun) {
	if r.At.IsZero() {
		r.At = s.now()
	}
	r.At = r.At.UTC()
}

// recordRun inserts r in tx and, with prune, prunes its location's runs.
func (s *Store) recordRun(tx *gorm.DB, r *RefreshRun, prune bool) error {
	s.stampRun(r)
	if err := tx.Create(r).Error; err != nil {
		return err
	}
	if prune {
		return pruneRuns(tx, r.LocationID)
	}
	return nil
}

// pruneRuns deletes loc's runs beyond the latest KeepRefreshRuns, in tx.
func pruneRuns(tx *gorm.DB, loc string) error {
	// With fewer rows the subquery is NULL, and nothing is older than it.
	oldest := tx.Session(&gorm.Session{NewDB: true}).Model(&RefreshRun{}).Select("id").Where("location_id = ?", loc).
		Order("id DESC").Offset(KeepRefreshRuns - 1).Limit(1)
	if err := tx.Where("location_id = ? AND id < (?)", loc, oldest).Delete(&RefreshRun{}).Error; err != nil {
		return fmt.Errorf("pruning: %w", err)
	}
	return nil
}

// RefreshRuns returns the latest refresh runs of loc, newest first.
func (s *Store) RefreshRuns(ctx context.Context, loc string, limit int) ([]RefreshRun, error) {
	var runs []RefreshRun
	if err := s.db.WithContext(ctx).Where("location_id = ?", loc).Order("at DESC, id DESC").Limit(limit).Find(&runs).Error; err != nil {
		return nil, fmt.Errorf("store.RefreshRuns %s: %w", loc, err)
	}
	return runs, nil
}

// FailedRecord is a patient or an appointment of a location whose last
// sync failed: GHL refused it, or it could not be sent at all.
type FailedRecord struct {
	// Kind is "patients" or "appointments", as sync runs name them.
	Kind       string
	ExternalID string
	Reason     string
	// FailedAt is when it was last tried and failed.
	FailedAt *time.Time
}

// FailedRecords returns the failed records of loc, the latest failures
// first (offset and limit page through them), and how many there are in
// all.
func (s *Store) FailedRecords(ctx context.Context, loc string, offset, limit int) ([]FailedRecord, int64, error) {
	const failed = `SELECT 'patients' AS kind, external_id, last_error AS reason, failed_at FROM sync_patients
			WHERE location_id = ? AND last_error <> ''
		UNION ALL
		SELECT 'appointments' AS kind, external_id, last_error AS reason, failed_at FROM sync_appointments
			WHERE location_id = ? AND last_error <> ''`
	db := s.db.WithContext(ctx)
	var total int64
	if err := db.Raw("SELECT COUNT(*) FROM ("+failed+") f", loc, loc).Scan(&total).Error; err != nil {
		return nil, 0, fmt.Errorf("store.FailedRecords %s: %w", loc, err)
	}
	var rows []FailedRecord
	// NULLs last on both databases: a failure without a time is older
	// than every timed one.
	err := db.Raw("SELECT kind, external_id, reason, failed_at FROM ("+failed+") f "+
		"ORDER BY CASE WHEN failed_at IS NULL THEN 1 ELSE 0 END, failed_at DESC, kind, external_id LIMIT ? OFFSET ?",
		loc, loc, limit, offset).Scan(&rows).Error
	if err != nil {
		return nil, 0, fmt.Errorf("store.FailedRecords %s: %w", loc, err)
	}
	for i := range rows {
		if t := rows[i].FailedAt; t != nil {
			u := t.UTC()
			rows[i].FailedAt = &u
		}
	}
	return rows, total, nil
}
