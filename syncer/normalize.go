package syncer

import (
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/language"

	"github.com/ghlsync/ghlsync/ghl"
)

// GHL matches contacts by phone in E.164 and takes country as an ISO 3166
// alpha-2 code (GHL.md). What the clinic wrote is normalised to those
// forms before it is sent, or refused:
//
//   - phone: read with github.com/nyaruka/phonenumbers, a number without
//     a country code in the location's phone region (its settings,
//     store.LocationSettings.Region), and sent as E.164 ("+442079460018").
//     A number must be of a possible length for its country; one that is
//     not, or is no number at all, is the record's refusal.
//   - country: an alpha-2 or alpha-3 code in any case ("gb", "GBR"), or
//     one of the English names in countryNames ("United Kingdom", "UK",
//     "England"), sent as the alpha-2 code. Anything else is the record's
//     refusal.
//
// Normalising happens when a record is sent, not when it is planned: the
// content hash covers what the clinic wrote and the region a phone is
// read in, so an unchanged pass parses no phone.

// normalizeContact puts c's phone in E.164 (read in region when it has no
// country code) and its country in ISO 3166 alpha-2.
func normalizeContact(c *ghl.Contact, region string) error {
	if c.Phone != "" {
		p, err := e164(c.Phone, region)
		if err != nil {
			return err
		}
		c.Phone = p
	}
	if c.Country != "" {
		cc, ok := countryCode(c.Country)
		if !ok {
			return refusedf("country %q is not an ISO 3166 country code or a country name ghlsync knows; "+
				"write the two-letter code, such as GB or US", c.Country)
		}
		c.Country = cc
	}
	return nil
}

