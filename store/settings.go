package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	// Fields is the allow-list of what may be sent to GHL (ParseFields):
	// "" for every field, else field names (FieldNames) joined by commas.
	Fields string `gorm:"size:1024;not null;default:''"`
	// TitleTemplate makes the title of the location's appointments in GHL
	// (ParseTitleTemplate); "" sends the clinic's title as it is.
	TitleTemplate string `gorm:"size:1024;not null;default:''"`
	// ConflictPolicy says what wins when a contact changed in GHL and in
	// the clinic since the last sync: ConflictClinic (also for '') or
	// ConflictReport.
	ConflictPolicy string `gorm:"size:16;not null;default:''"`
	// RefuseCustomFields: a patient whose custom_fields name a key the
	// location has no custom field for is refused, saying so, instead of
	// the field being created (the default). The command line shows it
	// as create_custom_fields, on by default; it is stored the other way
	// round so that the zero value, and a row written with plain SQL, is
	// the default.
	RefuseCustomFields bool `gorm:"not null;default:false"`
	UpdatedAt          time.Time
}

// Conflict policies (LocationSettings.ConflictPolicy).
const (
	// ConflictClinic: the sync overwrites GHL, and the inbox records what
	// it overwrote.
	ConflictClinic = "clinic"
	// ConflictReport: the sync leaves the contact alone and reports it, in
	// the inbox and as the record's failure.
	ConflictReport = "report"
)

// Conflicts returns the location's conflict policy, ConflictClinic when
// unset.
func (ls LocationSettings) Conflicts() string {
	if ls.ConflictPolicy == "" {
		return ConflictClinic
	}
	return ls.ConflictPolicy
}

// CreatesCustomFields reports whether a sync creates the custom fields a
// patient's custom_fields name and the location lacks.
func (ls LocationSettings) CreatesCustomFields() bool { return !ls.RefuseCustomFields }

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
	if p := ls.ConflictPolicy; p != "" && p != ConflictClinic && p != ConflictReport {
		return fmt.Errorf("conflict policy %q: want %s or %s", p, ConflictClinic, ConflictReport)
	}
	if ls.DeletionCap < 0 {
		return fmt.Errorf("deletion cap %d: want 0 (the default) or more", ls.DeletionCap)
	}
	if f, err := ParseFields(ls.Fields); err != nil {
		return fmt.Errorf("fields: %w", err)
	} else if f != ls.Fields {
		return fmt.Errorf("fields %q: not in the stored form %q", ls.Fields, f)
	}
	t, err := ParseTitleTemplate(ls.TitleTemplate)
	if err != nil {
		return err
	}
	if !ls.Allows(FieldAppointmentTitle) && ls.TitleTemplate != "" && t.UsesTitle() {
		return fmt.Errorf("title_template shows {{title}}, the clinic's title, which fields does not allow (%s)", FieldAppointmentTitle)
	}
	return nil
}

// Title returns the location's appointment title template, parsed.
// Validate has refused one that does not parse, so an error here is a
// row written around it.
func (ls LocationSettings) Title() (*TitleTemplate, error) {
	return ParseTitleTemplate(ls.TitleTemplate)
}

// SettingKey is a setting as the settings command line shows and sets it.
type SettingKey struct {
	Name    string
	Default string
	Meaning string
	get     func(LocationSettings) string
	// set stores value in ls; Validate then checks the whole.
	set func(ls *LocationSettings, value string) error
}

