package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// LocationSettings are what a location's operator chooses about its sync.
// A location without a row has DefaultSettings; every column has a
// database default, so a row inserted with plain SQL naming only the
// location is valid too.
type LocationSettings struct {
	LocationID string `gorm:"primaryKey;size:255"`
	// Notify lets GHL run the calendar's automations (confirmation SMS and
	// email) for appointments ghlsync writes. Off by default: a backfill or
	// re-sync must not message every patient.
	Notify bool `gorm:"not null;default:false"`
	// PhoneRegion is the ISO 3166 alpha-2 region a phone number without a
	// country code is read in, and the country assumed for an address
	// without one; empty means DefaultPhoneRegion.
	PhoneRegion string `gorm:"size:2;not null;default:''"`
	UpdatedAt   time.Time
}

// TableName pins the table name.
func (LocationSettings) TableName() string { return "location_settings" }

// DefaultPhoneRegion is the region of a location whose settings name none:
// GHL's home market.
const DefaultPhoneRegion = "US"

// DefaultSettings are the settings of a location without a row.
func DefaultSettings(loc string) LocationSettings {
	return LocationSettings{LocationID: loc}
}

// Region is the location's phone region, DefaultPhoneRegion when unset.
func (ls LocationSettings) Region() string {
	if ls.PhoneRegion == "" {
		return DefaultPhoneRegion
	}
	return ls.PhoneRegion
}

var regionCode = regexp.MustCompile(`^[A-Z]{2}$`)

// Validate reports a setting that cannot be stored, naming it.
func (ls LocationSettings) Validate() error {
	if err := CheckID(ls.LocationID); err != nil {
		return fmt.Errorf("location: %w", err)
	}
	if ls.PhoneRegion != "" && !regionCode.MatchString(ls.PhoneRegion) {
		return fmt.Errorf("phone region %q: want an ISO 3166 alpha-2 code such as US or GB", ls.PhoneRegion)
	}
	return nil
}

// Settings returns the settings of loc: its row, or DefaultSettings.
func (s *Store) Settings(ctx context.Context, loc string) (LocationSettings, error) {
	var ls LocationSettings
	err := s.db.WithContext(ctx).Where("location_id = ?", loc).Take(&ls).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return DefaultSettings(loc), nil
	}
	if err != nil {
		return LocationSettings{}, fmt.Errorf("store.Settings %s: %w", loc, err)
	}
	return ls, nil
}

// SaveSettings validates and stores the settings of ls.LocationID,
// replacing what was there.
func (s *Store) SaveSettings(ctx context.Context, ls LocationSettings) error {
	if err := ls.Validate(); err != nil {
		return fmt.Errorf("store.SaveSettings: %w", err)
	}
	ls.UpdatedAt = s.now().UTC()
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}},
		UpdateAll: true,
	}).Create(&ls).Error
	if err != nil {
		return fmt.Errorf("store.SaveSettings %s: %w", ls.LocationID, err)
	}
	return nil
}
