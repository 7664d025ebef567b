// Package testenv gives tests a Redis of their own (the real one named by
// TEST_REDIS_URL when it is set, as CI sets it, miniredis otherwise, so that
// `go test ./...` passes on a machine with nothing but Go), keys, captured
// logs, free ports and child processes. It imports nothing of ghlsync above
// internal/; store/storetest adds the database and the whole stack.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/embedredis"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
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

// RedisURL returns the URL of a Redis database for this test.
//
// Without TEST_REDIS_URL it is a miniredis of the test's own.
//
// With TEST_REDIS_URL it is one database of that server, leased for the
// test's lifetime (across test processes) from the pool the configuration
// names, and no other: TEST_REDIS_DATABASES when set (e.g. "7-15" or
// "1,2,5", or both mixed, "1,3-5"), else the one database of
// TEST_REDIS_URL (0 when it names none). When TEST_REDIS_DATABASES is set
// and TEST_REDIS_URL names a database too (a path such as /7 or a db=
// parameter), that database must be in the list: a URL and a list that
// disagree are a configuration mistake, failed rather than guessed at.
// While every database of the pool is leased it waits, for up to 10
// minutes.
//
// The lease is the key ghlsync-test:lease inside the database, taken with
// package lease (TTL 30s, renewed while held, so a killed test process
// frees it soon). Right after taking it, RedisURL records the database's
// keys in the set ghlsync-test:baseline; at cleanup it deletes every key
// not in that set, then the set, then releases the lease. A baseline left
// by a holder that died is kept: the keys it does not list are that
// holder's test's leftovers, deleted before this test starts. So the
// database holds nothing of other tests, but may hold keys that were there
// before any test ran, which survive. A cleanup that finds its baseline
// gone or incomplete deletes nothing and fails the test. RedisURL never
// flushes a database and never touches a database outside the pool.
//
// The returned URL is TEST_REDIS_URL with the leased database's number in
// place of its own (path /N, and db=N if it had a db parameter); user,
// password and other parameters are kept.
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
	opt, pool, err := redisPool(base, os.Getenv("TEST_REDIS_DATABASES"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	db := leaseRedisDB(t, opt, pool)
	u, err := redisDBURL(base, db)
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	return u
}

const (
	// redisLeaseKey, in each database of the pool, is the lease of the test
	// using it.
	redisLeaseKey = "ghlsync-test:lease"
	// redisBaselineKey is the set of the keys the database held before the
	// test holding it began: all that its cleanup keeps.
	redisBaselineKey = "ghlsync-test:baseline"
	// redisBaselineDone is a member of the baseline set (not a key), added
	// last: without it the baseline was still being written when its
	// holder died, before its test began, so nothing unlisted is a test's.
	redisBaselineDone = "ghlsync-test:baseline:complete"

	redisLeaseTTL  = 30 * time.Second
	redisLeaseWait = 10 * time.Minute
	redisScanCount = 1000
)

// redisPool parses TEST_REDIS_URL (base) and TEST_REDIS_DATABASES (dbs)
// into the server's options and the database numbers tests may lease.
func redisPool(base, dbs string) (*redis.Options, []int, error) {
	opt, err := redis.ParseURL(base)
	if err != nil {
		return nil, nil, fmt.Errorf("TEST_REDIS_URL: %v", err)
	}
	if dbs == "" {
		return opt, []int{opt.DB}, nil
	}
	pool, err := parseDatabases(dbs)
	if err != nil {
		return nil, nil, fmt.Errorf("TEST_REDIS_DATABASES=%q: %v (want database numbers like 7-15 or 1,2,5)", dbs, err)
	}
	u, _ := url.Parse(base) // parsed by redis.ParseURL already
	named := u.Query().Has("db") || (u.Scheme != "unix" && strings.Trim(u.Path, "/") != "")
	if named && !slices.Contains(pool, opt.DB) {
		return nil, nil, fmt.Errorf("TEST_REDIS_URL names database %d, which TEST_REDIS_DATABASES=%q does not list", opt.DB, dbs)
	}
	return opt, pool, nil
}

// parseDatabases parses a list of database numbers and ranges such as
// "1,3-5,9" into sorted distinct numbers.
func parseDatabases(s string) ([]int, error) {
	const maxDB = 65535
	num := func(s string) (int, error) {
		s = strings.TrimSpace(s)
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxDB || strings.HasPrefix(s, "+") {
			return 0, fmt.Errorf("%q is not a database number (0 to %d)", s, maxDB)
		}
		return n, nil
	}
	var dbs []int
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			return nil, errors.New("empty item")
		}
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := num(lo)
		if err != nil {
			return nil, err
		}
		to := from
		if isRange {
			if to, err = num(hi); err != nil {
				return nil, err
			}
			if to < from {
				return nil, fmt.Errorf("range %q runs backwards", strings.TrimSpace(part))
			}
		}
		for db := from; db <= to; db++ {
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return slices.Compact(dbs), nil
}

// redisDBURL returns base with database db in place of its own.
func redisDBURL(base string, db int) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	n := strconv.Itoa(db)
	if q := u.Query(); u.Scheme == "unix" || q.Has("db") {
		// A db parameter overrides the path; a unix URL has only that.
		q.Set("db", n)
		u.RawQuery = q.Encode()
	}
	if u.Scheme != "unix" {
		u.Path, u.RawPath = "/"+n, ""
	}
	return u.String(), nil
}

