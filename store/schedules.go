package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Schedule is one periodic task: the scheduler enqueues TaskType with
// Payload on Queue at every slot of its schedule, which is either an interval
// (EverySeconds) or a cron expression (Cron, in time zone TZ).
//
// The row, not any process, holds the schedule's state: NextRunAt is the
// slot that is due next and the key of the compare-and-set that records a
// run (see ClaimScheduleRun), so schedulers may restart, or run as several
// replicas, without resetting or doubling anything. All times are UTC and
// whole seconds: slots name asynq task ids at second resolution, and whole
// seconds compare exactly on both PostgreSQL and SQLite.
type Schedule struct {
	Name     string `gorm:"primaryKey;size:64"`
	TaskType string `gorm:"size:128;not null"`
	// Payload is the task's JSON payload; empty means none.
	Payload string `gorm:"type:text;not null;default:''"`
	// EverySeconds is the interval; 0 when the schedule is a cron one.
	EverySeconds int64 `gorm:"not null;default:0"`
	// Cron is a standard five-field cron expression (robfig/cron), without
	// a CRON_TZ= prefix; empty when the schedule is an interval one.
	Cron string `gorm:"size:128;not null;default:''"`
	// TZ is the IANA time zone of Cron; empty means UTC.
	TZ      string `gorm:"size:64;not null;default:''"`
	Queue   string `gorm:"size:64;not null;default:default"`
	Enabled bool   `gorm:"not null;default:true"`
	// LastRunAt is when the last slot was enqueued (not the slot itself).
	LastRunAt *time.Time
	// NextRunAt is the next slot. NULL (a row inserted by hand) makes a
	// scheduler fill it in.
	NextRunAt *time.Time
	TotalRuns int64 `gorm:"not null;default:0"`
	// ChangedAt is when the schedule itself (not its run state) last changed
	// through ghlsync; an SQL edit leaves it as it was.
	ChangedAt time.Time
	CreatedAt time.Time
}

// TableName pins the table name.
func (Schedule) TableName() string { return "schedules" }

// Every returns the interval of an interval schedule, 0 for a cron one.
func (s *Schedule) Every() time.Duration { return time.Duration(s.EverySeconds) * time.Second }

// Schedules lists every schedule, ordered by name.
func (s *Store) Schedules(ctx context.Context) ([]Schedule, error) {
	var rows []Schedule
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.Schedules: %w", err)
	}
	return rows, nil
}

// EnabledSchedules lists the enabled schedules, ordered by name.
func (s *Store) EnabledSchedules(ctx context.Context) ([]Schedule, error) {
	var rows []Schedule
	if err := s.db.WithContext(ctx).Where("enabled = ?", true).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.EnabledSchedules: %w", err)
	}
	return rows, nil
}

// Schedule returns the schedule called name, or an error wrapping
// ErrNotFound.
func (s *Store) Schedule(ctx context.Context, name string) (*Schedule, error) {
	var row Schedule
	err := s.db.WithContext(ctx).Where("name = ?", name).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("store.Schedule %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store.Schedule %s: %w", name, err)
	}
	return &row, nil
}

