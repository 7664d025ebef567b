package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // a patient's time zone is checked wherever the worker runs, with or without zoneinfo

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// A patient's tags, dnd, consent, timezone and custom_fields (the
// clinic's JSON columns) reach GHL so:
//
//   - tags through POST and DELETE /contacts/{id}/tags, never the write's
//     body (GHL's `tags` there replaces every tag). ghlsync keeps the tags it
//     applied in sync_patients.tags and adds the row's tags it has not
//     applied, and removes those it applied that the row dropped: tags
//     staff set in GHL are never touched.
//   - dnd true as GHL's dnd: true; false turns it off only when ghlsync
//     turned it on (sync_patients.dnd), so a DND staff set stays.
//   - consent as dndSettings: a channel consented to (true) is DND
//     inactive, one refused (false) active; channels left out are left.
//   - timezone as the contact's timezone, checked against the IANA
//     database.
//   - custom_fields by key, resolved to the location's field ids (GHL's
//     spec requires the id); a key the location lacks is created once per
//     location (a TEXT field, NUMERICAL for a number) or, with
//     create_custom_fields off, refuses the patient.
//
// Deciding that a patient is unchanged reads none of them: the raw column
// text is hashed (patientExtras), and the JSON is parsed only for a
// patient whose hash changed. So an unchanged pass costs about what it
// did before these columns, whatever they hold.

// Limits of the JSON columns: a tag is a short label; GHL's only documented
// limit on a text is 5,000 characters (a note's body).
const (
	maxTag         = 255
	maxTags        = 100
	maxFieldValue  = 5000
	maxCustomField = 100
	maxTimezone    = 64
)

// patientExtras are the JSON columns of p as name, value pairs for the
// content hash, each "" when it holds its default, so that a patient whose
// columns all hold theirs hashes as before they existed.
func patientExtras(p *store.PatientRow) [10]string {
	dnd := p.DND
	switch dnd {
	case "0", "false", "f", "FALSE":
		dnd = ""
	}
	return [10]string{
		"tags", orDefault(p.Tags, "[]"),
		"dnd", dnd,
		"consent", orDefault(p.Consent, "{}"),
		"timezone", p.Timezone,
		"custom_fields", orDefault(p.CustomFields, "{}"),
	}
}

func orDefault(v, def string) string {
	if v == def {
		return ""
	}
	return v
}

// contactExtras is what a patient's JSON columns make of its contact,
// read by readExtras.
type contactExtras struct {
	// manageTags: the allow-list lets tags through; tags are the row's,
	// trimmed, without repeats, in its order.
	manageTags bool
	tags       []string
	// manageDND: the allow-list lets dnd and consent through.
	manageDND   bool
	dnd         bool
	dndSettings map[string]ghl.DNDSetting
	timezone    string
	// fields are the row's custom field values, by key without
	// "contact.", in key order.
	fields []fieldValue
	// prevContact is the contact the sync state named when the push
	// began: the tags of sync_patients.tags are applied to that one.
	prevContact string
}

type fieldValue struct {
	key   string
	value any // string, json.Number or []string
}

// consentChannels maps the consent column's channels to GHL's
// dndSettings channels.
var consentChannels = map[string]string{"sms": "SMS", "email": "Email", "call": "Call", "whatsapp": "WhatsApp"}

var fieldKeyRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// readExtras reads the JSON columns of p (after the allow-list) for a
// push. Any column it cannot read refuses the patient, naming the column
// and what is wrong.
func readExtras(p *store.PatientRow, ls store.LocationSettings) (*contactExtras, error) {
	ex := &contactExtras{manageTags: ls.Allows(store.FieldPatientTags), manageDND: ls.Allows(store.FieldPatientConsent),
		prevContact: p.Sync.ContactID}
	var err error
	if ex.tags, err = readTags(p.Tags); err != nil {
		return nil, err
	}
	switch strings.ToLower(strings.TrimSpace(p.DND)) {
	case "", "0", "false", "f":
	case "1", "true", "t":
		ex.dnd = true
	default:
		return nil, refusedf("dnd %q is not a boolean (want true or false)", p.DND)
	}
	if ex.dndSettings, err = readConsent(p.Consent); err != nil {
		return nil, err
	}
	if ex.timezone, err = readTimezone(p.Timezone); err != nil {
		return nil, err
	}
	if ex.fields, err = readCustomFields(p.CustomFields); err != nil {
		return nil, err
	}
	return ex, nil
}

