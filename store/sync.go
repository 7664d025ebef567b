package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ghlsync's own sync state, kept apart from the clinic's tables: per
// patient and per appointment what GHL holds of it, and a log of sync runs.
//
// Only one sync of a location runs at a time (the tasks hold a lock per
// location), so a state row has one writer and is written whole.

// PatientSync is what ghlsync knows of one patient's contact in GHL.
type PatientSync struct {
	LocationID string `gorm:"primaryKey;size:255;index:sync_patients_contact,priority:1;index:sync_patients_failed,priority:1,where:failed_at IS NOT NULL"`
	ExternalID string `gorm:"primaryKey;size:128;index:sync_patients_failed,priority:2"`
	// ContactID is the GHL contact, recorded as soon as GHL names it. The
	// index serves ContactHolders, asked after every upsert.
	ContactID string `gorm:"size:255;not null;default:'';index:sync_patients_contact,priority:2"`
	// SentHash is the hash of the content GHL last accepted; a patient
	// whose content hashes the same is unchanged and costs no call.
	SentHash string `gorm:"size:64;not null;default:''"`
	SentAt   *time.Time
	// CreatingAt is set before a create whose answer may be lost and
	// cleared once the answer is recorded: found set, it says an earlier
	// create may have reached GHL.
	CreatingAt *time.Time
	// FailedHash is the hash of content GHL refused (or that could not be
	// sent at all): it is not sent again until it changes.
	FailedHash string `gorm:"size:64;not null;default:''"`
	LastError  string `gorm:"type:text;not null;default:''"`
	FailedAt   *time.Time
	// Tags are the tags ghlsync last applied to ContactID, a JSON array
	// ('' for none): what it may remove again when the patient's row
	// drops them. Tags on the contact that are not here are staff's.
	Tags string `gorm:"type:text;not null;default:''"`
	// DND: ghlsync turned the contact's do not disturb on for the
	// patient's dnd column, so it turns it off again when the column does;
	// a DND staff turned on is left alone.
	DND       bool `gorm:"column:dnd;not null;default:false"`
	UpdatedAt time.Time
}

// TableName pins the table name.
func (PatientSync) TableName() string { return "sync_patients" }

// AppointmentSync is what ghlsync knows of one appointment in GHL.
type AppointmentSync struct {
	LocationID string `gorm:"primaryKey;size:255;index:sync_appointments_failed,priority:1,where:failed_at IS NOT NULL"`
	ExternalID string `gorm:"primaryKey;size:128;index:sync_appointments_failed,priority:2"`
	// EventID is the GHL appointment, recorded as soon as GHL names it. No
	// two appointments of a location may hold the same one.
	EventID string `gorm:"size:255;not null;default:'';uniqueIndex:sync_appointments_event,where:event_id <> ''"`
	// ContactID is the contact the appointment was booked for.
	ContactID string `gorm:"size:255;not null;default:''"`
	SentHash  string `gorm:"size:64;not null;default:''"`
	SentAt    *time.Time
	// CreatingAt marks a create in flight, as for PatientSync. The Intent
	// fields are what that create carried: after a lost answer, the
	// contact's appointment on that calendar at that time is the one it
	// made.
	CreatingAt       *time.Time
	IntentContactID  string `gorm:"size:255;not null;default:''"`
	IntentCalendarID string `gorm:"size:255;not null;default:''"`
	IntentStartsAt   *time.Time
	IntentHash       string `gorm:"size:64;not null;default:''"`
	FailedHash       string `gorm:"size:64;not null;default:''"`
	LastError        string `gorm:"type:text;not null;default:''"`
	FailedAt         *time.Time
	// NoteID is the GHL note of the appointment's notes, recorded as soon
	// as GHL names it, so an edited note is updated in place. NoteIntent
	// is set before a note's create whose answer may be lost, to the hash
	// of the body it carries: found set, the note may exist already and
	// is looked for among the appointment's notes first.
	NoteID     string `gorm:"size:255;not null;default:''"`
	NoteIntent string `gorm:"size:64;not null;default:''"`
	UpdatedAt  time.Time
}

// TableName pins the table name.
func (AppointmentSync) TableName() string { return "sync_appointments" }

