package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// A patient becomes a GHL contact. What is sent: the patient's names,
// email, phone (E.164), address, country (ISO 3166 alpha-2) and date of
// birth (normalize.go), the clinic's patient id in the location's
// custom field PatientIDFieldName (contactsetup.go), which every contact
// ghlsync writes carries, and its tags, DND, consent, time zone and custom
// fields (patientdata.go). Idempotence:
//
//   - Once GHL has named the contact, its id is recorded and the patient is
//     updated by id (PUT). A contact deleted in GHL (GHL answers 400 "not
//     found", or 404) is created again in the same push, never refused.
//   - Without an id, CreatingAt is written first; then a patient with an
//     email or a phone is upserted (GHL matches it by them), one with
//     neither is created (POST /contacts/; GHL's upsert refuses it).
//   - A push that finds CreatingAt set (an earlier create's answer was
//     lost: a timeout, a reset, a dead worker) first searches the
//     location's contacts for the patient id in the custom field, and
//     updates the contact it finds instead of creating another. So a lost
//     answer never makes a second contact, whether the patient has an
//     email, only a phone or neither. GHL's search shows a write seconds
//     after it, so the search waits until Engine.SearchSettle (10 s) has
//     passed since the create was sent (within a run: since its call
//     ended).
//   - When GHL refuses an update as a duplicate (the location does not
//     allow duplicates and another contact has the email or phone), the
//     patient is linked to that contact (GHL's meta.contactId) and it is
//     updated instead, unless another patient holds it; a second refusal
//     is the record's conflict.
//   - When an upsert's email and phone match two contacts, GHL updates the
//     first by the location's priority and silently ignores the other
//     field. The answer is compared with what was sent: a field that did
//     not land is the record's failure, with the contact recorded, so that
//     the reason shows in the run's result and in sync_patients.last_error
//     until the patient changes.

// contactMapping versions what a patient's hash covers (patientContent):
// change it when what is sent changes, so that every patient is sent
// again. contact/2 added the patient id custom field and normalised phones
// and countries.
const contactMapping = "contact/2"

// patientContent is what a patient's hash covers: the contact as the
// clinic wrote it (trimmed), and the region its phone is read in when the
// phone has no country code. Normalising comes at push time, so that an
// unchanged pass parses no phone.
type patientContent struct {
	Contact     *ghl.Contact
	PhoneRegion string `json:",omitempty"`
	// Fields is the location's allow-list: changing it sends every
	// patient again. Empty (every field) it leaves the hash as before.
	Fields string `json:",omitempty"`
}

func patientContentOf(c *ghl.Contact, region string) patientContent {
	if c.Phone == "" || strings.HasPrefix(c.Phone, "+") {
		region = ""
	}
	return patientContent{Contact: c, PhoneRegion: region}
}

// contentHash hashes what is sent for a record (or the record itself when
// it cannot be sent), under a mapping version. extra are name, value pairs
// hashed as they are, after v, those with an empty value left out: raw
// column text that is hashed without being parsed (patientExtras).
func contentHash(mapping string, v any, extra ...string) string {
	// One pooled buffer and one Sum256: an unchanged pass hashes every
	// record, and allocates for it no more than the encoder.
	buf := hashBufs.Get().(*bytes.Buffer)
	defer hashBufs.Put(buf)
	buf.Reset()
	buf.WriteString(mapping)
	buf.WriteByte(0)
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		// Only our own plain structs are hashed.
		panic("syncer: hash: " + err.Error())
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline: the bytes are json.Marshal's
	var n [8]byte
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			continue
		}
		buf.WriteByte(0)
		buf.WriteString(extra[i])
		buf.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(extra[i+1]))))
		buf.WriteString(extra[i+1])
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

var hashBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

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
		ls, err := r.locationSettings(ctx)
		if err != nil {
			return nil, err
		}
		rows, err := r.e.State.PatientPageSince(ctx, r.loc, after, r.since, limit)
		if err != nil {
			return nil, err
		}
		items := make([]item, len(rows))
		for i := range rows {
			items[i], _ = r.planPatient(&rows[i], ls)
		}
		return items, nil
	}
}

