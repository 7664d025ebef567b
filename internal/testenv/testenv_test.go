package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests of RedisURL on a real Redis each start a redis-server of their
// own and point TEST_REDIS_URL at it with t.Setenv, so none is parallel.

// RedisURL hands out databases of the pool only; whatever a test creates
// there is gone after it, whatever was there before survives, in every
// database of the server.
func TestRedisURLKeepsWhatWasThere(t *testing.T) {
	port := startRedis(t)
	writeCanaries(t, port)
	t.Setenv("TEST_REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/7", port))
	t.Setenv("TEST_REDIS_DATABASES", "7-15")

	// Two tests at once, each holding its database until both have one.
	var (
		wg   sync.WaitGroup
		held sync.WaitGroup
		mu   sync.Mutex
		dbs  []int
	)
	held.Add(2)
	for i := range 2 {
		wg.Go(func() {
			t.Run(fmt.Sprintf("user%d", i), func(t *testing.T) {
				holding := sync.OnceFunc(held.Done)
				defer holding() // even when failing, not to block the other
				u := RedisURL(t)
				db := urlDB(t, u)
				if db < 7 || db > 15 {
					t.Errorf("RedisURL gave database %d (%s), outside TEST_REDIS_DATABASES=7-15", db, u)
				}
				mu.Lock()
				dbs = append(dbs, db)
				mu.Unlock()
				rc := client(t, port, db)
				ctx := context.Background()
				if !rc.SIsMember(ctx, redisBaselineKey, canaryKey(db)).Val() {
					t.Errorf("the baseline of database %d does not list %s", db, canaryKey(db))
				}
				for j := range 50 {
					rc.Set(ctx, fmt.Sprintf("made:%d", j), "x", 0)
				}
				rc.HSet(ctx, "made:hash", "f", "v")
				rc.RPush(ctx, "made:list", "a", "b")
				rc.Set(ctx, "made:ttl", "x", time.Hour)
				holding()
				held.Wait()
			})
		})
	}
	wg.Wait()
	if len(dbs) != 2 || dbs[0] == dbs[1] {
		t.Errorf("two tests at once were given databases %v, want two different ones", dbs)
	}
	assertOnlyCanaries(t, port)
}

// With no TEST_REDIS_DATABASES the pool is the URL's database alone: two
// tests take turns on it, the second waiting until the first is done.
func TestRedisURLTakesTurns(t *testing.T) {
	port := startRedis(t)
	writeCanaries(t, port)
	t.Setenv("TEST_REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/7", port))
	t.Setenv("TEST_REDIS_DATABASES", "")
	admin := client(t, port, 7)
	ctx := context.Background()

	var wg sync.WaitGroup
	firstURL, secondURL := make(chan string, 1), make(chan string, 1)
	release := make(chan struct{})
	releaseFirst := sync.OnceFunc(func() { close(release) })
	defer func() { // also when failing, so that t.Run returns
		releaseFirst()
		wg.Wait()
	}()
	wg.Go(func() {
		t.Run("first", func(t *testing.T) {
			u := RedisURL(t)
			client(t, port, 7).Set(ctx, "first:key", "x", 0)
			firstURL <- u
			<-release
		})
	})
	u := receive(t, firstURL, "the first test's URL")
	if db := urlDB(t, u); db != 7 {
		t.Fatalf("first test got database %d (%s), want 7", db, u)
	}
	assertLeaseOnlyIn(t, port, 7)

	sets := setCalls(t, admin)
	wg.Go(func() {
		t.Run("second", func(t *testing.T) {
			u := RedisURL(t)
			if n := client(t, port, 7).Exists(ctx, "first:key").Val(); n != 0 {
				t.Errorf("the second test got database 7 before the first one's keys were deleted")
			}
			secondURL <- u
		})
	})
	// The second has tried twice (each try is a SET NX) and is still waiting.
	Eventually(t, 10*time.Second, "the second test to try the lease twice", func() bool {
		return setCalls(t, admin) >= sets+2
	})
	select {
	case u := <-secondURL:
		t.Fatalf("the second test got %s while the first held database 7", u)
	default:
	}
	releaseFirst()
	u = receive(t, secondURL, "the second test's URL once the first was done")
	if db := urlDB(t, u); db != 7 {
		t.Errorf("second test got database %d (%s), want 7", db, u)
	}
	wg.Wait()
	assertOnlyCanaries(t, port)
}

