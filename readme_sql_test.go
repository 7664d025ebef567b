package ghlsync_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/store/storetest"
)

// readmeSQL returns the statements of every ```sql block of the README,
// without their comment lines.
func readmeSQL(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	rest := string(b)
	for {
		_, block, ok := strings.Cut(rest, "```sql\n")
		if !ok {
			return stmts
		}
		block, rest, _ = strings.Cut(block, "```")
		var lines []string
		for _, line := range strings.Split(block, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "--") {
				lines = append(lines, line)
			}
		}
		for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";\n") {
			if stmt = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(stmt), ";")); stmt != "" {
				stmts = append(stmts, stmt)
			}
		}
	}
}

// Every SQL example of the README runs, as written, on the migrated
// schema: on SQLite, and on PostgreSQL when TEST_DATABASE_URL names one.
func TestReadmeSQL(t *testing.T) {
	t.Parallel()
	stmts := readmeSQL(t)
	if len(stmts) < 8 {
		t.Fatalf("found %d SQL statements in the README; the blocks were not read", len(stmts))
	}
	_, dbURL := storetest.Open(t, "")
	db := storetest.DB(t, dbURL)
	for _, stmt := range stmts {
		if err := db.Exec(stmt).Error; err != nil {
			t.Errorf("%v\n%s", err, stmt)
		}
	}
	// Run twice: the inserts are upserts.
	for _, stmt := range stmts {
		if err := db.Exec(stmt).Error; err != nil {
			t.Errorf("second run: %v\n%s", err, stmt)
		}
	}

	// The patients' JSON columns hold what "Feeding the tables" says, as
	// a sync reads them (as text); an insert that leaves them out has the
	// defaults.
	row := func(id string) (tags, dnd, consent, tz, fields string) {
		t.Helper()
		err := db.Raw(`SELECT tags, dnd, consent, timezone, custom_fields FROM patients
			WHERE location_id = 've9EPM428h8vShlRW1KT' AND external_id = ?`, id).Row().Scan(&tags, &dnd, &consent, &tz, &fields)
		if err != nil {
			t.Fatalf("patient %s: %v", id, err)
		}
		return tags, dnd, consent, tz, fields
	}
	rawTags, _, rawConsent, tz, rawFields := row("P-1042")
	var tags []string
	var consent map[string]bool
	var fields map[string]any
	for col, v := range map[string]struct {
		raw string
		dst any
	}{"tags": {rawTags, &tags}, "consent": {rawConsent, &consent}, "custom_fields": {rawFields, &fields}} {
		if err := json.Unmarshal([]byte(v.raw), v.dst); err != nil {
			t.Errorf("P-1042's %s %q: %v", col, v.raw, err)
		}
	}
	if len(tags) != 2 || len(consent) != 4 || len(fields) != 3 || tz != "Europe/London" {
		t.Errorf("P-1042: tags %v, consent %v, custom_fields %v, timezone %q", tags, consent, fields, tz)
	}
	rawTags, dnd, rawConsent, tz, rawFields := row("P-1043")
	if rawTags != `["new patient"]` || rawConsent != `{"sms": false}` || rawFields != "{}" || tz != "" || (dnd != "0" && dnd != "false") {
		t.Errorf("P-1043: tags %s, dnd %s, consent %s, timezone %q, custom_fields %s", rawTags, dnd, rawConsent, tz, rawFields)
	}
}
