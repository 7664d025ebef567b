package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Incremental passes. A sync pass reads only the rows of a location whose
// updated_at is at or after its "since" time: the location's watermark
// less an overlap. The watermark of a location and kind is the database's
// clock at the start of the last pass that completed, kept in
// sync_watermarks (ghlsync's own table), so the clinic's rows are compared
// with the clock that stamped them, not a worker's. The indexes on
// (location_id, updated_at) make the read cost what changed, not the
// table's size.
//
// On SQLite, whose timestamps are text in whatever form the clinic system
// wrote (CURRENT_TIMESTAMP's "2006-01-02 15:04:05", with a 'T', with an
// offset), updated_at is compared as julianday(updated_at), which reads
// every one of those forms, and the index is on that expression. A value
// SQLite cannot read as a time is never "changed": only a full pass sees
// such a row.

// SyncWatermark is the watermark of one location and kind (patients,
// appointments).
type SyncWatermark struct {
	LocationID string `gorm:"primaryKey;size:255"`
	Kind       string `gorm:"primaryKey;size:16"`
	// Watermark is the database's clock when the last completed pass
	// started to read.
	Watermark time.Time `gorm:"not null"`
	UpdatedAt time.Time
}

// TableName pins the table name.
func (SyncWatermark) TableName() string { return "sync_watermarks" }

// changedIndexes are the indexes that make an incremental read cheap, as
// Migrate creates them: plain on PostgreSQL, on julianday(updated_at) on
// SQLite (see above).
var changedIndexes = []struct{ name, table string }{
	{"patients_location_updated", "patients"},
	{"appointments_location_updated", "appointments"},
}

// createChangedIndexes creates changedIndexes if they do not exist.
func (s *Store) createChangedIndexes(db *gorm.DB) error {
	expr := "julianday(updated_at)"
	if s.Postgres() {
		expr = "updated_at"
	}
	for _, ix := range changedIndexes {
		sql := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (location_id, %s)", ix.name, ix.table, expr)
		if err := db.Exec(sql).Error; err != nil {
			return fmt.Errorf("store.Migrate: index %s: %w", ix.name, err)
		}
	}
	return nil
}

// changedSince returns the condition "the row aliased alias changed at or
// after since" and its argument, and the SQLite index hint of table for
// it ("" on PostgreSQL, whose planner picks the index from statistics).
// SQLite has none of those statistics unless ANALYZE ran, and would walk
// the external id index of the whole location instead.
func (s *Store) changedSince(alias, table string, since time.Time) (cond string, arg any, hint string) {
	if s.Postgres() {
		return alias + ".updated_at >= ?", since.UTC(), ""
	}
	return "julianday(" + alias + ".updated_at) >= ?", julianDay(since), " INDEXED BY " + table + "_location_updated"
}

// julianDay is t as SQLite's julianday() gives it.
func julianDay(t time.Time) float64 {
	return float64(t.UnixNano())/float64(24*time.Hour) + 2440587.5
}

// DatabaseNow returns the database's clock: the time a pass's watermark
// is taken at, on the clock that stamps the clinic's updated_at
// (CURRENT_TIMESTAMP), whatever the worker's clock says.
func (s *Store) DatabaseNow(ctx context.Context) (time.Time, error) {
	if s.Postgres() {
		var t time.Time
		if err := s.db.WithContext(ctx).Raw("SELECT clock_timestamp()").Scan(&t).Error; err != nil {
			return time.Time{}, fmt.Errorf("store.DatabaseNow: %w", err)
		}
		return t.UTC(), nil
	}
	var v string
	if err := s.db.WithContext(ctx).Raw("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").Scan(&v).Error; err != nil {
		return time.Time{}, fmt.Errorf("store.DatabaseNow: %w", err)
	}
	t, err := ParseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("store.DatabaseNow: %w", err)
	}
	return t, nil
}

// Watermark returns the watermark of loc and kind; ok is false when no
// pass of them completed yet.
func (s *Store) Watermark(ctx context.Context, loc, kind string) (t time.Time, ok bool, err error) {
	var w SyncWatermark
	err = s.db.WithContext(ctx).Where("location_id = ? AND kind = ?", loc, kind).Take(&w).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store.Watermark %s %s: %w", loc, kind, err)
	}
	return w.Watermark.UTC(), true, nil
}

// AdvanceWatermark sets the watermark of loc and kind to t, unless it is
// at or after t already: a pass that started earlier and completed later
// than another does not move it back. Only one sync of a location runs at
// a time, so the read and the write need no transaction.
func (s *Store) AdvanceWatermark(ctx context.Context, loc, kind string, t time.Time) error {
	old, ok, err := s.Watermark(ctx, loc, kind)
	if err != nil {
		return err
	}
	if ok && !t.After(old) {
		return nil
	}
	w := SyncWatermark{LocationID: loc, Kind: kind, Watermark: t.UTC(), UpdatedAt: s.now().UTC()}
	err = s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}, {Name: "kind"}},
		DoUpdates: clause.AssignmentColumns([]string{"watermark", "updated_at"}),
	}).Create(&w).Error
	if err != nil {
		return fmt.Errorf("store.AdvanceWatermark %s %s: %w", loc, kind, err)
	}
	return nil
}