// A holder that died leaves its lease to expire and its keys behind; the
// next holder deletes them, keeps the dead holder's baseline, and the keys
// that were there before survive.
func TestRedisURLCleansAfterDeadHolder(t *testing.T) {
	port := startRedis(t)
	writeCanaries(t, port)
	t.Setenv("TEST_REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/7", port))
	t.Setenv("TEST_REDIS_DATABASES", "")
	ctx := context.Background()
	rc := client(t, port, 7)

	t.Run("died after its test began", func(t *testing.T) {
		rc.Set(ctx, redisLeaseKey, "dead-owner", 300*time.Millisecond) // expires on its own
		rc.SAdd(ctx, redisBaselineKey, redisLeaseKey, redisBaselineKey, canaryKey(7), redisBaselineDone)
		rc.Set(ctx, "dead:string", "x", 0)
		rc.HSet(ctx, "dead:hash", "f", "v")
		t.Run("next", func(t *testing.T) {
			if db := urlDB(t, RedisURL(t)); db != 7 {
				t.Fatalf("got database %d, want 7", db)
			}
			if n := rc.Exists(ctx, "dead:string", "dead:hash").Val(); n != 0 {
				t.Errorf("%d keys of the dead holder's test are still there", n)
			}
			if rc.Get(ctx, canaryKey(7)).Val() != "keep" {
				t.Errorf("%s is gone", canaryKey(7))
			}
			if n := rc.SCard(ctx, redisBaselineKey).Val(); n != 4 {
				t.Errorf("the baseline has %d members, want the dead holder's 4 (not a new snapshot)", n)
			}
			rc.Set(ctx, "next:key", "x", 0)
		})
		assertOnlyCanaries(t, port)
	})

	t.Run("died while recording its baseline", func(t *testing.T) {
		// Before its test began: a key the baseline does not list yet was
		// there before, and must survive.
		rc.SAdd(ctx, redisBaselineKey, redisLeaseKey, redisBaselineKey)
		rc.Set(ctx, "before:unrecorded", "keep", 0)
		t.Run("next", func(t *testing.T) {
			RedisURL(t)
			if !rc.SIsMember(ctx, redisBaselineKey, "before:unrecorded").Val() {
				t.Errorf("the new baseline does not list before:unrecorded")
			}
			rc.Set(ctx, "next:key", "x", 0)
		})
		if rc.Get(ctx, "before:unrecorded").Val() != "keep" {
			t.Errorf("before:unrecorded is gone")
		}
		rc.Del(ctx, "before:unrecorded")
		assertOnlyCanaries(t, port)
	})

	t.Run("baseline gone during the test", func(t *testing.T) {
		// Without its baseline the cleanup cannot tell the test's keys
		// from others: it must say so and delete nothing.
		f := runFake(t, func(tb testing.TB) {
			RedisURL(tb)
			rc.Del(ctx, redisBaselineKey)
			rc.Set(ctx, "made:key", "x", 0)
		})
		f.runCleanups()
		if errs := f.messages(); len(errs) != 1 || !strings.Contains(errs[0], "left in place") {
			t.Errorf("cleanup reported %q, want one error saying the keys were left in place", errs)
		}
		if rc.Get(ctx, canaryKey(7)).Val() != "keep" || rc.Exists(ctx, "made:key").Val() != 1 {
			t.Errorf("a cleanup without baseline deleted keys")
		}
		if n := rc.Exists(ctx, redisLeaseKey).Val(); n != 0 {
			t.Errorf("the lease was not released")
		}
		rc.Del(ctx, "made:key")
		assertOnlyCanaries(t, port)
	})
}

