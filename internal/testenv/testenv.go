// Package testenv gives tests a database and a Redis of their own: the real
// PostgreSQL and Redis named by TEST_DATABASE_URL and TEST_REDIS_URL when
// they are set (CI sets them), SQLite and miniredis otherwise, so that
// `go test ./...` passes on a machine with nothing but Go.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/ghlsync/ghlsync/internal/embedredis"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/store"
)

// NewKey returns a fresh base64 token encryption key.
func NewKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Cipher returns a token cipher under key.
func Cipher(t testing.TB, key string) *tokencrypt.Cipher {
	t.Helper()
	c, err := tokencrypt.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

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

// Store opens and migrates a store on DatabaseURL(t) with the given cipher
// key (a new one when key is empty).
func Store(t testing.TB, key string, opts ...store.Option) (*store.Store, string) {
	t.Helper()
	if key == "" {
		key = NewKey(t)
	}
	dbURL := DatabaseURL(t)
	s, err := store.Open(context.Background(), dbURL, Cipher(t, key), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, dbURL
}

// RedisURL returns the URL of an empty Redis for this test: a database
// number of TEST_REDIS_URL's server leased for the test's lifetime (across
// test processes), or a miniredis.
func RedisURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_REDIS_URL")
	if base == "" {
		mr, err := embedredis.Start("")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(mr.Close)
		return mr.URL()
	}
	opt, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	opt.DB = 0
	leases := redis.NewClient(opt)
	t.Cleanup(func() { leases.Close() })
	ctx := context.Background()
	owner := randomName("lease-")
	deadline := time.Now().Add(10 * time.Minute)
	for {
		// Database 0 holds the leases; tests get 1 to 15.
		for db := 1; db <= 15; db++ {
			key := "ghlsync-test:lease:" + strconv.Itoa(db)
			ok, err := leases.SetNX(ctx, key, owner, 15*time.Minute).Result()
			if err != nil {
				t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
			}
			if !ok {
				continue
			}
			dbOpt := *opt
			dbOpt.DB = db
			c := redis.NewClient(&dbOpt)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				c.FlushDB(context.Background())
				c.Close()
				leases.Del(context.Background(), key)
			})
			u, _ := url.Parse(base)
			u.Path = fmt.Sprintf("/%d", db)
			return u.String()
		}
		if time.Now().After(deadline) {
			t.Fatal("testenv: no free Redis database on TEST_REDIS_URL for 10 minutes")
		}
		time.Sleep(200 * time.Millisecond) // waiting for another test to release a lease
	}
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