// leaseRedisDB leases a database of pool on the server of opt for t's
// lifetime, waiting while all are leased, cleans what a dead holder left
// there and records its baseline, and returns its number.
func leaseRedisDB(t testing.TB, opt *redis.Options, pool []int) int {
	t.Helper()
	ctx := context.Background()
	clients := make(map[int]*redis.Client, len(pool))
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	start := time.Now()
	poll, logged := 10*time.Millisecond, false
	for {
		for _, db := range pool {
			c := clients[db]
			if c == nil {
				o := *opt
				o.DB = db
				c = redis.NewClient(&o)
				clients[db] = c
			}
			l, err := lease.TryAcquire(ctx, c, redisLeaseKey, lease.Options{
				TTL: redisLeaseTTL,
				OnLost: func(err error) {
					t.Errorf("testenv: Redis database %d of TEST_REDIS_URL: %v; another test may have used it meanwhile", db, err)
				},
			}, nil)
			if err != nil {
				t.Fatalf("testenv: Redis database %d of TEST_REDIS_URL: %v", db, err)
			}
			if l == nil {
				continue
			}
			delete(clients, db) // closed by the cleanup instead
			prepared := false
			t.Cleanup(func() {
				defer c.Close()
				releaseRedisDB(t, c, l, db, prepared)
			})
			removed, err := prepareRedisDB(ctx, c)
			if err != nil {
				t.Fatalf("testenv: Redis database %d of TEST_REDIS_URL: recording its keys: %v", db, err)
			}
			prepared = true
			if removed > 0 {
				t.Logf("testenv: removed %d keys left in Redis database %d by a test that died", removed, db)
			}
			return db
		}
		waited := time.Since(start)
		if waited > redisLeaseWait {
			t.Fatalf("testenv: every Redis database of TEST_REDIS_URL this test may use (%v) stayed leased by other tests for %s", pool, redisLeaseWait)
		}
		if !logged && waited > 10*time.Second {
			t.Logf("testenv: waiting for one of Redis databases %v of TEST_REDIS_URL, all leased by other tests", pool)
			logged = true
		}
		// Jittered, so that tests waiting together do not poll together.
		time.Sleep(poll/2 + mrand.N(poll/2+1))
		poll = min(2*poll, 250*time.Millisecond)
	}
}

// prepareRedisDB, under the lease, makes the baseline: when a complete one
// is there, its holder died after its test began, and the keys it does not
// list are deleted (and their number returned); otherwise (none, or one
// whose holder died while writing it, before its test began) every key of
// the database is recorded.
func prepareRedisDB(ctx context.Context, c *redis.Client) (int, error) {
	done, err := c.SIsMember(ctx, redisBaselineKey, redisBaselineDone).Result()
	if err != nil {
		return 0, err
	}
	if done {
		return removeUnlisted(ctx, c)
	}
	if err := c.SAdd(ctx, redisBaselineKey, redisLeaseKey, redisBaselineKey).Err(); err != nil {
		return 0, err
	}
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", redisScanCount).Result()
		if err != nil {
			return 0, err
		}
		if len(keys) > 0 {
			members := make([]any, len(keys))
			for i, k := range keys {
				members[i] = k
			}
			if err := c.SAdd(ctx, redisBaselineKey, members...).Err(); err != nil {
				return 0, err
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return 0, c.SAdd(ctx, redisBaselineKey, redisBaselineDone).Err()
}

// removeUnlisted deletes every key the complete baseline does not list and
// returns how many. It deletes nothing, and fails, when the baseline is
// missing or incomplete: it would then list nothing worth keeping.
func removeUnlisted(ctx context.Context, c *redis.Client) (int, error) {
	removed := 0
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", redisScanCount).Result()
		if err != nil {
			return removed, err
		}
		if len(keys) > 0 {
			var done *redis.BoolCmd
			listed := make([]*redis.BoolCmd, len(keys))
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				done = p.SIsMember(ctx, redisBaselineKey, redisBaselineDone)
				for i, k := range keys {
					listed[i] = p.SIsMember(ctx, redisBaselineKey, k)
				}
				return nil
			})
			if err != nil {
				return removed, err
			}
			if !done.Val() {
				return removed, fmt.Errorf("the baseline set %s is gone or incomplete, so its keys were left in place", redisBaselineKey)
			}
			var extra []string
			for i, k := range keys {
				if !listed[i].Val() {
					extra = append(extra, k)
				}
			}
			if len(extra) > 0 {
				n, err := c.Unlink(ctx, extra...).Result()
				if err != nil {
					return removed, err
				}
				removed += int(n)
			}
		}
		if cursor = next; cursor == 0 {
			return removed, nil
		}
	}
}

// releaseRedisDB, at cleanup, deletes the keys the test created (if its
// baseline was recorded and the lease still held), then the baseline, then
// releases the lease. What it cannot clean, the next holder does.
func releaseRedisDB(t testing.TB, c *redis.Client, l *lease.Lease, db int, prepared bool) {
	ctx := context.Background()
	if prepared && !l.Lost() { // a lost lease was reported when lost
		_, err := removeUnlisted(ctx, c)
		if err == nil {
			err = c.Del(ctx, redisBaselineKey).Err()
		}
		if err != nil {
			t.Errorf("testenv: cleaning Redis database %d of TEST_REDIS_URL: %v", db, err)
		}
	}
	if err := l.Release(ctx, nil); err != nil {
		t.Errorf("testenv: Redis database %d of TEST_REDIS_URL: %v", db, err)
	}
}

// RedisClient returns a client of a Redis of the test's own (RedisURL),
// closed at cleanup.
func RedisClient(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// RedisClientOf returns a client of the Redis at a REDIS_URL of any form
// (a cluster's too), closed at cleanup.
func RedisClientOf(t testing.TB, redisURL string) redis.UniversalClient {
	t.Helper()
	opt, err := redisconn.Parse(redisURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c := opt.NewClient()
	t.Cleanup(func() { c.Close() })
	return c
}

// Getenv turns an environment map into a getenv function.
func Getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
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

// Buffer is a bytes.Buffer safe for concurrent use, for captured logs.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
