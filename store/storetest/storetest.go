// Package storetest gives tests a database of their own (a PostgreSQL
// schema on TEST_DATABASE_URL, dropped at cleanup, or a new SQLite file), a
// migrated store on it, GORM access for the raw SQL a clinic system would
// write, and a Stack: database, Redis, fake GHL and token key for one test.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
)

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DatabaseURL returns the URL of an empty database for this test: a schema
// of its own on TEST_DATABASE_URL, dropped at cleanup, or a new SQLite file.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		return "sqlite://" + filepath.Join(t.TempDir(), "ghlsync.db")
	}
	schema := randomName("t_")
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		if db, err := admin.DB(); err == nil {
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens and migrates a store on DatabaseURL(t) with the given cipher
// key (a new one when key is empty), and returns it with its URL.
func Open(t testing.TB, key string, opts ...store.Option) (*store.Store, string) {
	t.Helper()
	if key == "" {
		key = testenv.NewKey(t)
	}
	dbURL := DatabaseURL(t)
	s, err := store.Open(context.Background(), dbURL, testenv.Cipher(t, key), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, dbURL
}

var (
	dbsMu sync.Mutex
	dbs   = map[string]*gorm.DB{}
)

// DB returns a GORM handle on the database at databaseURL (one of
// DatabaseURL's), for the plain SQL with which a test plays the clinic
// system or inspects ghlsync's tables. It is closed when t ends.
func DB(t testing.TB, databaseURL string) *gorm.DB {
	t.Helper()
	dbsMu.Lock()
	defer dbsMu.Unlock()
	if db := dbs[databaseURL]; db != nil {
		return db
	}
	dialector, err := store.Dialector(databaseURL)
	if err != nil {
		t.Fatalf("storetest.DB: %v", err)
	}
	db, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard, TranslateError: true})
	if err != nil {
		t.Fatalf("storetest.DB: %v", err)
	}
	dbs[databaseURL] = db
	t.Cleanup(func() {
		dbsMu.Lock()
		delete(dbs, databaseURL)
		dbsMu.Unlock()
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	return db
}