func readTags(raw string) ([]string, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var tags []string
	if err := json.Unmarshal([]byte(raw), &tags); err != nil {
		return nil, refusedf("tags is not a JSON array of strings (such as [\"new patient\"]): %s", jsonProblem(err))
	}
	var out []string
	for i, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, refusedf("tags[%d] is empty", i)
		}
		if err := checkFields(field{fmt.Sprintf("tags[%d]", i), t, maxTag}); err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, refusedf("tags holds %d tags; GHL is sent at most %d", len(out), maxTags)
	}
	return out, nil
}

func readConsent(raw string) (map[string]ghl.DNDSetting, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var consent map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &consent); err != nil || consent == nil {
		return nil, refusedf("consent is not a JSON object of channel to true or false (such as {\"sms\": true}): %s", jsonProblem(err))
	}
	var out map[string]ghl.DNDSetting
	for _, ch := range slices.Sorted(maps.Keys(consent)) {
		name, ok := consentChannels[ch]
		if !ok {
			return nil, refusedf("consent names the unknown channel %q (want sms, email, call or whatsapp)", ch)
		}
		var given bool
		if err := json.Unmarshal(consent[ch], &given); err != nil || bytes.Equal(bytes.TrimSpace(consent[ch]), []byte("null")) {
			return nil, refusedf("consent.%s is %s, not true or false", ch, short(string(consent[ch])))
		}
		status := ghl.DNDActive // no consent: do not disturb on that channel
		if given {
			status = ghl.DNDInactive
		}
		if out == nil {
			out = make(map[string]ghl.DNDSetting)
		}
		out[name] = ghl.DNDSetting{Status: status}
	}
	return out, nil
}

func readTimezone(raw string) (string, error) {
	tz := strings.TrimSpace(raw)
	if tz == "" {
		return "", nil
	}
	if err := checkFields(field{"timezone", tz, maxTimezone}); err != nil {
		return "", err
	}
	if tz == "Local" {
		return "", refusedf("timezone %q is not an IANA time zone (such as Europe/London)", tz)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return "", refusedf("timezone %q is not an IANA time zone (such as Europe/London)", tz)
	}
	return tz, nil
}

func readCustomFields(raw string) ([]fieldValue, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &values); err != nil || values == nil {
		return nil, refusedf("custom_fields is not a JSON object of GHL custom field key to value (such as {\"package\": \"10 sessions\"}): %s",
			jsonProblem(err))
	}
	var out []fieldValue
	for _, k := range slices.Sorted(maps.Keys(values)) {
		key := strings.TrimPrefix(k, "contact.")
		if len(key) > maxCustomField || !fieldKeyRE.MatchString(key) {
			return nil, refusedf("custom_fields key %s is not a GHL custom field key (lower-case letters, digits and _, "+
				"with or without \"contact.\")", clip(k))
		}
		if "contact."+key == PatientIDFieldKey {
			return nil, refusedf("custom_fields key %q is ghlsync's own field, which holds the patient's external_id", k)
		}
		v, err := readFieldValue(values[k])
		if err != nil {
			return nil, refusedf("custom_fields.%s: %s", key, err)
		}
		if v != nil {
			out = append(out, fieldValue{key, v})
		}
	}
	return out, nil
}

