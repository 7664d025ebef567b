package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// PatientIDFieldName is the name of the contact custom field ghlsync
// creates on a location (once, when the location has none) to hold the
// clinic's patient id on every contact it writes: the key by which a
// contact whose create went unanswered is found again. GHL makes its key,
// PatientIDFieldKey, from the name.
const (
	PatientIDFieldName = "ghlsync patient id"
	PatientIDFieldKey  = "contact.ghlsync_patient_id"
)

// contactSetup is what a run's contact writes need of the location,
// looked up once per run when first needed: its settings (the phone
// region, the field allow-list), and its contact custom fields (the patient
// id field, the keys of patients' custom_fields), which cost GHL calls and
// so are listed only by a run that writes a contact.
type contactSetup struct {
	mu       sync.Mutex
	loaded   bool
	settings store.LocationSettings
	// fields are the location's contact custom field ids by key: those
	// the pass's earlier runs used (Result.CustomFields), and all of them
	// once listed.
	fields map[string]string
	// listed: this run listed the location's fields.
	listed bool
	// used are the fields the run looked up or created, and those the
	// pass's earlier runs did: what its follow-up is handed.
	used map[string]string
}

// seed starts the run with the fields the pass's earlier runs used.
func (s *contactSetup) seed(fields map[string]string) {
	if len(fields) == 0 {
		return
	}
	s.fields, s.used = maps.Clone(fields), maps.Clone(fields)
}

// use notes that the run used the field id of key, and returns id.
func (s *contactSetup) use(key, id string) string {
	if s.used == nil {
		s.used = map[string]string{}
	}
	s.used[key] = id
	return id
}

// handOver returns the fields a follow-up of the run starts with.
func (r *run) handOver() map[string]string {
	r.setup.mu.Lock()
	defer r.setup.mu.Unlock()
	return maps.Clone(r.setup.used)
}

// locationFault: a call about the location rather than a record failed
// (its settings, its custom field). No record is to blame, so the run
// stops, whatever GHL said, and is retried; Unwrap keeps a 429 or a lost
// token recognisable to stopOutcome.
type locationFault struct{ err error }

func (e *locationFault) Error() string { return e.err.Error() }
func (e *locationFault) Unwrap() error { return e.err }

// loadSettings reads the location's settings and refuses those that
// plain SQL wrote around the checks of `scheduler settings set`: an
// allow-list with a name it does not know would keep every field back
// unnoticed.
func loadSettings(ctx context.Context, st State, loc string) (store.LocationSettings, error) {
	ls, err := st.Settings(ctx, loc)
	if err != nil {
		return ls, err
	}
	if err := ls.Validate(); err != nil {
		return ls, fmt.Errorf("location_settings of %s: %w", loc, err)
	}
	return ls, nil
}

// locationSettings returns the location's settings, read on first use.
func (r *run) locationSettings(ctx context.Context) (store.LocationSettings, error) {
	r.setup.mu.Lock()
	defer r.setup.mu.Unlock()
	if !r.setup.loaded {
		ls, err := loadSettings(ctx, r.e.State, r.loc)
		if err != nil {
			return store.LocationSettings{}, &locationFault{err}
		}
		r.setup.settings, r.setup.loaded = ls, true
	}
	return r.setup.settings, nil
}

// patientField returns the id of the location's patient id custom field,
// creating the field when the location has none. A sync of a location
// runs alone, so no two runs create it at once.
func (r *run) patientField(ctx context.Context) (string, error) {
	r.setup.mu.Lock()
	defer r.setup.mu.Unlock()
	if id, err := r.fieldLocked(ctx, PatientIDFieldKey); id != "" || err != nil {
		return id, err
	}
	var f *ghl.FieldDef
	err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		f, resp, err = r.e.Contacts.CreateCustomField(ctx, token, r.loc, PatientIDFieldName, "TEXT")
		return resp, err
	})
	if err != nil {
		return "", fieldFault("creating the custom field "+PatientIDFieldName, err)
	}
	r.e.log().Info("created the contact custom field that holds the clinic's patient id",
		"location", r.loc, "field", f.ID, "key", f.FieldKey)
	r.setup.fields[PatientIDFieldKey] = f.ID
	return r.setup.use(PatientIDFieldKey, f.ID), nil
}

// fieldFault wraps an error of the custom field calls; shutdown stays
// what it is, so the record is left to the follow-up.
func fieldFault(op string, err error) error {
	if errors.Is(err, errShuttingDown) {
		return err
	}
	return &locationFault{&opError{op, err}}
}

type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }
