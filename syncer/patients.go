package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// A patient becomes a GHL contact. Idempotence:
//
//   - Once GHL has named the contact, its id is recorded and the patient is
//     updated by id (PUT); a contact deleted in GHL (404) is created again.
//   - Without an id the patient is upserted. GHL's upsert finds an existing
//     contact by email or phone, so an upsert repeated after a lost answer
//     (timeout, crash) updates the contact the first one made.
//   - A patient with neither email nor phone is the exception: GHL offers no
//     way to find its contact again, so a create whose answer is lost (the
//     worker dies between GHL's answer and the write of the id, or the
//     answer never comes) can leave a second contact when it is sent again.
//     CreatingAt marks such creates in flight, and a repeat is logged as a
//     possible duplicate. The window is one round trip per such patient.

// contactMapping versions contactFor: change it when contactFor changes
// what it sends, so that every patient is sent again.
const contactMapping = "contact/1"

// contentHash hashes what is sent for a record (or the record itself when
// it cannot be sent), under a mapping version.
func contentHash(mapping string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are hashed.
		panic("syncer: hash: " + err.Error())
	}
	h := sha256.New()
	h.Write([]byte(mapping))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// contactFor maps a patient to the contact sent to GHL. Empty fields are
// left out, so a value cleared in the clinic system stays in GHL.
func contactFor(loc string, p *store.PatientRow) (*ghl.Contact, error) {
	c := &ghl.Contact{
		LocationID: loc,
		FirstName:  strings.TrimSpace(p.FirstName),
		LastName:   strings.TrimSpace(p.LastName),
		Email:      strings.TrimSpace(p.Email),
		Phone:      strings.TrimSpace(p.Phone),
		Address1:   strings.TrimSpace(p.Address1),
		City:       strings.TrimSpace(p.City),
		PostalCode: strings.TrimSpace(p.PostalCode),
		Country:    strings.TrimSpace(p.Country),
	}
	if err := checkFields(
		field{"first_name", c.FirstName, maxName},
		field{"last_name", c.LastName, maxName},
		field{"email", c.Email, maxEmail},
		field{"phone", c.Phone, maxPhone},
		field{"address1", c.Address1, maxAddress},
		field{"city", c.City, maxCity},
		field{"postal_code", c.PostalCode, maxPostalCode},
		field{"country", c.Country, maxCountry},
	); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.DateOfBirth) != "" {
		dob, err := store.ParseTime(p.DateOfBirth)
		if err != nil {
			return nil, refusedf("date_of_birth %q is not a date (want YYYY-MM-DD)", p.DateOfBirth)
		}
		c.DateOfBirth = dob.Format("2006-01-02")
	}
	return c, nil
}

// rawPatient is what identifies a patient's content when it cannot be
// mapped: the row as read.
func rawPatient(p *store.PatientRow) any {
	raw := *p
	raw.Sync = store.PatientSync{}
	return raw
}

// patientPages reads the patients of the run's location as items.
func patientPages(r *run) pageFunc {
	return func(ctx context.Context, after string, limit int) ([]item, error) {
		rows, err := r.e.State.PatientPage(ctx, r.loc, after, limit)
		if err != nil {
			return nil, err
		}
		items := make([]item, len(rows))
		for i := range rows {
			items[i], _ = r.planPatient(&rows[i])
		}
		return items, nil
	}
}

// planPatient decides what to do with a patient. The state it returns,
// nil for a patient with nothing to send, is the one the item's push and
// refuse update.
func (r *run) planPatient(p *store.PatientRow) (item, *store.PatientSync) {
	c, err := contactFor(r.loc, p)
	hash := ""
	if err != nil {
		hash = contentHash("patient-row/1", rawPatient(p))
	} else {
		hash = contentHash(contactMapping, c)
	}
	it := item{key: p.ExternalID}
	switch {
	case hash == p.Sync.FailedHash:
		it.known = "unchanged since it was refused: " + p.Sync.LastError
		return it, nil
	case err == nil && hash == p.Sync.SentHash && p.Sync.ContactID != "":
		it.unchanged = true
		return it, nil
	}
	st := p.Sync
	st.LocationID, st.ExternalID = r.loc, p.ExternalID
	it.refuse = func(ctx context.Context, why string) error {
		st.FailedHash, st.LastError, st.FailedAt = hash, why, ptr(r.e.now().UTC())
		return r.e.State.SavePatientSync(ctx, &st)
	}
	if err != nil {
		it.invalid = err.Error()
	} else {
		it.push = func(ctx context.Context) (outcome, error) { return r.pushPatient(ctx, &st, c, hash) }
	}
	return it, &st
}