// SettingKeys are the settings a location has, in the order they are
// listed.
var SettingKeys = []SettingKey{
	{
		Name: "notify", Default: "off",
		Meaning: "GHL runs the calendar's automations (confirmation SMS and email) for appointments ghlsync writes",
		get:     func(ls LocationSettings) string { return onOff(ls.Notify) },
		set: func(ls *LocationSettings, v string) (err error) {
			ls.Notify, err = parseOnOff(v)
			return err
		},
	},
	{
		Name: "phone_region", Default: DefaultPhoneRegion,
		Meaning: "the ISO 3166 alpha-2 region a phone number without a country code is read in",
		get:     func(ls LocationSettings) string { return ls.Region() },
		set: func(ls *LocationSettings, v string) error {
			ls.PhoneRegion = strings.ToUpper(strings.TrimSpace(v))
			if ls.PhoneRegion == DefaultPhoneRegion {
				ls.PhoneRegion = ""
			}
			return nil
		},
	},
	{
		Name: "fields", Default: AllFields,
		Meaning: "the fields that may be sent to GHL: all, or a comma-separated list of " + strings.Join(FieldNames, ", "),
		get: func(ls LocationSettings) string {
			if ls.Fields == "" {
				return AllFields
			}
			return ls.Fields
		},
		set: func(ls *LocationSettings, v string) (err error) {
			ls.Fields, err = ParseFields(v)
			return err
		},
	},
	{
		Name: "title_template", Default: "",
		Meaning: "the title of appointments in GHL, a Go text/template with {{practitioner}}, {{calendar}}, {{status}}, {{title}}; empty sends the clinic's title",
		get:     func(ls LocationSettings) string { return ls.TitleTemplate },
		set: func(ls *LocationSettings, v string) error {
			ls.TitleTemplate = strings.TrimSpace(v)
			return nil
		},
	},
	{
		Name: "deletion_action", Default: DeletionTagDND,
		Meaning: "what a sync does to the contact of a patient deleted in the clinic: tag_dnd (tag ghlsync:deleted, DND on), delete or none",
		get:     func(ls LocationSettings) string { return ls.Deletion() },
		set: func(ls *LocationSettings, v string) error {
			ls.DeletionAction = strings.TrimSpace(v)
			return nil
		},
	},
	{
		Name: "deletion_cap", Default: "0",
		Meaning: "the most deletions one sync pass acts on; 0: 5% of the location's records in GHL, or 50 if larger",
		get:     func(ls LocationSettings) string { return strconv.Itoa(ls.DeletionCap) },
		set: func(ls *LocationSettings, v string) (err error) {
			ls.DeletionCap, err = strconv.Atoi(strings.TrimSpace(v))
			return err
		},
	},
	{
		Name: "conflict_policy", Default: ConflictClinic,
		Meaning: "what wins when a contact changed in GHL and in the clinic since the last sync: clinic (GHL is overwritten, the inbox says what was) or report (GHL's values stay, the inbox and status page say so)",
		get:     func(ls LocationSettings) string { return ls.Conflicts() },
		set: func(ls *LocationSettings, v string) error {
			ls.ConflictPolicy = strings.TrimSpace(v)
			return nil
		},
	},
	{
		Name: "create_custom_fields", Default: "on",
		Meaning: "a key of a patient's custom_fields that the location has no custom field for is created as one (on), or refuses the patient (off)",
		get:     func(ls LocationSettings) string { return onOff(ls.CreatesCustomFields()) },
		set: func(ls *LocationSettings, v string) error {
			on, err := parseOnOff(v)
			ls.RefuseCustomFields = !on
			return err
		},
	},
}

// LookupSettingKey returns the setting named name.
func LookupSettingKey(name string) (SettingKey, error) {
	for _, k := range SettingKeys {
		if k.Name == name {
			return k, nil
		}
	}
	var names []string
	for _, k := range SettingKeys {
		names = append(names, k.Name)
	}
	return SettingKey{}, fmt.Errorf("unknown setting %q (one of %s)", name, strings.Join(names, ", "))
}

// Get returns the setting's value in ls, as set shows it.
func (k SettingKey) Get(ls LocationSettings) string { return k.get(ls) }

// Set sets the setting in ls to value and validates the result; on an
// error ls is unchanged.
func (k SettingKey) Set(ls *LocationSettings, value string) error {
	next := *ls
	if err := k.set(&next, value); err != nil {
		return fmt.Errorf("%s: %w", k.Name, err)
	}
	// Validate names the setting at fault.
	if err := next.Validate(); err != nil {
		return err
	}
	*ls = next
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q: want on or off", v)
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

// AllSettings returns the settings of every location with a row or a
// credential, by location id: a connected location without a row has
// DefaultSettings.
func (s *Store) AllSettings(ctx context.Context) ([]LocationSettings, error) {
	var rows []LocationSettings
	if err := s.db.WithContext(ctx).Order("location_id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.AllSettings: %w", err)
	}
	var locs []string
	if err := s.db.WithContext(ctx).Model(&Credential{}).Where("user_type <> ?", UserTypeCompany).Order("location_id").Pluck("location_id", &locs).Error; err != nil {
		return nil, fmt.Errorf("store.AllSettings: %w", err)
	}
	have := make(map[string]bool, len(rows))
	for _, r := range rows {
		have[r.LocationID] = true
	}
	for _, l := range locs {
		if !have[l] {
			rows = append(rows, DefaultSettings(l))
		}
	}
	slices.SortFunc(rows, func(a, b LocationSettings) int { return strings.Compare(a.LocationID, b.LocationID) })
	return rows, nil
}