// CreateSchedule inserts row unless a schedule of that name exists, and
// reports whether it did. Two processes creating the same schedule at once
// is not an error: one of them creates it.
func (s *Store) CreateSchedule(ctx context.Context, row Schedule) (bool, error) {
	now := s.now().UTC().Truncate(time.Second)
	if row.CreatedAt.IsZero() {
		row.CreatedAt = now
	}
	if row.ChangedAt.IsZero() {
		row.ChangedAt = now
	}
	normalizeSchedule(&row)
	// A map, because from a struct GORM replaces a zero field that has a
	// default by the default: Enabled=false would be stored as true.
	res := s.db.WithContext(ctx).Model(&Schedule{}).Clauses(clause.OnConflict{DoNothing: true}).Create(map[string]any{
		"name": row.Name, "task_type": row.TaskType, "payload": row.Payload,
		"every_seconds": row.EverySeconds, "cron": row.Cron, "tz": row.TZ,
		"queue": row.Queue, "enabled": row.Enabled,
		"last_run_at": row.LastRunAt, "next_run_at": row.NextRunAt, "total_runs": row.TotalRuns,
		"changed_at": row.ChangedAt, "created_at": row.CreatedAt,
	})
	if res.Error != nil {
		return false, fmt.Errorf("store.CreateSchedule %s: %w", row.Name, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// DeleteSchedule deletes the schedule called name. An unknown name gives
// an error wrapping ErrNotFound. Tasks it enqueued stay queued.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	res := s.db.WithContext(ctx).Where("name = ?", name).Delete(&Schedule{})
	if res.Error != nil {
		return fmt.Errorf("store.DeleteSchedule %s: %w", name, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store.DeleteSchedule %s: %w", name, ErrNotFound)
	}
	return nil
}

// ErrUnchanged, returned by the change function of UpdateSchedule, means
// there is nothing to write.
var ErrUnchanged = errors.New("store: unchanged")

// UpdateSchedule applies change to the schedule called name and writes the
// result, setting ChangedAt, all in one transaction that holds the row, so
// that a run recorded meanwhile by a scheduler is neither lost nor based on
// the old schedule (its compare-and-set on NextRunAt fails instead). When
// change returns ErrUnchanged nothing is written and UpdateSchedule returns
// the row as it is, with a nil error; any other error aborts the update and
// is returned as it is. An unknown name gives an error wrapping ErrNotFound.
func (s *Store) UpdateSchedule(ctx context.Context, name string, change func(*Schedule) error) (*Schedule, error) {
	var row, read Schedule
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		q := tx.Where("name = ?", name)
		if s.Postgres() {
			// SQLite needs no row lock: ghlsync's SQLite transactions
			// begin IMMEDIATE, which takes the database's write lock.
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		if err := q.Take(&row).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("store.UpdateSchedule %s: %w", name, ErrNotFound)
			}
			return fmt.Errorf("store.UpdateSchedule %s: %w", name, err)
		}
		read = row
		if err := change(&row); err != nil {
			return err
		}
		row.Name = name
		row.ChangedAt = s.now().UTC().Truncate(time.Second)
		normalizeSchedule(&row)
		if err := tx.Save(&row).Error; err != nil {
			return fmt.Errorf("store.UpdateSchedule %s: %w", name, err)
		}
		return nil
	})
	if errors.Is(err, ErrUnchanged) {
		return &read, nil
	}
	if err != nil {
		return nil, err
	}
	return &row, nil
}

// InitScheduleNext fills in the NextRunAt of a schedule that has none (a
// row inserted by hand) and reports whether this call did it; when several
// schedulers race, one wins and the others use its value, so that all of
// them agree on the slot.
func (s *Store) InitScheduleNext(ctx context.Context, name string, next time.Time) (bool, error) {
	res := s.db.WithContext(ctx).Model(&Schedule{}).
		Where("name = ? AND next_run_at IS NULL", name).
		Update("next_run_at", next.UTC().Truncate(time.Second))
	if res.Error != nil {
		return false, fmt.Errorf("store.InitScheduleNext %s: %w", name, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// ClaimScheduleRun records that the slot seen in row (its NextRunAt) ran at
// ranAt and that the next slot is next, if and only if the row still has
// the NextRunAt and TotalRuns that were read: a compare-and-set. It reports
// whether this call recorded the run; false means another scheduler
// recorded it first, or the schedule was changed meanwhile.
//
// TotalRuns is part of the comparison because NextRunAt alone could, after
// an edit, come back to a value that was read before; every recorded run
// increments TotalRuns, so two claims from one read cannot both succeed.
func (s *Store) ClaimScheduleRun(ctx context.Context, row *Schedule, ranAt, next time.Time) (bool, error) {
	if row.NextRunAt == nil {
		return false, fmt.Errorf("store.ClaimScheduleRun %s: no next_run_at", row.Name)
	}
	res := s.db.WithContext(ctx).Model(&Schedule{}).
		Where("name = ? AND next_run_at = ? AND total_runs = ?", row.Name, row.NextRunAt.UTC(), row.TotalRuns).
		Updates(map[string]any{
			"last_run_at": ranAt.UTC().Truncate(time.Second),
			"next_run_at": next.UTC().Truncate(time.Second),
			"total_runs":  gorm.Expr("total_runs + 1"),
		})
	if res.Error != nil {
		return false, fmt.Errorf("store.ClaimScheduleRun %s: %w", row.Name, res.Error)
	}
	return res.RowsAffected == 1, nil
}

func normalizeSchedule(row *Schedule) {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC().Truncate(time.Second)
		return &u
	}
	row.LastRunAt = utc(row.LastRunAt)
	row.NextRunAt = utc(row.NextRunAt)
	row.ChangedAt = row.ChangedAt.UTC().Truncate(time.Second)
	row.CreatedAt = row.CreatedAt.UTC().Truncate(time.Second)
}
