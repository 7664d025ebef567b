package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"text/template"
)

// The fields a location's allow-list (LocationSettings.Fields) names: what
// of a record may leave for GHL. A field left out is never sent, not even
// empty, so a clinic can keep health data out of its CRM. The clinic's
// patient id (the contact custom field ghlsync matches contacts by) and
// what GHL needs to book an appointment (calendar, contact, times, status)
// always go.
const (
	FieldPatientFirstName   = "patient.first_name"
	FieldPatientLastName    = "patient.last_name"
	FieldPatientEmail       = "patient.email"
	FieldPatientPhone       = "patient.phone"
	FieldPatientDateOfBirth = "patient.date_of_birth"
	// FieldPatientAddress is address1, city, postal_code and country.
	FieldPatientAddress = "patient.address"
	// FieldPatientTags is the tags ghlsync manages: not allowed, it adds
	// and removes none.
	FieldPatientTags = "patient.tags"
	// FieldPatientConsent is dnd and consent (GHL's dnd, dndSettings).
	FieldPatientConsent      = "patient.consent"
	FieldPatientTimezone     = "patient.timezone"
	FieldPatientCustomFields = "patient.custom_fields"
	FieldAppointmentTitle    = "appointment.title"
	FieldAppointmentAddress  = "appointment.address"
	FieldAppointmentNotes    = "appointment.notes"
)

// FieldNames are the names an allow-list may hold, in the order they are
// listed.
var FieldNames = []string{
	FieldPatientFirstName, FieldPatientLastName, FieldPatientEmail, FieldPatientPhone,
	FieldPatientDateOfBirth, FieldPatientAddress, FieldPatientTags, FieldPatientConsent, FieldPatientTimezone,
	FieldPatientCustomFields, FieldAppointmentTitle, FieldAppointmentAddress, FieldAppointmentNotes,
}

// AllFields is the allow-list value that allows every field, the default.
const AllFields = "all"

// ParseFields reads an allow-list: AllFields (or "") for every field, else
// field names separated by commas. It returns the list as stored: ""
// for all, else the names sorted and without repeats.
func ParseFields(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == AllFields {
		return "", nil
	}
	var names []string
	for n := range strings.SplitSeq(s, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(FieldNames, n) {
			return "", fmt.Errorf("unknown field %q (want %s, or a comma-separated list of %s)",
				n, AllFields, strings.Join(FieldNames, ", "))
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ","), nil
}

// Allows reports whether the location's allow-list lets the field name
// (a Field constant) be sent.
func (ls LocationSettings) Allows(name string) bool {
	if ls.Fields == "" {
		return true
	}
	return slices.Contains(strings.Split(ls.Fields, ","), name)
}

// TitleData is what an appointment title template can show: the
// practitioner's name, the GHL calendar's name, the appointment's status
// in the clinic, and the clinic's own title. A template calls them as
// functions: {{practitioner}}, {{calendar}}, {{status}}, {{title}}.
type TitleData struct {
	Practitioner, Calendar, Status, Title string
}

// TitleTemplate is a parsed appointment title template.
type TitleTemplate struct {
	src string
}

// titleFuncs are the template's functions, placeholders at parse time;
// Render binds them to an appointment's data.
func titleFuncs(d TitleData) template.FuncMap {
	return template.FuncMap{
		"practitioner": func() string { return d.Practitioner },
		"calendar":     func() string { return d.Calendar },
		"status":       func() string { return d.Status },
		"title":        func() string { return d.Title },
	}
}

// ParseTitleTemplate reads an appointment title template ("" for none:
// the clinic's title is sent as it is). It is run once with sample data,
// so that a template that cannot render is refused when it is set, not
// when an appointment is sent.
func ParseTitleTemplate(s string) (*TitleTemplate, error) {
	t := &TitleTemplate{src: s}
	if s == "" {
		return t, nil
	}
	if _, err := t.Render(TitleData{Practitioner: "P", Calendar: "C", Status: AppointmentBooked, Title: "T"}); err != nil {
		return nil, err
	}
	return t, nil
}

// Render returns the title for d. A template is parsed on every call: its
// functions are bound to d, and a title is rendered only for an
// appointment about to be sent.
func (t *TitleTemplate) Render(d TitleData) (string, error) {
	if t.src == "" {
		return d.Title, nil
	}
	tt, err := template.New("title_template").Funcs(titleFuncs(d)).Parse(t.src)
	if err != nil {
		return "", fmt.Errorf("title_template: %s", oneLine(err.Error()))
	}
	var b bytes.Buffer
	// No data: a template names what it shows by the functions only, and
	// a field ({{.Title}}) fails.
	if err := tt.Execute(&b, struct{}{}); err != nil {
		return "", fmt.Errorf("title_template: %s", oneLine(err.Error()))
	}
	return strings.TrimSpace(b.String()), nil
}

// UsesTitle reports whether the template shows the clinic's title.
func (t *TitleTemplate) UsesTitle() bool {
	if t.src == "" {
		return true
	}
	r, _ := t.Render(TitleData{Title: "\x00title\x00"})
	return strings.Contains(r, "\x00title\x00")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