// planPatient decides what to do with a patient. The state it returns,
// nil for a patient with nothing to send, is the one the item's push and
// refuse update.
func (r *run) planPatient(p *store.PatientRow, ls store.LocationSettings) (item, *store.PatientSync) {
	region := ls.Region()
	allowed := allowedPatient(p, ls)
	c, err := contactFor(r.loc, allowed)
	hash := ""
	if err != nil {
		hash = contentHash("patient-row/1", rawPatient(allowed))
	} else {
		pc := patientContentOf(c, region)
		pc.Fields = ls.Fields
		extras := patientExtras(allowed)
		hash = contentHash(contactMapping, pc, extras[:]...)
	}
	it := item{key: p.ExternalID}
	switch {
	case r.force:
		// A repair sends it whatever GHL was last sent or refused.
	case hash == p.Sync.FailedHash:
		it.known = "unchanged since it was refused: " + p.Sync.LastError
		return it, nil
	case err == nil && hash == p.Sync.SentHash && p.Sync.ContactID != "":
		it.unchanged = true
		return it, nil
	}
	st := p.Sync
	st.LocationID, st.ExternalID = r.loc, p.ExternalID
	// push and refuse of one item run one after the other.
	outside := false
	it.refuse = func(ctx context.Context, why string) error {
		st.FailedHash, st.LastError, st.FailedAt = hash, why, ptr(r.e.now().UTC())
		if outside {
			// Not known as refused: tried again once the cause is fixed.
			st.FailedHash = ""
		}
		return r.e.State.SavePatientSync(ctx, &st)
	}
	var ex *contactExtras
	if err == nil {
		// Only a patient to be sent has its JSON columns parsed.
		ex, err = readExtras(allowed, ls)
	}
	if err != nil {
		it.invalid = err.Error()
	} else {
		it.push = func(ctx context.Context) (outcome, error) {
			out, err := r.pushPatient(ctx, &st, c, region, hash, ex)
			outside = refusedOutside(err)
			return out, err
		}
		it.creates = st.ContactID == ""
		it.check = func() error {
			cc := *c
			return normalizeContact(&cc, region)
		}
	}
	return it, &st
}

// pushPatient sends a changed patient and records GHL's contact; see the
// top of this file. raw is the contact as planned, normalised here.
func (r *run) pushPatient(ctx context.Context, st *store.PatientSync, raw *ghl.Contact, region, hash string,
	ex *contactExtras) (outcome, error) {
	c := *raw
	if err := normalizeContact(&c, region); err != nil {
		return 0, err
	}
	field, err := r.patientField(ctx)
	if err != nil {
		return 0, err
	}
	c.CustomFields = []ghl.CustomField{{ID: field, Value: st.ExternalID}}
	if err := r.applyExtras(ctx, &c, st, ex); err != nil {
		return 0, err
	}
	sent := sentContactFields(&c)
	if err := r.settleConflict(ctx, st.ExternalID, st.ContactID, hash, sent); err != nil {
		return 0, err
	}
	if err := r.recordSent(ctx, store.RecordContact, st.ExternalID, st.ContactID, sent); err != nil {
		return 0, err
	}

	out := updated
	if st.ContactID == "" && st.CreatingAt != nil {
		if err := r.settleSearch(ctx, *st.CreatingAt); err != nil {
			return 0, err
		}
		id, err := r.findPatientContact(ctx, st.ExternalID, field)
		if err != nil {
			return 0, err
		}
		if id != "" {
			r.e.log().Info("found the contact an earlier, unanswered create made",
				"location", r.loc, "patient", st.ExternalID, "contact", id)
			st.ContactID, out = id, created
		}
	}
	if st.ContactID != "" {
		done, err := r.updatePatient(ctx, st, &c)
		if err != nil {
			return 0, err
		}
		if done {
			return out, r.patientSent(ctx, st, st.ContactID, hash, ex)
		}
	}
	return r.createPatient(ctx, st, &c, hash, ex)
}

// updatePatient updates the patient's contact. It reports false, with
// st.ContactID cleared, when GHL does not have the contact any more. A
// duplicate refusal links the patient to the contact GHL names, once.
func (r *run) updatePatient(ctx context.Context, st *store.PatientSync, c *ghl.Contact) (bool, error) {
	linkedFrom := ""
	for {
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := r.e.Contacts.Update(ctx, token, st.ContactID, c)
			return resp, err
		})
		var dup *ghl.DuplicateContactError
		switch {
		case err == nil:
			return true, nil
		case ghl.IsNotFound(err):
			r.e.log().Warn("the patient's contact is gone from GHL; creating it again",
				"location", r.loc, "patient", st.ExternalID, "contact", st.ContactID)
			st.ContactID = ""
			return false, nil
		case !errors.As(err, &dup):
			return false, err
		case linkedFrom != "" || dup.ContactID == st.ContactID:
			other := st.ContactID
			if linkedFrom != "" {
				st.ContactID = linkedFrom
			}
			return false, refusedf("conflict: GHL holds this patient's %s on contact %s and the rest of it on contact %s, "+
				"and the location does not allow duplicates; merge the two contacts in GHL", dup.MatchingField, dup.ContactID, other)
		}
		holders, err := r.e.State.ContactHolders(ctx, r.loc, dup.ContactID, st.ExternalID)
		if err != nil {
			return false, err
		}
		if len(holders) > 0 {
			return false, refusedf("conflict: this patient's %s is that of contact %s in GHL, which is patient %s's; "+
				"give the two different emails and phones (or remove the duplicate) in the clinic system",
				dup.MatchingField, dup.ContactID, holders[0])
		}
		r.e.log().Info("GHL has the patient's email or phone on another contact; linking the patient to it",
			"location", r.loc, "patient", st.ExternalID, "contact", st.ContactID, "linked", dup.ContactID,
			"field", dup.MatchingField)
		linkedFrom, st.ContactID = st.ContactID, dup.ContactID
	}
}