// SyncRun is the log of one run of a sync task for one location: a row is
// written when the run starts, so a run whose worker died shows as one
// that never finished.
type SyncRun struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	Kind       string `gorm:"size:16;not null;index:sync_runs_location,priority:2"`
	LocationID string `gorm:"size:255;not null;index:sync_runs_location,priority:1"`
	TaskID     string `gorm:"size:160;not null;default:'';index"`
	// After is the cursor the run started from; Cursor the one it reached.
	After      string    `gorm:"size:128;not null;default:''"`
	Cursor     string    `gorm:"size:128;not null;default:''"`
	StartedAt  time.Time `gorm:"not null;index:sync_runs_location,priority:3;index"`
	FinishedAt *time.Time
	// Outcome is SyncRunning until the run ends.
	Outcome   string `gorm:"size:32;not null;default:running"`
	Scanned   int    `gorm:"not null;default:0"`
	Created   int    `gorm:"not null;default:0"`
	Updated   int    `gorm:"not null;default:0"`
	Unchanged int    `gorm:"not null;default:0"`
	Failed    int    `gorm:"not null;default:0"`
	// Deleted counts the deletions the run acted on in GHL.
	Deleted     int    `gorm:"not null;default:0"`
	ContinuedBy string `gorm:"size:160;not null;default:''"`
	Error       string `gorm:"type:text;not null;default:''"`
}

// TableName pins the table name.
func (SyncRun) TableName() string { return "sync_runs" }

// SavePatientSync writes a patient's sync state whole.
func (s *Store) SavePatientSync(ctx context.Context, st *PatientSync) error {
	// The write is of a copy: a caller that gave up may change st.
	cp := *st
	err := s.patientWrites.save(ctx, &cp)
	if err == nil {
		st.UpdatedAt = cp.UpdatedAt
	}
	return err
}

func (s *Store) savePatientSync(ctx context.Context, st *PatientSync) error {
	st.UpdatedAt = s.now().UTC()
	err := s.single(ctx).Clauses(upsert(patientSyncColumnNames)).Create(st).Error
	if err != nil {
		return fmt.Errorf("store.SavePatientSync %s %s: %w", st.LocationID, st.ExternalID, err)
	}
	return nil
}

// savePatientSyncs writes the sync states sts whole in one statement,
// each patient at most once.
func (s *Store) savePatientSyncs(ctx context.Context, sts []*PatientSync) error {
	now := s.now().UTC()
	for _, st := range sts {
		st.UpdatedAt = now
	}
	err := s.single(ctx).Clauses(upsert(patientSyncColumnNames)).Create(sts).Error
	if err != nil {
		return fmt.Errorf("store.SavePatientSync %s (%d together): %w", sts[0].LocationID, len(sts), err)
	}
	return nil
}

// SaveAppointmentSync writes an appointment's sync state whole. It fails
// with an error wrapping ErrDuplicateEvent when another appointment of the
// location holds st.EventID.
func (s *Store) SaveAppointmentSync(ctx context.Context, st *AppointmentSync) error {
	st.UpdatedAt = s.now().UTC()
	err := s.single(ctx).Clauses(upsert(appointmentSyncColumnNames)).Create(st).Error
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		err = ErrDuplicateEvent
	}
	if err != nil {
		return fmt.Errorf("store.SaveAppointmentSync %s %s: %w", st.LocationID, st.ExternalID, err)
	}
	return nil
}

// The columns a state write sets: every one but the key, named rather than
// left to GORM's UpdateAll, which skips some zero values.
var (
	patientSyncColumnNames = []string{"contact_id", "sent_hash", "sent_at", "creating_at",
		"failed_hash", "last_error", "failed_at", "tags", "dnd", "updated_at"}
	appointmentSyncColumnNames = []string{"event_id", "contact_id", "sent_hash", "sent_at", "creating_at",
		"intent_contact_id", "intent_calendar_id", "intent_starts_at", "intent_hash",
		"failed_hash", "last_error", "failed_at", "note_id", "note_intent", "updated_at"}
)

func upsert(columns []string) clause.OnConflict {
	return clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}, {Name: "external_id"}},
		DoUpdates: clause.AssignmentColumns(columns),
	}
}

// ErrDuplicateEvent: a GHL appointment is recorded for two appointments.
var ErrDuplicateEvent = errors.New("store: GHL appointment already recorded for another appointment")

// EventHolders returns, of the given GHL appointment ids, those recorded
// for an appointment of loc, mapped to that appointment's external id.
func (s *Store) EventHolders(ctx context.Context, loc string, eventIDs []string) (map[string]string, error) {
	out := make(map[string]string, len(eventIDs))
	if len(eventIDs) == 0 {
		return out, nil
	}
	var rows []AppointmentSync
	err := s.db.WithContext(ctx).Select("external_id", "event_id").
		Where("location_id = ? AND event_id IN ?", loc, eventIDs).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store.EventHolders %s: %w", loc, err)
	}
	for _, r := range rows {
		out[r.EventID] = r.ExternalID
	}
	return out, nil
}

