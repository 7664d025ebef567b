package tasks_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// staff is a GHL user of loc working in GHL itself, beside ghlsync: its
// calls go through a token of its own.
type staff struct {
	contacts *ghl.ContactsService
	token    string
}

func newStaff(t *testing.T, e *syncEnv, loc string) *staff {
	t.Helper()
	c, err := ghl.NewClient(ghl.Config{BaseURL: e.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	access, _, _ := e.Fake.IssueToken(loc)
	return &staff{contacts: c.Contacts, token: access}
}

// fieldValues returns c's custom field values by the location's field
// keys.
func fieldValues(t *testing.T, e *syncEnv, loc string, c ghltest.Contact) map[string]any {
	t.Helper()
	keys := map[string]string{}
	for _, f := range e.Fake.CustomFields(loc) {
		keys[f.ID] = f.FieldKey
	}
	out := map[string]any{}
	for _, f := range c.CustomFields {
		k, ok := keys[f.ID]
		if !ok {
			t.Errorf("contact %s holds a value of field %s, which %s does not have", c.ID, f.ID, loc)
		}
		out[k] = f.Value
	}
	return out
}

func onlyContact(t *testing.T, e *syncEnv, loc string) ghltest.Contact {
	t.Helper()
	cs := e.Fake.Contacts(loc)
	if len(cs) != 1 {
		t.Fatalf("%s holds %d contacts, want 1", loc, len(cs))
	}
	return cs[0]
}

// Issue 10, must-show 1: a patient with tags, consent, a time zone and
// three custom fields, one of them a key the location lacks: GHL holds
// exactly those values (the missing field created once); a tag staff add
// in GHL survives two more syncs that update the contact; a tag removed
// from the row is removed in GHL, and no write's body ever carries tags
// (GHL's tags there replace them all).
func TestSyncSendsTagsConsentAndCustomFields(t *testing.T) {
	t.Parallel()
	rec := &bodyRecorder{}
	e := newSyncEnv(t, ghltest.Options{}, recordBodies(rec), "loc1")
	ctx := context.Background()
	s := newStaff(t, e, "loc1")
	for _, f := range [][2]string{{"package", "TEXT"}, {"sessions left", "NUMERICAL"}} {
		if _, _, err := s.contacts.CreateCustomField(ctx, s.token, "loc1", f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	// As the clinic system writes it: plain SQL.
	e.exec(t, `INSERT INTO patients (location_id, external_id, first_name, last_name, email, tags, dnd, consent,
			timezone, custom_fields, updated_at)
		VALUES ('loc1', 'P-1', 'Ada', 'Lovelace', 'ada@example.com', '["new patient", "package: 10 sessions"]', FALSE,
			'{"sms": true, "email": false, "whatsapp": true}', 'Europe/London',
			'{"package": "10 sessions", "contact.sessions_left": 7, "referred_by": "Dr Hopper"}', CURRENT_TIMESTAMP)`)

	if run := e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients); run.Created != 1 || run.Failed != 0 {
		t.Fatalf("first sync: %+v", run)
	}
	c := onlyContact(t, e, "loc1")
	if diff := cmp.Diff([]string{"new patient", "package: 10 sessions"}, c.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	wantDND := map[string]ghltest.DNDSetting{"SMS": {Status: "inactive"}, "Email": {Status: "active"}, "WhatsApp": {Status: "inactive"}}
	if diff := cmp.Diff(wantDND, c.DNDSettings); diff != "" || c.DND {
		t.Errorf("dnd %t, dndSettings (-want +got):\n%s", c.DND, diff)
	}
	if c.Timezone != "Europe/London" {
		t.Errorf("timezone %q", c.Timezone)
	}
	wantFields := map[string]any{syncer.PatientIDFieldKey: "P-1", "contact.package": "10 sessions",
		"contact.sessions_left": 7.0, "contact.referred_by": "Dr Hopper"}
	if diff := cmp.Diff(wantFields, fieldValues(t, e, "loc1", c)); diff != "" {
		t.Errorf("custom fields (-want +got):\n%s", diff)
	}

	// Staff tag the contact in GHL; two syncs of changed rows update it.
	if _, _, err := s.contacts.AddTags(ctx, s.token, c.ID, []string{"vip"}); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE patients SET first_name = 'Augusta' WHERE external_id = 'P-1'`)
	if run := e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients); run.Updated != 1 {
		t.Fatalf("second sync: %+v", run)
	}
	e.exec(t, `UPDATE patients SET custom_fields = '{"package": "20 sessions", "sessions_left": 19, "referred_by": "Dr Hopper"}'
		WHERE external_id = 'P-1'`)
	if run := e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients); run.Updated != 1 {
		t.Fatalf("third sync: %+v", run)
	}
	c = onlyContact(t, e, "loc1")
	if diff := cmp.Diff([]string{"new patient", "package: 10 sessions", "vip"}, c.Tags); diff != "" || c.FirstName != "Augusta" {
		t.Errorf("after two syncs: first name %q, tags (-want +got):\n%s", c.FirstName, diff)
	}
	wantFields["contact.package"], wantFields["contact.sessions_left"] = "20 sessions", 19.0
	if diff := cmp.Diff(wantFields, fieldValues(t, e, "loc1", c)); diff != "" {
		t.Errorf("custom fields after the change (-want +got):\n%s", diff)
	}

	// A tag dropped from the row (and one added) changes only those.
	e.exec(t, `UPDATE patients SET tags = '["package: 20 sessions", "package: 10 sessions"]' WHERE external_id = 'P-1'`)
	if run := e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients); run.Updated != 1 {
		t.Fatalf("fourth sync: %+v", run)
	}
	c = onlyContact(t, e, "loc1")
	got := slices.Sorted(slices.Values(c.Tags))
	if diff := cmp.Diff([]string{"package: 10 sessions", "package: 20 sessions", "vip"}, got); diff != "" {
		t.Errorf("after the row dropped \"new patient\": tags (-want +got):\n%s", diff)
	}

	// The missing field was created once; no write carried tags.
	if n := e.Fake.Stats().CustomFieldCreates["loc1"]; n != 4 { // the test's two, the patient id's, referred_by
		t.Errorf("%d custom fields created, want 4", n)
	}
	rec.mu.Lock()
	writes := 0
	for _, r := range rec.bodies {
		if !strings.HasPrefix(r.path, "/contacts/") || strings.HasSuffix(r.path, "/tags") || r.path == "/contacts/search" {
			continue
		}
		writes++
		var body map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &body); err != nil || body["tags"] != nil {
			t.Errorf("%s %s carried tags: %s", r.method, r.path, r.body)
		}
	}
	rec.mu.Unlock()
	if writes != 4 {
		t.Errorf("%d contact writes, want 4", writes)
	}
	if st := e.patientState(t, "loc1", "P-1"); st.Tags != `["package: 20 sessions","package: 10 sessions"]` {
		t.Errorf("sync_patients.tags = %s", st.Tags)
	}
}

// dnd turns GHL's DND on; turning it off in the row turns it off in GHL,
// while a DND staff turned on in GHL is never turned off by a sync.
func TestSyncTurnsOffOnlyTheDNDItTurnedOn(t *testing.T) {
	t.Parallel()
	e := newSyncEnv(t, ghltest.Options{}, nil, "loc1")
	e.exec(t, `INSERT INTO patients (location_id, external_id, first_name, email, dnd, updated_at) VALUES
		('loc1', 'P-1', 'Ada', 'ada@example.com', TRUE, CURRENT_TIMESTAMP),
		('loc1', 'P-2', 'Grace', 'grace@example.com', FALSE, CURRENT_TIMESTAMP)`)
	e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	dnd := func() map[string]bool {
		out := map[string]bool{}
		for _, c := range e.Fake.Contacts("loc1") {
			out[c.FirstName] = c.DND
		}
		return out
	}
	if diff := cmp.Diff(map[string]bool{"Ada": true, "Grace": false}, dnd()); diff != "" {
		t.Fatalf("dnd (-want +got):\n%s", diff)
	}
	s := newStaff(t, e, "loc1")
	for _, c := range e.Fake.Contacts("loc1") {
		if c.FirstName == "Grace" {
			if _, err := s.contacts.SetDND(context.Background(), s.token, c.ID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.exec(t, `UPDATE patients SET dnd = FALSE, last_name = 'Lovelace' WHERE external_id = 'P-1'`)
	e.exec(t, `UPDATE patients SET last_name = 'Hopper' WHERE external_id = 'P-2'`)
	if run := e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients); run.Updated != 2 {
		t.Fatalf("second sync: %+v", run)
	}
	if diff := cmp.Diff(map[string]bool{"Ada": false, "Grace": true}, dnd()); diff != "" {
		t.Errorf("dnd (-want +got):\n%s", diff)
	}
}

// A JSON column that cannot be read (bad JSON, an unknown consent channel,
// a time zone that is not one, a custom field key the location lacks when
// create_custom_fields is off) refuses that patient alone, saying which
// column and why; the others go through, and a refused patient is not
// tried again until its row changes, but for the missing custom field,
// whose cause is outside the row: it goes through once the setting
// allows the field.
func TestSyncRefusesUnreadablePatientData(t *testing.T) {
	t.Parallel()
	e := setupSync(t, ghltest.Options{}, nil, "loc1")
	e.seed(t, "loc1", 7, 0)
	ctx := context.Background()
	ls := store.DefaultSettings("loc1")
	k, _ := store.LookupSettingKey("create_custom_fields")
	if err := k.Set(&ls, "off"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE patients SET tags = '["new patient"' WHERE external_id = 'p-0001'`,
		`UPDATE patients SET consent = '{"sms": true, "fax": false}' WHERE external_id = 'p-0002'`,
		`UPDATE patients SET timezone = 'Mars/Olympus_Mons' WHERE external_id = 'p-0003'`,
		`UPDATE patients SET custom_fields = '{"referred_by": "Dr Hopper"}' WHERE external_id = 'p-0004'`,
		`UPDATE patients SET consent = '{"sms": "yes"}' WHERE external_id = 'p-0005'`,
		`UPDATE patients SET tags = '["vip"]', custom_fields = '{"Bad Key": 1}' WHERE external_id = 'p-0006'`,
	} {
		e.exec(t, q)
	}
	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	reasons := map[string]string{}
	for _, f := range res.Failed {
		reasons[f.ExternalID] = f.Reason
	}
	want := map[string]string{
		"p-0001": "tags is not a JSON array of strings (such as [\"new patient\"]): invalid JSON at byte 14",
		"p-0002": `consent names the unknown channel "fax" (want sms, email, call or whatsapp)`,
		"p-0003": `timezone "Mars/Olympus_Mons" is not an IANA time zone (such as Europe/London)`,
		"p-0004": "custom_fields key contact.referred_by: the location has no such custom field, and its setting " +
			"create_custom_fields is off; create the field in GHL (Settings, Custom Fields), or set create_custom_fields on",
		"p-0005": `consent.sms is "yes", not true or false`,
		"p-0006": `custom_fields key "Bad Key" is not a GHL custom field key (lower-case letters, digits and _, with or without "contact.")`,
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("refused patients (-want +got):\n%s", diff)
	}
	if res.Created != 1 || len(e.Fake.Contacts("loc1")) != 1 {
		t.Errorf("result %+v, %d contacts in GHL", res, len(e.Fake.Contacts("loc1")))
	}
	for _, f := range e.Fake.CustomFields("loc1") {
		if f.FieldKey == "contact.referred_by" {
			t.Errorf("the field %s was created with create_custom_fields off", f.FieldKey)
		}
	}
	before := e.calls("loc1")
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.FailedCount != 6 || res.Unchanged != 1 {
		t.Errorf("second sync: %+v", res)
	}
	// The missing field's patient is tried again (its cause is outside
	// its row), which costs the one list of the location's fields; the
	// others are known refusals.
	if n := e.calls("loc1") - before; n > 1 {
		t.Errorf("the second sync made %d calls, want at most the field list", n)
	}

	// Once the setting allows it, the next pass creates the field and the
	// patient, its row unchanged.
	if err := k.Set(&ls, "on"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.FailedCount != 5 || len(e.Fake.Contacts("loc1")) != 2 {
		t.Errorf("sync after create_custom_fields on: %+v, %d contacts in GHL, want p-0004's too", res, len(e.Fake.Contacts("loc1")))
	}
}

// The allow-list covers the new columns: without patient.tags,
// patient.consent, patient.timezone and patient.custom_fields no body
// carries dnd, dndSettings, timezone or a custom field but the patient
// id, and no tag is added.
func TestSyncAllowListKeepsPatientDataOutOfGHL(t *testing.T) {
	t.Parallel()
	rec := &bodyRecorder{}
	e := newSyncEnv(t, ghltest.Options{}, recordBodies(rec), "loc1")
	ctx := context.Background()
	ls := store.DefaultSettings("loc1")
	k, _ := store.LookupSettingKey("fields")
	if err := k.Set(&ls, "patient.first_name,patient.email"); err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveSettings(ctx, ls); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `INSERT INTO patients (location_id, external_id, first_name, email, tags, dnd, consent, timezone,
			custom_fields, updated_at)
		VALUES ('loc1', 'P-1', 'Ada', 'ada@example.com', '["hiv clinic"]', TRUE, '{"sms": false}', 'Europe/London',
			'{"diagnosis": "confidential"}', CURRENT_TIMESTAMP)`)
	e.mustSync(t, tasks.NewPatientsSyncTask, syncer.KindPatients)
	keys, n := rec.keys(t, "/contacts")
	if n == 0 || keys["firstName"] == 0 {
		t.Fatalf("%d contact bodies, keys %v", n, keys)
	}
	for _, key := range []string{"dnd", "dndSettings", "timezone", "tags"} {
		if keys[key] != 0 {
			t.Errorf("%d bodies carried %s", keys[key], key)
		}
	}
	rec.mu.Lock()
	for _, r := range rec.bodies {
		if strings.Contains(string(r.body), "confidential") || strings.Contains(string(r.body), "hiv clinic") {
			t.Errorf("%s %s sent what the allow-list keeps back: %s", r.method, r.path, r.body)
		}
	}
	rec.mu.Unlock()
	c := onlyContact(t, e, "loc1")
	if len(c.Tags) != 0 || c.DND || len(c.DNDSettings) != 0 || c.Timezone != "" || len(c.CustomFields) != 1 {
		b, _ := json.Marshal(c)
		t.Errorf("contact holds what the allow-list keeps back: %s", b)
	}
}
