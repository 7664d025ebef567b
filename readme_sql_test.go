package ghlsync_test

import (
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
}