// Bad configuration fails the test with one line naming the variable,
// before anything is connected to.
func TestRedisURLBadConfiguration(t *testing.T) {
	nobody := FreeAddr(t) // nothing listens there
	for _, c := range []struct{ url, dbs, want string }{
		{"redis://" + nobody + "/7", "7-x", `TEST_REDIS_DATABASES="7-x": "x" is not a database number`},
		{"redis://" + nobody + "/7", "15-7", `TEST_REDIS_DATABASES="15-7": range "15-7" runs backwards`},
		{"redis://" + nobody + "/3", "7-15", `TEST_REDIS_URL names database 3, which TEST_REDIS_DATABASES="7-15" does not list`},
		{"redis://" + nobody + "/x", "", `TEST_REDIS_URL: redis: invalid database number: "x"`},
	} {
		t.Run(c.url+" "+c.dbs, func(t *testing.T) {
			t.Setenv("TEST_REDIS_URL", c.url)
			t.Setenv("TEST_REDIS_DATABASES", c.dbs)
			f := runFake(t, func(tb testing.TB) { RedisURL(tb) })
			msgs := f.messages()
			if len(msgs) != 1 || !strings.Contains(msgs[0], c.want) || strings.Contains(msgs[0], "\n") {
				t.Errorf("RedisURL failed with %q, want one line containing %q", msgs, c.want)
			}
		})
	}
}

func TestParseDatabases(t *testing.T) {
	for s, want := range map[string][]int{
		"7":          {7},
		"7-15":       {7, 8, 9, 10, 11, 12, 13, 14, 15},
		"1,2,5":      {1, 2, 5},
		"9, 1-3 ,2":  {1, 2, 3, 9},
		"0-0":        {0},
		"12,10-11,3": {3, 10, 11, 12},
	} {
		got, err := parseDatabases(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseDatabases(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", " ", "x", "1,", ",1", "1,,2", "-1", "1-", "-", "3-1", "1-2-3", "+1", "1.5", "99999", "0x3"} {
		if got, err := parseDatabases(s); err == nil {
			t.Errorf("parseDatabases(%q) = %v, want an error", s, got)
		}
	}
}

func TestRedisPool(t *testing.T) {
	for _, c := range []struct {
		url, dbs string
		want     []int
	}{
		{"redis://h:1", "", []int{0}},
		{"redis://h:1/", "", []int{0}},
		{"redis://h:1/7", "", []int{7}},
		{"redis://h:1/3?db=5", "", []int{5}},
		{"redis://h:1/7", "7-9,12", []int{7, 8, 9, 12}},
		{"redis://h:1", "1,2,5", []int{1, 2, 5}}, // no database named: none required
		{"unix:///tmp/r.sock", "4-5", []int{4, 5}},
	} {
		_, got, err := redisPool(c.url, c.dbs)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("redisPool(%q, %q) = %v, %v; want %v", c.url, c.dbs, got, err, c.want)
		}
	}
	for _, c := range [][2]string{
		{"redis://h:1/0", "7-15"}, // names 0 explicitly
		{"redis://h:1/3?db=5", "3"},
		{"unix:///tmp/r.sock?db=2", "4-5"},
		{"http://h:1/7", ""},
	} {
		if _, got, err := redisPool(c[0], c[1]); err == nil {
			t.Errorf("redisPool(%q, %q) = %v, want an error", c[0], c[1], got)
		}
	}
}

func TestRedisDBURL(t *testing.T) {
	for base, want := range map[string]string{
		"redis://127.0.0.1:6400/7":                              "redis://127.0.0.1:6400/9",
		"redis://127.0.0.1:6400":                                "redis://127.0.0.1:6400/9",
		"redis://user:p%40ss@h:6400/0?dial_timeout=3s":          "redis://user:p%40ss@h:6400/9?dial_timeout=3s",
		"rediss://:secret@h:6400/1?max_retries=2&client_name=t": "rediss://:secret@h:6400/9?max_retries=2&client_name=t",
		"redis://h:6400/3?db=3&read_timeout=6s":                 "redis://h:6400/9?db=9&read_timeout=6s",
		"unix://user:pw@/tmp/redis.sock?db=2&read_timeout=6s":   "unix://user:pw@/tmp/redis.sock?db=9&read_timeout=6s",
		"unix:///tmp/redis.sock":                                "unix:///tmp/redis.sock?db=9",
		"redis://h:6400/7?protocol=3&client_name=tests":         "redis://h:6400/9?protocol=3&client_name=tests",
	} {
		got, err := redisDBURL(base, 9)
		if err != nil || got != want {
			t.Errorf("redisDBURL(%q, 9) = %q, %v; want %q", base, got, err, want)
			continue
		}
		if opt, err := redis.ParseURL(got); err != nil {
			t.Errorf("redis.ParseURL(%q): %v", got, err)
		} else if opt.DB != 9 {
			t.Errorf("redis.ParseURL(%q) has database %d, want 9", got, opt.DB)
		}
	}
}

// startRedis starts a redis-server of the test's own on a free loopback
// port, killed at cleanup, and returns the port; it skips the test without
// redis-server.
func startRedis(t *testing.T) int {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH")
	}
	var port int
	for port == 0 || port == 6379 { // never the shared Redis's port
		_, p, _ := net.SplitHostPort(FreeAddr(t))
		port, _ = strconv.Atoi(p)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir())
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	rc := client(t, port, 0)
	Eventually(t, 10*time.Second, "redis-server to answer PING", func() bool {
		select {
		case <-exited:
			t.Fatalf("redis-server on port %d exited: %s", port, out)
		default:
		}
		return rc.Ping(context.Background()).Err() == nil
	})
	return port
}

