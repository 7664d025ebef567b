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
	// DeletionAction is what a sync does to the contact of a patient the
	// clinic deleted: DeletionTagDND (also for ''), DeletionDelete or
	// DeletionNone. A deleted appointment is cancelled whichever.
	DeletionAction string `gorm:"size:16;not null;default:''"`
	// DeletionCap is the most deletions one pass may act on; a pass that
	// finds more acts on none. 0 means the default: 5% of the location's
	// records of that kind in GHL, or DefaultDeletionCap if larger.
	DeletionCap int `gorm:"not null;default:0"`
	UpdatedAt   time.Time
}

// Deletion actions (LocationSettings.DeletionAction).
const (
	// DeletionTagDND tags the contact DeletedTag and turns its DND on: it
	// stays in GHL, with its history, and gets no more messages.
	DeletionTagDND = "tag_dnd"
	// DeletionDelete deletes the contact in GHL.
	DeletionDelete = "delete"
	// DeletionNone leaves the contact as it is.
	DeletionNone = "none"
	// DeletedTag is the tag DeletionTagDND puts on the contact.
	DeletedTag = "ghlsync:deleted"
	// DefaultDeletionCap is the smallest default cap.
	DefaultDeletionCap = 50
)

// Deletion returns the location's deletion action, DeletionTagDND when
// unset.
func (ls LocationSettings) Deletion() string {
	if ls.DeletionAction == "" {
		return DeletionTagDND
	}
	return ls.DeletionAction
}

// DeletionLimit is the location's deletion cap for a kind of which GHL
// holds records records.
func (ls LocationSettings) DeletionLimit(records int) int {
	if ls.DeletionCap > 0 {
		return ls.DeletionCap
	}
	return max(DefaultDeletionCap, records*5/100)
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
	switch ls.DeletionAction {
	case "", DeletionTagDND, DeletionDelete, DeletionNone:
	default:
		return fmt.Errorf("deletion action %q: want %s, %s or %s", ls.DeletionAction, DeletionTagDND, DeletionDelete, DeletionNone)
	}
	if ls.DeletionCap < 0 {
		return fmt.Errorf("deletion cap %d: want 0 (the default) or more", ls.DeletionCap)
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