// unsentCreate puts back the CreatingAt of st as it was before a create
// GHL never saw (notSent), and returns err.
func (r *run) unsentCreate(ctx context.Context, st *store.PatientSync, prev *time.Time, err error) error {
	st.CreatingAt = prev
	if serr := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SavePatientSync(ctx, st) }); serr != nil {
		return serr
	}
	return err
}

// createPatient creates the patient's contact: an upsert when it has an
// email or a phone, else a create. CreatingAt is written first, so that a
// lost answer is looked up on the next attempt.
func (r *run) createPatient(ctx context.Context, st *store.PatientSync, c *ghl.Contact, hash string,
	ex *contactExtras) (outcome, error) {
	prev := st.CreatingAt
	st.CreatingAt = ptr(r.e.now().UTC())
	if err := r.e.State.SavePatientSync(ctx, st); err != nil {
		return 0, err
	}
	if c.Email == "" && c.Phone == "" {
		var got *ghl.Contact
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
			got, resp, err = r.e.Contacts.Create(ctx, token, c)
			return resp, err
		})
		if notSent(err) {
			return 0, r.unsentCreate(ctx, st, prev, err)
		}
		if err != nil {
			st.CreatingAt = ptr(r.e.now().UTC()) // GHL may have acted as late as this
			return 0, err
		}
		return created, r.patientSent(ctx, st, got.ID, hash, ex)
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
	if notSent(err) {
		return 0, r.unsentCreate(ctx, st, prev, err)
	}
	if err != nil {
		st.CreatingAt = ptr(r.e.now().UTC())
		return 0, err
	}
	// A contact GHL has just made is no other patient's: only one GHL
	// matched can be.
	if !isNew {
		if err := r.checkMerged(ctx, st.ExternalID, got.ID); err != nil {
			return 0, err
		}
	}
	if field := ignoredField(c, got); field != "" {
		// The contact is the patient's: recorded, so appointments book for
		// it and later pushes update it by id. The refusal records the
		// reason against this content.
		r.e.log().Warn("GHL's upsert ignored a field of the patient: another contact holds it",
			"location", r.loc, "patient", st.ExternalID, "contact", got.ID, "field", field)
		st.ContactID, st.SentHash, st.SentAt, st.CreatingAt = got.ID, hash, ptr(r.e.now().UTC()), nil
		return 0, refusedf("GHL wrote this patient to contact %s but ignored its %s, which another GHL contact "+
			"holds (GHL's upsert updates the contact its duplicate setting matches first and drops the other "+
			"field); merge the two contacts in GHL, or correct the patient's %s", got.ID, field, field)
	}
	out := updated
	if isNew {
		out = created
	}
	return out, r.patientSent(ctx, st, got.ID, hash, ex)
}

// ignoredField names the field ("email", "phone") that was sent but did
// not come back in GHL's answer, "" when both landed.
func ignoredField(sent, got *ghl.Contact) string {
	switch {
	case sent.Email != "" && !strings.EqualFold(strings.TrimSpace(got.Email), sent.Email):
		return "email"
	case sent.Phone != "" && digitsOf(got.Phone) != digitsOf(sent.Phone):
		return "phone"
	}
	return ""
}

// defaultSearchSettle is Engine.SearchSettle's default: GHL says its
// search shows a write "a few seconds" after it.
const defaultSearchSettle = 10 * time.Second

// settleSearch waits until a contact GHL may have created at shows in
// its search (Engine.SearchSettle after it).
func (r *run) settleSearch(ctx context.Context, at time.Time) error {
	settle := r.e.SearchSettle
	if settle <= 0 {
		settle = defaultSearchSettle
	}
	wait := at.Add(settle).Sub(r.e.now())
	if wait <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-r.e.ShuttingDown: // a nil channel never is
		return errShuttingDown
	case <-clock.Or(r.e.Clock).After(wait):
		return nil
	}
}

// findPatientContact returns the location's contact whose patient id
// custom field holds patient, "" when there is none.
func (r *run) findPatientContact(ctx context.Context, patient, field string) (string, error) {
	var found []ghl.Contact
	err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		found, resp, err = r.e.Contacts.Search(ctx, token, r.loc, ghl.CustomFieldIs(field, patient))
		return resp, err
	})
	if err != nil {
		return "", err
	}
	var ids []string
	for _, c := range found {
		if v, ok := c.FieldValue(field); ok && v == patient {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	if len(ids) > 1 {
		r.e.log().Warn("GHL holds several contacts with this patient's id; the first is used",
			"location", r.loc, "patient", patient, "contacts", ids)
	}
	return ids[0], nil
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
	if digits := digitsOf(c.Phone); digits != "" {
		keys = append(keys, "phone:"+digits)
	}
	return keys
}

func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// patientSent brings the contact's managed tags to the patient's and
// records that GHL accepted the content with hash for contact.
func (r *run) patientSent(ctx context.Context, st *store.PatientSync, contact, hash string, ex *contactExtras) error {
	if ex.manageTags {
		if err := r.applyTags(ctx, st, contact, ex); err != nil {
			return err
		}
	}
	if ex.manageDND {
		st.DND = ex.dnd
	}
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
		ls, err := r.locationSettings(ctx)
		if err != nil {
			return "", err
		}
		it, st := r.planPatient(p, ls)
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
