package syncer

import "github.com/ghlsync/ghlsync/store"

// The location's field allow-list (store.LocationSettings.Fields) is
// applied to the clinic's row before it is mapped: a field it leaves out
// is emptied, so it is neither checked nor sent (empty fields are left out
// of GHL's request bodies), nor does its value count in the hash. The
// hash covers the allow-list itself, so changing it sends the records
// again.

// allowedPatient returns p with the fields the allow-list of ls leaves
// out emptied; p itself when it allows every field.
func allowedPatient(p *store.PatientRow, ls store.LocationSettings) *store.PatientRow {
	if ls.Fields == "" {
		return p
	}
	a := *p
	for name, cols := range map[string][]*string{
		store.FieldPatientFirstName:    {&a.FirstName},
		store.FieldPatientLastName:     {&a.LastName},
		store.FieldPatientEmail:        {&a.Email},
		store.FieldPatientPhone:        {&a.Phone},
		store.FieldPatientDateOfBirth:  {&a.DateOfBirth},
		store.FieldPatientAddress:      {&a.Address1, &a.City, &a.PostalCode, &a.Country},
		store.FieldPatientTags:         {&a.Tags},
		store.FieldPatientConsent:      {&a.DND, &a.Consent},
		store.FieldPatientTimezone:     {&a.Timezone},
		store.FieldPatientCustomFields: {&a.CustomFields},
	} {
		if !ls.Allows(name) {
			for _, c := range cols {
				*c = ""
			}
		}
	}
	return &a
}

// allowedAppointment returns a with the fields the allow-list of ls
// leaves out emptied; a itself when it allows every field.
func allowedAppointment(a *store.AppointmentRow, ls store.LocationSettings) *store.AppointmentRow {
	if ls.Fields == "" {
		return a
	}
	b := *a
	if !ls.Allows(store.FieldAppointmentTitle) {
		b.Title = ""
	}
	if !ls.Allows(store.FieldAppointmentAddress) {
		b.Address = ""
	}
	if !ls.Allows(store.FieldAppointmentNotes) {
		b.Notes = ""
	}
	return &b
}
