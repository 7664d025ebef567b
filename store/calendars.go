package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"
)

// CalendarSetting is ghlsync's configuration of one GHL calendar (its own
// table, not the clinic's): the GHL user an appointment of the calendar is
// booked with when its practitioner maps to none. A calendar with team
// members in GHL refuses appointments without an owner of its team, so
// such a calendar needs either mapped practitioners or a default user. The
// operator writes it with SetCalendarDefaultUser or plain SQL; every
// column but the identifying ones has a database default.
type CalendarSetting struct {
	LocationID    string    `gorm:"primaryKey;size:255"`
	CalendarID    string    `gorm:"primaryKey;size:255"`
	DefaultUserID string    `gorm:"size:255;not null;default:''"`
	UpdatedAt     time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

// TableName pins the table name: the README's SQL names it.
func (CalendarSetting) TableName() string { return "calendar_settings" }

// SetCalendarDefaultUser makes userID (a GHL user id; "" for none) the
// default user of calendar calendarID of loc.
func (s *Store) SetCalendarDefaultUser(ctx context.Context, loc, calendarID, userID string) error {
	for _, f := range []struct{ name, id string }{{"location", loc}, {"calendar", calendarID}, {"user", userID}} {
		if f.id == "" && f.name != "user" {
			return fmt.Errorf("store.SetCalendarDefaultUser: the %s id is empty", f.name)
		}
		if err := CheckID(f.id); err != nil {
			return fmt.Errorf("store.SetCalendarDefaultUser: %s id: %w", f.name, err)
		}
	}
	cs := CalendarSetting{LocationID: loc, CalendarID: calendarID, DefaultUserID: userID, UpdatedAt: s.now().UTC()}
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}, {Name: "calendar_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"default_user_id", "updated_at"}),
	}).Create(&cs).Error
	if err != nil {
		return fmt.Errorf("store.SetCalendarDefaultUser %s %s: %w", loc, calendarID, err)
	}
	return nil
}

// CalendarSettings returns the calendar settings of loc, by calendar id.
func (s *Store) CalendarSettings(ctx context.Context, loc string) ([]CalendarSetting, error) {
	var out []CalendarSetting
	if err := s.db.WithContext(ctx).Where("location_id = ?", loc).Order("calendar_id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("store.CalendarSettings %s: %w", loc, err)
	}
	return out, nil
}
