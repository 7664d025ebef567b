package syncer

import (
	"unicode"
	"unicode/utf8"
)

// Field limits of what is sent to GHL. GHL's OpenAPI files
// (GoHighLevel/highlevel-api-docs, apps/contacts.json and
// apps/calendars.json) declare no maxLength for these fields (the only
// ones there are 50 for the contact ids of a bulk request and 5,000 for a
// note's body), so what GHL does with an oversized or garbled value is
// unknown: a 422 at best, at worst a stored copy. ghlsync refuses such a
// record itself, saying which column and why, and goes on with the
// others. The limits are generous for real data: RFC 5321's 254 for an
// email, E.164's 15 digits with room for spacing and an extension for a
// phone, one line of address, and the 255 of the ids and names columns.
const (
	maxName       = 255
	maxEmail      = 254
	maxPhone      = 64
	maxAddress    = 1000
	maxCity       = 255
	maxPostalCode = 32
	maxCountry    = 64
	maxTitle      = 255
	maxID         = 255
)

// field is a value to send and the column it comes from.
type field struct {
	column string
	value  string
	max    int
}

// checkFields refuses the first value that GHL should not get: invalid
// UTF-8, a control character (a NUL, a newline, an escape) or more than
// its limit of characters. The reason names the column, never the value,
// which may be a megabyte.
func checkFields(fs ...field) error {
	for _, f := range fs {
		if !utf8.ValidString(f.value) {
			return refusedf("%s is not valid UTF-8", f.column)
		}
		n := 0
		for i, r := range f.value {
			if unicode.IsControl(r) {
				return refusedf("%s holds the control character %U at byte %d", f.column, r, i)
			}
			n++
		}
		if n > f.max {
			return refusedf("%s is %d characters long; GHL is sent at most %d", f.column, n, f.max)
		}
	}
	return nil
}