// e164 returns phone in E.164, reading a number without country code in
// region.
func e164(phone, region string) (string, error) {
	n, err := phonenumbers.Parse(phone, region)
	if err != nil {
		return "", refusedf("phone %q is not a phone number (read in region %s): %v", phone, region, err)
	}
	if reason := phonenumbers.IsPossibleNumberWithReason(n); reason != phonenumbers.IS_POSSIBLE {
		why := map[phonenumbers.ValidationResult]string{
			phonenumbers.INVALID_COUNTRY_CODE:   "its country code is unknown",
			phonenumbers.TOO_SHORT:              "it is too short",
			phonenumbers.TOO_LONG:               "it is too long",
			phonenumbers.IS_POSSIBLE_LOCAL_ONLY: "it lacks an area code",
			phonenumbers.INVALID_LENGTH:         "its length fits no number of its country",
		}[reason]
		if why == "" {
			why = "it is not a possible number"
		}
		return "", refusedf("phone %q cannot be sent in E.164 (read in region %s): %s", phone, region, why)
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// countryCode returns the ISO 3166 alpha-2 code of s: a code of two or
// three letters, or a name countryNames knows.
func countryCode(s string) (string, bool) {
	key := countryKey(s)
	if cc, ok := countryNames[key]; ok {
		return cc, true
	}
	if n := len(key); n != 2 && n != 3 || strings.ContainsFunc(key, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return "", false
	}
	r, err := language.ParseRegion(key)
	// ISO3 is ZZZ for codes that are reserved rather than assigned (UK, EU
	// and the like); IsCountry leaves out groupings such as 419.
	if err != nil || !r.IsCountry() || r.ISO3() == "ZZZ" {
		return "", false
	}
	return r.String(), true
}

// countryKey folds a country as written for lookup: lower case, letters
// and single spaces only ("U.S.A." is "usa", "Côte d'Ivoire" is "cote
// divoire"), without a leading "the".
func countryKey(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		r = foldAccent(r)
		switch {
		case r >= 'a' && r <= 'z':
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
			space = false
		case unicode.IsSpace(r) || r == '-' || r == ',' || r == '&':
			space = true
		}
	}
	return strings.TrimPrefix(b.String(), "the ")
}

// foldAccent maps the accented letters of country names to plain ones.
func foldAccent(r rune) rune {
	switch r {
	case 'á', 'à', 'â', 'ä', 'ã', 'å':
		return 'a'
	case 'é', 'è', 'ê', 'ë':
		return 'e'
	case 'í', 'î', 'ï':
		return 'i'
	case 'ó', 'ô', 'ö', 'õ':
		return 'o'
	case 'ú', 'û', 'ü':
		return 'u'
	case 'ç':
		return 'c'
	case 'ñ':
		return 'n'
	}
	return r
}

// countryNames maps English names (as countryKey folds them) to ISO 3166
// alpha-2 codes: the common names of the countries clinics are likely to
// write, their usual variants, and codes that are not ISO's but are in
// use (UK). The alpha-2 and alpha-3 codes of every country are read
// without this table.
var countryNames = map[string]string{
	"afghanistan": "AF", "albania": "AL", "algeria": "DZ", "andorra": "AD", "angola": "AO",
	"argentina": "AR", "armenia": "AM", "australia": "AU", "austria": "AT", "azerbaijan": "AZ",
	"bahamas": "BS", "bahrain": "BH", "bangladesh": "BD", "barbados": "BB", "belarus": "BY",
	"belgium": "BE", "belize": "BZ", "bolivia": "BO", "bosnia and herzegovina": "BA", "botswana": "BW",
	"brazil": "BR", "brunei": "BN", "bulgaria": "BG", "cambodia": "KH", "cameroon": "CM",
	"canada": "CA", "cape verde": "CV", "cabo verde": "CV", "chile": "CL", "china": "CN",
	"colombia": "CO", "costa rica": "CR", "croatia": "HR", "cuba": "CU", "cyprus": "CY",
	"czech republic": "CZ", "czechia": "CZ", "denmark": "DK", "dominican republic": "DO", "ecuador": "EC",
	"egypt": "EG", "el salvador": "SV", "estonia": "EE", "ethiopia": "ET", "fiji": "FJ",
	"finland": "FI", "france": "FR", "georgia": "GE", "germany": "DE", "ghana": "GH",
	"greece": "GR", "guatemala": "GT", "honduras": "HN", "hong kong": "HK", "hungary": "HU",
	"iceland": "IS", "india": "IN", "indonesia": "ID", "iran": "IR", "iraq": "IQ",
	"ireland": "IE", "republic of ireland": "IE", "israel": "IL", "italy": "IT", "jamaica": "JM",
	"japan": "JP", "jordan": "JO", "kazakhstan": "KZ", "kenya": "KE", "kosovo": "XK",
	"kuwait": "KW", "latvia": "LV", "lebanon": "LB", "libya": "LY", "liechtenstein": "LI",
	"lithuania": "LT", "luxembourg": "LU", "malaysia": "MY", "malta": "MT", "mexico": "MX",
	"moldova": "MD", "monaco": "MC", "mongolia": "MN", "montenegro": "ME", "morocco": "MA",
	"mozambique": "MZ", "myanmar": "MM", "burma": "MM", "namibia": "NA", "nepal": "NP",
	"netherlands": "NL", "holland": "NL", "new zealand": "NZ", "nicaragua": "NI", "nigeria": "NG",
	"north macedonia": "MK", "macedonia": "MK", "norway": "NO", "oman": "OM", "pakistan": "PK",
	"palestine": "PS", "panama": "PA", "paraguay": "PY", "peru": "PE", "philippines": "PH",
	"poland": "PL", "portugal": "PT", "puerto rico": "PR", "qatar": "QA", "romania": "RO",
	"russia": "RU", "russian federation": "RU", "rwanda": "RW", "saudi arabia": "SA", "senegal": "SN",
	"serbia": "RS", "singapore": "SG", "slovakia": "SK", "slovenia": "SI", "somalia": "SO",
	"south africa": "ZA", "south korea": "KR", "korea": "KR", "republic of korea": "KR", "north korea": "KP",
	"spain": "ES", "sri lanka": "LK", "sudan": "SD", "sweden": "SE", "switzerland": "CH",
	"syria": "SY", "taiwan": "TW", "tanzania": "TZ", "thailand": "TH", "trinidad and tobago": "TT",
	"tunisia": "TN", "turkey": "TR", "turkiye": "TR", "uganda": "UG", "ukraine": "UA",
	"united arab emirates": "AE", "uae": "AE", "uruguay": "UY", "uzbekistan": "UZ", "venezuela": "VE",
	"vietnam": "VN", "viet nam": "VN", "yemen": "YE", "zambia": "ZM", "zimbabwe": "ZW",
	"ivory coast": "CI", "cote divoire": "CI", "vatican": "VA", "vatican city": "VA",
	"united kingdom": "GB", "uk": "GB", "great britain": "GB", "britain": "GB", "england": "GB",
	"scotland": "GB", "wales": "GB", "northern ireland": "GB",
	"united kingdom of great britain and northern ireland": "GB",
	"united states": "US", "united states of america": "US", "usa": "US", "america": "US",
}
