package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The source tables belong to the clinic system: it INSERTs and UPDATEs
// them with plain SQL, naming only the columns of DESIGN.md. Every other
// column (the surrogate id) and every optional one has a database default,
// so such statements work on both PostgreSQL and SQLite. ghlsync only reads
// them and keeps its own state in the sync_* tables (sync.go).

// Patient is a row of the clinic's patients table. It is the migration's
// model; syncs read patients as PatientRow.
type Patient struct {
	ID          int64      `gorm:"primaryKey;autoIncrement"`
	LocationID  string     `gorm:"size:255;not null;uniqueIndex:patients_location_external,priority:1"`
	ExternalID  string     `gorm:"size:128;not null;uniqueIndex:patients_location_external,priority:2"`
	FirstName   string     `gorm:"size:255;not null;default:''"`
	LastName    string     `gorm:"size:255;not null;default:''"`
	Email       string     `gorm:"size:320;not null;default:''"`
	Phone       string     `gorm:"size:64;not null;default:''"`
	DateOfBirth *time.Time `gorm:"type:date"`
	Address1    string     `gorm:"size:255;not null;default:''"`
	City        string     `gorm:"size:255;not null;default:''"`
	PostalCode  string     `gorm:"size:32;not null;default:''"`
	Country     string     `gorm:"size:64;not null;default:''"`
	// Tags are the tags ghlsync manages on the contact, a JSON array of
	// strings. Tags staff set in GHL are not the row's and stay.
	Tags string `gorm:"type:text;not null;default:'[]'"`
	// DND turns GHL's do not disturb on for every channel.
	DND bool `gorm:"column:dnd;not null;default:false"`
	// Consent is a JSON object of channel (sms, email, call, whatsapp) to
	// whether the patient consents to it: false turns GHL's do not
	// disturb on for that channel, true off; a channel left out is left as
	// it is in GHL.
	Consent string `gorm:"type:text;not null;default:'{}'"`
	// Timezone is the patient's IANA time zone; '' leaves the contact's
	// (the location's).
	Timezone string `gorm:"size:64;not null;default:''"`
	// CustomFields is a JSON object of GHL custom field key (with or
	// without "contact.") to value.
	CustomFields string `gorm:"type:text;not null;default:'{}'"`
	// DeletedAt is set when the clinic deletes the patient: the sync acts
	// on its contact by the location's DeletionAction and sends it no more.
	DeletedAt *time.Time
	UpdatedAt time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

// TableName pins the table name: the clinic system writes to it by name.
func (Patient) TableName() string { return "patients" }

// Appointment statuses in the clinic's appointments table.
const (
	AppointmentBooked    = "booked"
	AppointmentConfirmed = "confirmed"
	AppointmentCancelled = "cancelled"
	AppointmentAttended  = "attended"
	AppointmentNoShow    = "no_show"
)

// Appointment is a row of the clinic's appointments table. Status is one of
// the Appointment* constants; any other value fails that appointment's
// sync, not the insert, so that a typo in the clinic system is reported
// rather than lost. The migration's model; syncs read AppointmentRow.
type Appointment struct {
	ID                int64     `gorm:"primaryKey;autoIncrement"`
	LocationID        string    `gorm:"size:255;not null;uniqueIndex:appointments_location_external,priority:1"`
	ExternalID        string    `gorm:"size:128;not null;uniqueIndex:appointments_location_external,priority:2"`
	PatientExternalID string    `gorm:"size:128;not null"`
	CalendarID        string    `gorm:"size:255;not null"`
	StartsAt          time.Time `gorm:"not null"`
	EndsAt            time.Time `gorm:"not null"`
	Title             string    `gorm:"size:255;not null;default:''"`
	Status            string    `gorm:"size:16;not null;default:booked"`
	// PractitionerExternalID is the clinic's practitioner (a row of
	// practitioners), whose GHL user the appointment is booked with; ''
	// for none.
	PractitionerExternalID string `gorm:"size:128;not null;default:''"`
	// Address is the room or address of the appointment, sent as GHL's
	// address; '' for none.
	Address string `gorm:"size:255;not null;default:''"`
	// Notes is the appointment's note, kept in GHL as the appointment's
	// one note of ghlsync's (updated in place; emptied, it is deleted);
	// '' for none.
	Notes string `gorm:"type:text;not null;default:''"`
	// DeletedAt is set when the clinic deletes the appointment: the sync
	// cancels it in GHL and sends it no more.
	DeletedAt *time.Time
	UpdatedAt time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

// TableName pins the table name: the clinic system writes to it by name.
func (Appointment) TableName() string { return "appointments" }

// Practitioner is a row of the clinic's practitioners table: whom an
// appointment is with. GHLUserID is the GHL user appointments of the
// practitioner are assigned to; when it is empty the sync matches a GHL
// user of the location by Email.
type Practitioner struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	LocationID string `gorm:"size:255;not null;uniqueIndex:practitioners_location_external,priority:1"`
	ExternalID string `gorm:"size:128;not null;uniqueIndex:practitioners_location_external,priority:2"`
	Name       string `gorm:"size:255;not null;default:''"`
	Email      string `gorm:"size:320;not null;default:''"`
	GHLUserID  string `gorm:"column:ghl_user_id;size:255;not null;default:''"`
}

// TableName pins the table name: the clinic system writes to it by name.
func (Practitioner) TableName() string { return "practitioners" }

// PatientRow is a patient as a sync reads it, with ghlsync's state of it.
//
// DateOfBirth is the column as the database returned it ("" for NULL), to
// be read with ParseTime by the caller: a value the clinic system wrote in
// a form nobody can read then fails that one patient, not the whole page.
type PatientRow struct {
	ExternalID  string
	FirstName   string
	LastName    string
	Email       string
	Phone       string
	DateOfBirth string
	Address1    string
	City        string
	PostalCode  string
	Country     string
	// Tags, DND, Consent, Timezone and CustomFields are the columns as the
	// database returned them (DND "1", "true", "0", …), raw: a sync hashes
	// them as they are, so that deciding a patient is unchanged parses no
	// JSON, and reads them only for a patient it sends.
	Tags         string
	DND          string
	Consent      string
	Timezone     string
	CustomFields string
	// Sync is the patient's sync state; its zero value (LocationID "")
	// when the patient was never synced.
	Sync PatientSync
}

// AppointmentRow is an appointment as a sync reads it, with ghlsync's state
// of it and of its patient. StartsAt and EndsAt are raw, like
// PatientRow.DateOfBirth.
type AppointmentRow struct {
	ExternalID        string
	PatientExternalID string
	CalendarID        string
	StartsAt          string
	EndsAt            string
	Title             string
	Status            string
	Address           string
	Notes             string
	// PractitionerExternalID is the row's practitioner_external_id;
	// Practitioner is that practitioner's row, nil when there is none.
	PractitionerExternalID string
	Practitioner           *PractitionerRow
	// DefaultUserID is the GHL user of the calendar's calendar_settings
	// row, "" when it has none.
	DefaultUserID string
	// ContactID is the GHL contact of the patient, "" when the patient has
	// none yet (or is not in the patients table).
	ContactID string
	// Sync is the appointment's sync state, zero when never synced.
	Sync AppointmentSync
}

const patientColumns = `p.external_id, p.first_name, p.last_name, p.email, p.phone, p.date_of_birth,
	p.address1, p.city, p.postal_code, p.country, p.tags, p.dnd, p.consent, p.timezone, p.custom_fields,
	` + patientSyncColumns

const patientSyncColumns = `s.location_id, s.contact_id, s.sent_hash, s.sent_at, s.creating_at,
	s.failed_hash, s.last_error, s.failed_at, s.tags, s.dnd`

// PatientPage returns up to limit patients of loc, deleted ones (deleted_at
// set) left out, whose external id sorts
// after after, in external id order, with their sync state: one page of a
// keyset walk through the table that holds at most one page in memory.
func (s *Store) PatientPage(ctx context.Context, loc, after string, limit int) ([]PatientRow, error) {
	return s.PatientPageSince(ctx, loc, after, nil, limit)
}

// PatientPageSince is PatientPage of the patients changed (updated_at) at
// or after since and of those whose last sync failed, or of all when since
// is nil: an incremental pass's read (watermark.go, failed.go), which the
// index on (location_id, updated_at) and the partial index of the failed
// records answer.
func (s *Store) PatientPageSince(ctx context.Context, loc, after string, since *time.Time, limit int) ([]PatientRow, error) {
	from, changed, args := "patients p", "", []any(nil)
	if since != nil {
		from, changed, args = s.changedOrFailed("p", "patients", "sync_patients", loc, after, *since, limit)
	}
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+patientColumns+`
		FROM `+from+` LEFT JOIN sync_patients s
			ON s.location_id = p.location_id AND s.external_id = p.external_id
		WHERE p.location_id = ? AND p.external_id > ? AND p.deleted_at IS NULL`+changed+`
		ORDER BY p.external_id
		LIMIT ?`, append(args, loc, after, limit)...).Rows()
	if err != nil {
		return nil, fmt.Errorf("store.PatientPage %s: %w", loc, err)
	}
	defer rows.Close()
	out := make([]PatientRow, 0, limit)
	for rows.Next() {
		var p PatientRow
		if err := scanPatient(rows, &p); err != nil {
			return nil, fmt.Errorf("store.PatientPage %s: %w", loc, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store.PatientPage %s: %w", loc, err)
	}
	return out, nil
}

// PatientByExternalID returns one patient of loc with its sync state, or an
// error wrapping ErrNotFound.
func (s *Store) PatientByExternalID(ctx context.Context, loc, externalID string) (*PatientRow, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+patientColumns+`
		FROM patients p LEFT JOIN sync_patients s
			ON s.location_id = p.location_id AND s.external_id = p.external_id
		WHERE p.location_id = ? AND p.external_id = ? AND p.deleted_at IS NULL`, loc, externalID).Rows()
	if err != nil {
		return nil, fmt.Errorf("store.PatientByExternalID %s %s: %w", loc, externalID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store.PatientByExternalID %s %s: %w", loc, externalID, err)
		}
		return nil, fmt.Errorf("store.PatientByExternalID %s %s: %w", loc, externalID, ErrNotFound)
	}
	var p PatientRow
	if err := scanPatient(rows, &p); err != nil {
		return nil, fmt.Errorf("store.PatientByExternalID %s %s: %w", loc, externalID, err)
	}
	return &p, nil
}

func scanPatient(rows *sql.Rows, p *PatientRow) error {
	var dob, tags, dnd, consent, tz, fields sql.NullString
	var st nullPatientSync
	err := rows.Scan(&p.ExternalID, &p.FirstName, &p.LastName, &p.Email, &p.Phone, &dob,
		&p.Address1, &p.City, &p.PostalCode, &p.Country, &tags, &dnd, &consent, &tz, &fields,
		&st.LocationID, &st.ContactID, &st.SentHash, &st.SentAt, &st.CreatingAt,
		&st.FailedHash, &st.LastError, &st.FailedAt, &st.Tags, &st.DND)
	if err != nil {
		return err
	}
	p.DateOfBirth = dob.String
	p.Tags, p.DND, p.Consent, p.Timezone, p.CustomFields = tags.String, dnd.String, consent.String, tz.String, fields.String
	if st.LocationID.Valid {
		p.Sync = PatientSync{
			LocationID: st.LocationID.String, ExternalID: p.ExternalID, ContactID: st.ContactID.String,
			SentHash: st.SentHash.String, SentAt: timePtr(st.SentAt), CreatingAt: timePtr(st.CreatingAt),
			FailedHash: st.FailedHash.String, LastError: st.LastError.String, FailedAt: timePtr(st.FailedAt),
			Tags: st.Tags.String, DND: st.DND.Valid && st.DND.Bool,
		}
	}
	return nil
}

// nullPatientSync scans the columns of a sync_patients row that a LEFT
// JOIN may leave NULL.
type nullPatientSync struct {
	LocationID, ContactID, SentHash, FailedHash, LastError, Tags sql.NullString
	SentAt, CreatingAt, FailedAt                                 sql.NullTime
	DND                                                          sql.NullBool
}

// PractitionerRow is a practitioner as an appointment's sync reads it.
type PractitionerRow struct {
	Name, Email, GHLUserID string
}

// AppointmentPage returns up to limit appointments of loc, deleted ones left
// out, whose external id
// sorts after after, in external id order, with their sync state, their
// patient's GHL contact, their practitioner and their calendar's default
// user.
func (s *Store) AppointmentPage(ctx context.Context, loc, after string, limit int) ([]AppointmentRow, error) {
	return s.AppointmentPageSince(ctx, loc, after, nil, limit)
}

// AppointmentPageSince is AppointmentPage of the appointments changed at or
// after since and of those whose last sync failed, or of all when since is
// nil, as PatientPageSince.
func (s *Store) AppointmentPageSince(ctx context.Context, loc, after string, since *time.Time, limit int) ([]AppointmentRow, error) {
	from, changed, args := "appointments a", "", []any(nil)
	if since != nil {
		from, changed, args = s.changedOrFailed("a", "appointments", "sync_appointments", loc, after, *since, limit)
	}
	rows, err := s.db.WithContext(ctx).Raw(`SELECT a.external_id, a.patient_external_id, a.calendar_id,
			a.starts_at, a.ends_at, a.title, a.status, a.address, a.notes, ps.contact_id,
			s.location_id, s.event_id, s.contact_id, s.sent_hash, s.sent_at, s.creating_at,
			s.intent_contact_id, s.intent_calendar_id, s.intent_starts_at, s.intent_hash,
			s.failed_hash, s.last_error, s.failed_at, s.note_id, s.note_intent,
			a.practitioner_external_id, pr.external_id, pr.name, pr.email, pr.ghl_user_id, cs.default_user_id
		FROM `+from+`
		LEFT JOIN sync_appointments s
			ON s.location_id = a.location_id AND s.external_id = a.external_id
		LEFT JOIN sync_patients ps
			ON ps.location_id = a.location_id AND ps.external_id = a.patient_external_id
		LEFT JOIN practitioners pr
			ON pr.location_id = a.location_id AND pr.external_id = a.practitioner_external_id
		LEFT JOIN calendar_settings cs
			ON cs.location_id = a.location_id AND cs.calendar_id = a.calendar_id
		WHERE a.location_id = ? AND a.external_id > ? AND a.deleted_at IS NULL`+changed+`
		ORDER BY a.external_id
		LIMIT ?`, append(args, loc, after, limit)...).Rows()
	if err != nil {
		return nil, fmt.Errorf("store.AppointmentPage %s: %w", loc, err)
	}
	defer rows.Close()
	out := make([]AppointmentRow, 0, limit)
	for rows.Next() {
		var a AppointmentRow
		var starts, ends, contact sql.NullString
		var pr struct{ ExternalID, Name, Email, GHLUserID, DefaultUserID sql.NullString }
		var st struct {
			LocationID, EventID, ContactID, SentHash                  sql.NullString
			IntentContactID, IntentCalendarID, IntentHash, FailedHash sql.NullString
			LastError, NoteID, NoteIntent                             sql.NullString
			SentAt, CreatingAt, IntentStartsAt, FailedAt              sql.NullTime
		}
		err := rows.Scan(&a.ExternalID, &a.PatientExternalID, &a.CalendarID, &starts, &ends, &a.Title, &a.Status,
			&a.Address, &a.Notes, &contact, &st.LocationID, &st.EventID, &st.ContactID, &st.SentHash, &st.SentAt, &st.CreatingAt,
			&st.IntentContactID, &st.IntentCalendarID, &st.IntentStartsAt, &st.IntentHash,
			&st.FailedHash, &st.LastError, &st.FailedAt, &st.NoteID, &st.NoteIntent,
			&a.PractitionerExternalID, &pr.ExternalID, &pr.Name, &pr.Email, &pr.GHLUserID, &pr.DefaultUserID)
		if err != nil {
			return nil, fmt.Errorf("store.AppointmentPage %s: %w", loc, err)
		}
		a.StartsAt, a.EndsAt, a.ContactID = starts.String, ends.String, contact.String
		if pr.ExternalID.Valid {
			a.Practitioner = &PractitionerRow{Name: pr.Name.String, Email: pr.Email.String, GHLUserID: pr.GHLUserID.String}
		}
		a.DefaultUserID = pr.DefaultUserID.String
		if st.LocationID.Valid {
			a.Sync = AppointmentSync{
				LocationID: st.LocationID.String, ExternalID: a.ExternalID, EventID: st.EventID.String,
				ContactID: st.ContactID.String, SentHash: st.SentHash.String, SentAt: timePtr(st.SentAt),
				CreatingAt: timePtr(st.CreatingAt), IntentContactID: st.IntentContactID.String,
				IntentCalendarID: st.IntentCalendarID.String, IntentStartsAt: timePtr(st.IntentStartsAt),
				IntentHash: st.IntentHash.String, FailedHash: st.FailedHash.String,
				LastError: st.LastError.String, FailedAt: timePtr(st.FailedAt),
				NoteID: st.NoteID.String, NoteIntent: st.NoteIntent.String,
			}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store.AppointmentPage %s: %w", loc, err)
	}
	return out, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// timeLayouts are the forms a timestamp column comes back in: what the
// drivers make of typed values (RFC 3339), and the text SQLite keeps as the
// clinic system wrote it (SQLite's own date and time formats).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ErrBadTime is wrapped by ParseTime's errors.
var ErrBadTime = errors.New("not a date or time")

// ParseTime reads a date or timestamp column of a source table as scanned
// into a string. A value without an offset is UTC; whole numbers are Unix
// seconds, as SQLite's date functions also take them.
func ParseTime(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadTime)
}

// CountPatients counts the rows of the patients table, of every location.
func (s *Store) CountPatients(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&Patient{}).Count(&n).Error
	return n, err
}

// CountAppointments counts the rows of the appointments table, of every
// location.
func (s *Store) CountAppointments(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&Appointment{}).Count(&n).Error
	return n, err
}

// InsertPatients inserts rows into the patients table, as the clinic
// system would; the sandbox and tests feed the table with it.
func (s *Store) InsertPatients(ctx context.Context, rows []Patient) error {
	return s.db.WithContext(ctx).CreateInBatches(rows, 500).Error
}

// InsertAppointments inserts rows into the appointments table, as the
// clinic system would.
func (s *Store) InsertAppointments(ctx context.Context, rows []Appointment) error {
	return s.db.WithContext(ctx).CreateInBatches(rows, 500).Error
}

// InsertPractitioners inserts rows into the practitioners table, as the
// clinic system would.
func (s *Store) InsertPractitioners(ctx context.Context, rows []Practitioner) error {
	return s.db.WithContext(ctx).CreateInBatches(rows, 500).Error
}