// readFieldValue reads one custom field value: a string, a number or a
// list of strings (checkbox and multiple option fields); nil for a null
// or empty string, which is not sent.
func readFieldValue(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		v = strings.TrimSpace(v)
		if v == "" {
			return nil, nil
		}
		if err := checkValue(v); err != nil {
			return nil, err
		}
		return v, nil
	case json.Number:
		return v, nil
	case []any:
		list := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("a list must hold strings only")
			}
			if err := checkValue(s); err != nil {
				return nil, err
			}
			list = append(list, s)
		}
		return list, nil
	}
	return nil, fmt.Errorf("want a string, a number or a list of strings, not %s", short(string(raw)))
}

// checkValue refuses a custom field value GHL should not get; multi-line
// text is fine (LARGE_TEXT fields), a NUL is not.
func checkValue(s string) error {
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("holds a NUL character")
	}
	if n := len([]rune(s)); n > maxFieldValue {
		return fmt.Errorf("is %d characters long; GHL is sent at most %d", n, maxFieldValue)
	}
	return nil
}

// jsonProblem says what is wrong with a JSON column, without its value.
func jsonProblem(err error) string {
	if err == nil {
		return "it is null"
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return err.Error()
}

// clip quotes a value in a reason, shortened.
func clip(s string) string { return strconv.Quote(short(s)) }

// short shortens a value shown in a reason to 40 bytes (of valid UTF-8).
func short(s string) string {
	if len(s) <= 40 {
		return s
	}
	return strings.ToValidUTF8(s[:40], "") + "…"
}

// applyExtras puts what ex says of the contact into c: consent, time
// zone, and the custom field values by id, creating or refusing keys the
// location lacks. st is the patient's sync state (whether ghlsync turned
// DND on).
func (r *run) applyExtras(ctx context.Context, c *ghl.Contact, st *store.PatientSync, ex *contactExtras) error {
	if ex.manageDND {
		switch {
		case ex.dnd:
			c.DND = ptr(true)
		case st.DND:
			c.DND = ptr(false)
		}
		c.DNDSettings = ex.dndSettings
	}
	c.Timezone = ex.timezone
	for _, f := range ex.fields {
		id, err := r.customField(ctx, f)
		if err != nil {
			return err
		}
		c.CustomFields = append(c.CustomFields, ghl.CustomField{ID: id, Key: "contact." + f.key, Value: f.value})
	}
	return nil
}

// customField returns the id of the location's custom field for f's key,
// creating the field when the location has none and its settings allow
// it. The location's fields are listed once per run.
func (r *run) customField(ctx context.Context, f fieldValue) (string, error) {
	ls, err := r.locationSettings(ctx)
	if err != nil {
		return "", err
	}
	r.setup.mu.Lock()
	defer r.setup.mu.Unlock()
	key := "contact." + f.key
	if id, err := r.fieldLocked(ctx, key); id != "" || err != nil {
		return id, err
	}
	if !ls.CreatesCustomFields() {
		return "", retryRefusedf("custom_fields key %s: the location has no such custom field, and its setting "+
			"create_custom_fields is off; create the field in GHL (Settings, Custom Fields), or set create_custom_fields on", key)
	}
	dataType := "TEXT"
	switch f.value.(type) {
	case json.Number:
		dataType = "NUMERICAL"
	case []string:
		return "", refusedf("custom_fields key %s: the location has no such custom field, and a list value needs "+
			"a checkbox or multiple options field with its options; create the field in GHL (Settings, Custom Fields)", key)
	}
	var def *ghl.FieldDef
	err = r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		def, resp, err = r.e.Contacts.CreateCustomField(ctx, token, r.loc, f.key, dataType)
		return resp, err
	})
	if err != nil {
		return "", fieldFault("creating the custom field "+key, err)
	}
	if def.FieldKey != key {
		r.e.log().Warn("GHL gave the custom field it created another key than the patient's",
			"location", r.loc, "field", def.ID, "key", def.FieldKey, "want", key)
	}
	r.e.log().Info("created a contact custom field a patient's custom_fields names",
		"location", r.loc, "field", def.ID, "key", def.FieldKey)
	r.setup.fields[key], r.setup.fields[def.FieldKey] = def.ID, def.ID
	return r.setup.use(key, def.ID), nil
}