func client(t testing.TB, port, db int) *redis.Client {
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), DB: db})
	t.Cleanup(func() { rc.Close() })
	return rc
}

func canaryKey(db int) string { return fmt.Sprintf("canary:%d", db) }

func writeCanaries(t *testing.T, port int) {
	t.Helper()
	for db := range 16 {
		if err := client(t, port, db).Set(context.Background(), canaryKey(db), "keep", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// assertOnlyCanaries checks that every database holds its canary and
// nothing else: no key of a test, no lease, no baseline.
func assertOnlyCanaries(t *testing.T, port int) {
	t.Helper()
	ctx := context.Background()
	for db := range 16 {
		rc := client(t, port, db)
		if v, err := rc.Get(ctx, canaryKey(db)).Result(); v != "keep" {
			t.Errorf("database %d: %s = %q, %v; want keep", db, canaryKey(db), v, err)
		}
		if keys := rc.Keys(ctx, "*").Val(); len(keys) != 1 {
			t.Errorf("database %d holds %q, want only %s", db, keys, canaryKey(db))
		}
	}
}

func assertLeaseOnlyIn(t *testing.T, port, want int) {
	t.Helper()
	for db := range 16 {
		n := client(t, port, db).Exists(context.Background(), redisLeaseKey, redisBaselineKey).Val()
		if db == want && n != 2 {
			t.Errorf("database %d has %d of the lease and baseline keys, want both", db, n)
		}
		if db != want && n != 0 {
			t.Errorf("database %d has a lease or baseline key; only database %d was handed out", db, want)
		}
	}
}

// setCalls returns how many SET commands the server ran.
func setCalls(t *testing.T, rc *redis.Client) int {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^cmdstat_set:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func urlDB(t *testing.T, u string) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	db, err := strconv.Atoi(strings.TrimPrefix(pu.Path, "/"))
	if err != nil {
		t.Fatalf("RedisURL gave %q, with no database number as its path", u)
	}
	return db
}

func receive(t *testing.T, c <-chan string, what string) string {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out after 30s waiting for %s", what)
		return ""
	}
}

// fakeTB records what a helper reports, in place of a test: a Fatal ends
// the goroutine runFake started, Cleanups wait for runCleanups.
type fakeTB struct {
	testing.TB // the real test, for the rest
	mu         sync.Mutex
	msgs       []string
	cleanups   []func()
}

func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) record(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msg)
}

func (f *fakeTB) Error(args ...any)                 { f.record(fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) { f.record(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Fatal(args ...any)                 { f.record(fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) runCleanups() {
	f.mu.Lock()
	cs := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for _, fn := range slices.Backward(cs) {
		fn()
	}
}

func (f *fakeTB) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}