// ContactHolders returns the external ids of the patients of loc, other
// than except, whose sync state holds the GHL contact contactID, of those
// still in the patients table, in order.
func (s *Store) ContactHolders(ctx context.Context, loc, contactID, except string) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT s.external_id FROM sync_patients s
		JOIN patients p ON p.location_id = s.location_id AND p.external_id = s.external_id
		WHERE s.location_id = ? AND s.contact_id = ? AND s.external_id <> ?
		ORDER BY s.external_id`, loc, contactID, except).Scan(&ids).Error
	if err != nil {
		return nil, fmt.Errorf("store.ContactHolders %s %s: %w", loc, contactID, err)
	}
	return ids, nil
}

// SyncRunning is the outcome of a sync run that has not ended (or whose
// worker died before it could record the end).
const SyncRunning = "running"

// StartSyncRun inserts r (its ID is set) with outcome SyncRunning.
func (s *Store) StartSyncRun(ctx context.Context, r *SyncRun) error {
	r.Outcome = SyncRunning
	if r.StartedAt.IsZero() {
		r.StartedAt = s.now().UTC()
	}
	if err := s.single(ctx).Create(r).Error; err != nil {
		return fmt.Errorf("store.StartSyncRun %s: %w", r.LocationID, err)
	}
	return nil
}

// FinishSyncRun records how the run r ended.
func (s *Store) FinishSyncRun(ctx context.Context, r *SyncRun) error {
	now := s.now().UTC()
	r.FinishedAt = &now
	err := s.single(ctx).Model(&SyncRun{}).Where("id = ?", r.ID).Updates(map[string]any{
		"cursor": r.Cursor, "finished_at": now, "outcome": r.Outcome,
		"scanned": r.Scanned, "created": r.Created, "updated": r.Updated, "unchanged": r.Unchanged,
		"failed": r.Failed, "deleted": r.Deleted, "continued_by": r.ContinuedBy, "error": r.Error,
	}).Error
	if err != nil {
		return fmt.Errorf("store.FinishSyncRun %s: %w", r.LocationID, err)
	}
	return nil
}

// LatestSyncRuns returns the latest run of each location and kind among
// the runs started at or after since.
func (s *Store) LatestSyncRuns(ctx context.Context, since time.Time) ([]SyncRun, error) {
	var runs []SyncRun
	latest := s.db.Model(&SyncRun{}).Select("MAX(id)").Where("started_at >= ?", since.UTC()).Group("location_id, kind")
	if err := s.db.WithContext(ctx).Where("id IN (?)", latest).Order("location_id, kind").Find(&runs).Error; err != nil {
		return nil, fmt.Errorf("store.LatestSyncRuns: %w", err)
	}
	return runs, nil
}

// SyncRunsOfTasks returns, of the given task ids, those that some recorded
// run ran as.
func (s *Store) SyncRunsOfTasks(ctx context.Context, taskIDs []string) (map[string]bool, error) {
	out := make(map[string]bool, len(taskIDs))
	if len(taskIDs) == 0 {
		return out, nil
	}
	var ids []string
	if err := s.db.WithContext(ctx).Model(&SyncRun{}).Distinct("task_id").Where("task_id IN ?", taskIDs).Pluck("task_id", &ids).Error; err != nil {
		return nil, fmt.Errorf("store.SyncRunsOfTasks: %w", err)
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// SyncRunContinuedBy returns the latest run of loc and kind that handed
// its pass over to the task taskID, or an error wrapping ErrNotFound.
func (s *Store) SyncRunContinuedBy(ctx context.Context, loc, kind, taskID string) (*SyncRun, error) {
	var r SyncRun
	err := s.db.WithContext(ctx).Where("location_id = ? AND kind = ? AND continued_by = ?", loc, kind, taskID).
		Order("id DESC").Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("store.SyncRunContinuedBy %s %s: %w", loc, taskID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store.SyncRunContinuedBy %s %s: %w", loc, taskID, err)
	}
	return &r, nil
}

// SyncRuns returns the latest runs of loc (of kind, or any when kind is
// ""), newest first.
func (s *Store) SyncRuns(ctx context.Context, loc, kind string, limit int) ([]SyncRun, error) {
	q := s.db.WithContext(ctx).Where("location_id = ?", loc)
	if kind != "" {
		q = q.Where("kind = ?", kind)
	}
	var runs []SyncRun
	if err := q.Order("started_at DESC, id DESC").Limit(limit).Find(&runs).Error; err != nil {
		return nil, fmt.Errorf("store.SyncRuns %s: %w", loc, err)
	}
	return runs, nil
}