// fieldLocked returns the id of the location's contact custom field key,
// "" when the location has none; r.setup.mu is held. A field the pass's
// earlier runs used is taken as they found it, which saves each follow-up
// a GHL call of the location's quota; any other key lists the location's
// fields, once per run, so that a field staff created in GHL meanwhile is
// found, not created again.
func (r *run) fieldLocked(ctx context.Context, key string) (string, error) {
	if id := r.setup.fields[key]; id != "" {
		return r.setup.use(key, id), nil
	}
	if r.setup.listed {
		return "", nil
	}
	if err := r.listFieldsLocked(ctx); err != nil {
		return "", err
	}
	if id := r.setup.fields[key]; id != "" {
		return r.setup.use(key, id), nil
	}
	return "", nil
}

// listFieldsLocked lists the location's contact custom fields;
// r.setup.mu is held.
func (r *run) listFieldsLocked(ctx context.Context) error {
	var fields []ghl.FieldDef
	err := r.ghl.call(ctx, func(ctx context.Context, token string) (resp *ghl.Response, err error) {
		fields, resp, err = r.e.Contacts.CustomFields(ctx, token, r.loc)
		return resp, err
	})
	if err != nil {
		return fieldFault("listing the location's custom fields", err)
	}
	r.setup.fields = make(map[string]string, len(fields))
	for _, f := range fields {
		r.setup.fields[f.FieldKey] = f.ID
	}
	r.setup.listed = true
	return nil
}

// applyTags brings the tags ghlsync manages on contact to ex.tags: it adds
// the ones not applied yet and removes the applied ones the row dropped,
// leaving every other tag (staff's) as it is, and records them in st.
func (r *run) applyTags(ctx context.Context, st *store.PatientSync, contact string, ex *contactExtras) error {
	var applied []string
	if contact == ex.prevContact && st.Tags != "" {
		if err := json.Unmarshal([]byte(st.Tags), &applied); err != nil {
			return fmt.Errorf("sync_patients.tags of %s: %w", st.ExternalID, err)
		}
	}
	var add, remove []string
	for _, t := range ex.tags {
		if !slices.Contains(applied, t) {
			add = append(add, t)
		}
	}
	for _, t := range applied {
		if !slices.Contains(ex.tags, t) {
			remove = append(remove, t)
		}
	}
	if len(add) > 0 || len(remove) > 0 {
		// What the calls change is recorded first: their webhooks may
		// come before their answers, and are ghlsync's own.
		if err := r.recordManagedTags(ctx, st.ExternalID, contact, append(slices.Clone(applied), add...)); err != nil {
			return err
		}
		// The contact is recorded before the tag calls: a failed call
		// must not lose it.
		if st.ContactID != contact || st.CreatingAt != nil {
			st.ContactID, st.CreatingAt = contact, nil
			if err := r.persist(ctx, func(ctx context.Context) error { return r.e.State.SavePatientSync(ctx, st) }); err != nil {
				return err
			}
		}
	}
	for _, call := range []struct {
		tags []string
		fn   func(context.Context, string, string, []string) ([]string, *ghl.Response, error)
	}{{add, r.e.Contacts.AddTags}, {remove, r.e.Contacts.RemoveTags}} {
		if len(call.tags) == 0 {
			continue
		}
		err := r.ghl.call(ctx, func(ctx context.Context, token string) (*ghl.Response, error) {
			_, resp, err := call.fn(ctx, token, contact, call.tags)
			return resp, err
		})
		if err != nil {
			return err
		}
	}
	st.Tags = ""
	if len(ex.tags) > 0 {
		b, _ := json.Marshal(ex.tags)
		st.Tags = string(b)
	}
	return nil
}