// pushPatient sends a changed patient and records GHL's contact.
func (r *run) pushPatient(ctx context.Context, st *store.PatientSync, c *ghl.Contact, hash string) (outcome, error) {
	if st.ContactID != "" {
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Contacts.Update(ctx, token, st.ContactID, c)
			return resp, err
		})
		switch {
		case err == nil:
			return updated, r.patientSent(ctx, st, st.ContactID, hash)
		case !ghl.IsNotFound(err):
			return 0, err
		}
		r.e.log().Warn("the patient's contact is gone from GHL; creating it again",
			"location", r.loc, "patient", st.ExternalID, "contact", st.ContactID)
		st.ContactID = ""
	}
	if c.Email == "" && c.Phone == "" {
		if st.CreatingAt != nil {
			r.e.log().Warn("an earlier create of this patient's contact may have reached GHL, and a contact "+
				"without email or phone cannot be looked up: GHL may hold it twice",
				"location", r.loc, "patient", st.ExternalID, "since", *st.CreatingAt)
		}
		st.CreatingAt = ptr(r.e.now().UTC())
		if err := r.e.State.SavePatientSync(ctx, st); err != nil {
			return 0, err
		}
	}
	// Patients GHL would match to one contact upsert one at a time, so the
	// second finds the first's contact recorded.
	defer r.claims.lock(matchKeys(c))()
	var got *ghl.Contact
	var isNew bool
	err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		got, isNew, resp, err = r.e.Contacts.Upsert(ctx, token, c)
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	if err := r.checkMerged(ctx, st.ExternalID, got.ID); err != nil {
		return 0, err
	}
	out := updated
	if isNew {
		out = created
	}
	return out, r.patientSent(ctx, st, got.ID, hash)
}

// checkMerged fails the upsert of patient with a refusal when GHL answered
// with a contact recorded for another patient of the location: GHL matched
// the two by email (case-insensitively) or phone and merged them. GHL's
// contact now holds this patient's fields, so the other patient is failed
// too, and sent again on the next sync (by its contact id), which puts its
// own fields back; this one is not sent again until it changes.
func (r *run) checkMerged(ctx context.Context, patient, contact string) error {
	holders, err := r.e.State.ContactHolders(ctx, r.loc, contact, patient)
	if err != nil || len(holders) == 0 {
		return err
	}
	other := holders[0]
	r.e.log().Warn("GHL merged two patients into one contact: they share an email or a phone",
		"location", r.loc, "patient", patient, "other_patient", other, "contact", contact)
	why := fmt.Sprintf("conflict: GHL merged patient %s into contact %s of patient %s, as they share an email "+
		"(case-insensitively) or a phone; %s's fields are sent again on the next sync; give the two different "+
		"emails and phones (or remove the duplicate) in the clinic system", patient, contact, other, other)
	if err := r.failHolder(ctx, other, why); err != nil {
		return err
	}
	return refusedf("%s", why)
}

// failHolder records the conflict why on the patient other, whose contact
// GHL overwrote: it is reported failed, and sent again on the next sync.
func (r *run) failHolder(ctx context.Context, other, why string) error {
	p, err := r.e.State.PatientByExternalID(ctx, r.loc, other)
	if err != nil {
		return err
	}
	st := p.Sync
	st.LocationID, st.ExternalID = r.loc, other
	st.SentHash, st.LastError, st.FailedAt = "", why, ptr(r.e.now().UTC())
	if err := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SavePatientSync(ctx, &st) }); err != nil {
		return err
	}
	r.mu.Lock()
	r.failLocked(other, why)
	r.mu.Unlock()
	return nil
}

// matchKeys are what GHL matches a contact by: its email, case-folded, and
// its phone's digits.
func matchKeys(c *ghl.Contact) []string {
	var keys []string
	if e := strings.ToLower(c.Email); e != "" {
		keys = append(keys, "email:"+e)
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, c.Phone)
	if digits != "" {
		keys = append(keys, "phone:"+digits)
	}
	return keys
}

// patientSent records that GHL accepted the content with hash for contact.
func (r *run) patientSent(ctx context.Context, st *store.PatientSync, contact, hash string) error {
	st.ContactID, st.SentHash, st.SentAt, st.CreatingAt = contact, hash, ptr(r.e.now().UTC()), nil
	st.FailedHash, st.LastError, st.FailedAt = "", "", nil
	return r.persist(ctx, func(ctx context.Context) error { return r.e.State.SavePatientSync(ctx, st) })
}

// patientContact returns the GHL contact of a patient of the run's
// location, creating it when the patient has none: an appointment needs
// its patient's contact first. A patient that cannot have one fails the
// appointment with a refusal that says why.
func (r *run) patientContact(ctx context.Context, patient string) (string, error) {
	return r.contacts.get(patient, func() (string, error) {
		p, err := r.e.State.PatientByExternalID(ctx, r.loc, patient)
		if errors.Is(err, store.ErrNotFound) {
			return "", refusedf("patient %s is not in the patients table", patient)
		}
		if err != nil {
			return "", err
		}
		it, st := r.planPatient(p)
		switch {
		case it.unchanged:
			return p.Sync.ContactID, nil
		case it.known != "":
			return "", refusedf("patient %s: %s", patient, it.known)
		case it.invalid != "":
			if err := it.refuse(ctx, it.invalid); err != nil {
				return "", err
			}
			return "", refusedf("patient %s: %s", patient, it.invalid)
		}
		out, err := it.push(ctx)
		if refused, _ := classify(ctx, err); refused {
			if err := it.refuse(ctx, reason(err)); err != nil {
				return "", err
			}
			return "", refusedf("patient %s: %s", patient, reason(err))
		}
		if err != nil {
			return "", err
		}
		if out == created {
			r.contactCreated()
		}
		return st.ContactID, nil
	})
}

func ptr[T any](v T) *T { return &v }
