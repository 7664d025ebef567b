package web_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

// refusingStore is the store behind a database that refuses every new
// connection while down is set, and the next failFor ones.
type refusingStore struct {
	*store.Store
	down    *atomic.Bool
	failFor *atomic.Int32
}

var errRefused = errors.New("test: the database refuses writes")

func (s refusingStore) Connect(ctx context.Context, c store.Connection) error {
	if s.down.Load() || s.failFor.Add(-1) >= 0 {
		return errRefused
	}
	return s.Store.Connect(ctx, c)
}

type durable struct {
	*storetest.Stack
	h       http.Handler
	pending *web.PendingConnections
	down    atomic.Bool
	failFor atomic.Int32
	logs    *testenv.Buffer
}

// setupDurable is setup with a database that the test takes down, and the
// worker's pass that completes kept connections.
func setupDurable(t *testing.T) *durable {
	t.Helper()
	return setupDurableOn(t, testenv.RedisURL)
}

// setupDurableOn is setupDurable on the Redis that redisURL gives the test.
func setupDurableOn(t *testing.T, redisURL func(testing.TB) string) *durable {
	t.Helper()
	s, stack := newServerOn(t, redisURL)
	d := &durable{Stack: stack, logs: &testenv.Buffer{}}
	s.Store = refusingStore{Store: stack.Store, down: &d.down, failFor: &d.failFor}
	s.SaveFor = 300 * time.Millisecond
	s.Log = slog.New(slog.NewTextHandler(d.logs, nil))
	d.h = s.Handler()
	d.pending = &web.PendingConnections{Store: s.Store, Redis: s.Redis, Cipher: s.Cipher, Log: s.Log}
	return d
}

// keptIDs lists the connections waiting in Redis.
func (d *durable) keptIDs(t *testing.T) []string {
	t.Helper()
	ids, err := d.Redis(t).SMembers(context.Background(), "ghlsync:oauth:pending").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// The callback with the database down: GHL has spent the code, so the
// callback answers 503 saying the connection completes by itself, and the
// location is connected once the database is back, without a new consent
// (no second code, no second exchange).
func TestCallbackDatabaseDownConnectsLater(t *testing.T) {
	t.Parallel()
	testCallbackDatabaseDownConnectsLater(t, testenv.RedisURL)
}

func testCallbackDatabaseDownConnectsLater(t *testing.T, redisURL func(testing.TB) string) {
	d := setupDurableOn(t, redisURL)
	d.Fake.AddLocation("locA", "comp1")
	state := startConnect(t, d.h, "")
	d.down.Store(true)
	rec := callback(t, d.h, d.Fake.AuthorizeCode("Location", "locA"), state)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "completes by itself") ||
		!strings.Contains(rec.Body.String(), "no need to connect again") || !strings.Contains(rec.Body.String(), "locA") {
		t.Fatalf("callback with the database down: %d %s", rec.Code, rec.Body)
	}
	if n := len(credentials(t, d.Store)); n != 0 {
		t.Fatalf("%d credentials stored with the database down", n)
	}
	issued := d.Fake.CurrentRefreshToken("locA")
	if dump := d.Redis(t).Get(context.Background(), "ghlsync:oauth:pending:locA").Val(); dump == "" || strings.Contains(dump, issued) {
		t.Fatalf("the kept connection is missing or holds the refresh token in clear: %q", dump)
	}

	if n := d.pending.CompleteOnce(context.Background()); n != 0 {
		t.Fatalf("completed %d connections with the database still down", n)
	}
	d.down.Store(false)
	if n := d.pending.CompleteOnce(context.Background()); n != 1 {
		t.Fatalf("completed %d connections once the database is back, want 1\n%s", n, d.logs)
	}
	if !d.HoldsCurrent(t, "locA") {
		t.Fatal("the location does not hold GHL's tokens")
	}
	if _, c := d.StoredTokens(t, "locA"); c.UserType != store.UserTypeLocation || c.CompanyID != "comp1" {
		t.Fatalf("stored credential = %+v", c)
	}
	if ids := d.keptIDs(t); len(ids) != 0 {
		t.Fatalf("still kept after the write: %v", ids)
	}
	if n := d.pending.CompleteOnce(context.Background()); n != 0 {
		t.Fatalf("a second pass wrote %d connections again", n)
	}
	if n := d.Fake.Requests("/oauth/token", "locA"); n != 1 {
		t.Fatalf("GHL's token endpoint saw %d requests for locA, want the one exchange", n)
	}
}

// An agency install with the database down: the agency token and the
// location tokens minted with it are all kept, and all stored later.
func TestCallbackDatabaseDownConnectsCompanyLater(t *testing.T) {
	t.Parallel()
	testCallbackDatabaseDownConnectsCompanyLater(t, testenv.RedisURL)
}

func testCallbackDatabaseDownConnectsCompanyLater(t *testing.T, redisURL func(testing.TB) string) {
	d := setupDurableOn(t, redisURL)
	d.Fake.AddCompany("agency1")
	d.Fake.AddLocation("l1", "agency1")
	d.Fake.AddLocation("l2", "agency1")
	state := startConnect(t, d.h, "?user_type=Company")
	d.down.Store(true)
	rec := callback(t, d.h, d.Fake.AuthorizeCode("Company", "agency1", "l1", "l2"), state)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	for _, id := range []string{"agency1", "l1", "l2"} {
		if !strings.Contains(rec.Body.String(), id) {
			t.Errorf("the page does not name %s as kept", id)
		}
	}
	if ids := d.keptIDs(t); len(ids) != 3 {
		t.Fatalf("kept %v, want the agency and two locations", ids)
	}
	d.down.Store(false)
	if n := d.pending.CompleteOnce(context.Background()); n != 3 {
		t.Fatalf("completed %d, want 3\n%s", n, d.logs)
	}
	for _, loc := range []string{"l1", "l2"} {
		if !d.HoldsCurrent(t, loc) {
			t.Errorf("%s does not hold GHL's tokens", loc)
		}
	}
	if _, c := d.StoredTokens(t, "agency1"); c.UserType != store.UserTypeCompany {
		t.Errorf("agency stored with user type %s", c.UserType)
	}
}

// A blip shorter than SaveFor: the write is retried within the request,
// the callback answers 200 and nothing is left kept.
func TestCallbackRetriesTheWrite(t *testing.T) {
	t.Parallel()
	d := setupDurable(t)
	d.Fake.AddLocation("locA", "comp1")
	state := startConnect(t, d.h, "")
	d.failFor.Store(2)
	rec := callback(t, d.h, d.Fake.AuthorizeCode("Location", "locA"), state)
	if rec.Code != http.StatusOK || d.failFor.Load() >= 0 {
		t.Fatalf("callback: %d %s (refusals left %d)", rec.Code, rec.Body, d.failFor.Load())
	}
	if !d.HoldsCurrent(t, "locA") {
		t.Fatal("the location does not hold GHL's tokens")
	}
	if ids := d.keptIDs(t); len(ids) != 0 {
		t.Fatalf("still kept after the write landed: %v", ids)
	}
}

// A location id longer than the columns hold is a clear error naming the
// limit; nothing half-stored.
func TestCallbackRefusesTooLongLocationID(t *testing.T) {
	t.Parallel()
	d := setupDurable(t)
	long := strings.Repeat("x", store.MaxIDLen+1)
	d.Fake.AddLocation(long, "comp1")
	state := startConnect(t, d.h, "")
	rec := callback(t, d.h, d.Fake.AuthorizeCode("Location", long), state)
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), fmt.Sprintf("at most %d", store.MaxIDLen)) {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	if n := len(credentials(t, d.Store)); n != 0 || len(d.keptIDs(t)) != 0 {
		t.Fatalf("%d credentials stored, %v kept", n, d.keptIDs(t))
	}
}

// A kept connection waits while a refresh of the location runs: the pass
// takes refresh's own lock, so the two never write over each other.
func TestPendingWaitsForARunningRefresh(t *testing.T) {
	t.Parallel()
	d := setupDurable(t)
	d.Connect(t, "locA", time.Now().Add(time.Hour))
	client, err := ghl.NewClient(ghl.Config{BaseURL: d.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	r := &refresh.Refresher{Store: d.Store, GHL: client.OAuth, Redis: d.Redis(t), Cipher: testenv.Cipher(t, d.Key), Log: slog.New(slog.NewTextHandler(d.logs, nil))}

	// A new consent while the database is down leaves a kept connection.
	state := startConnect(t, d.h, "")
	d.down.Store(true)
	if rec := callback(t, d.h, d.Fake.AuthorizeCode("Location", "locA"), state); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	d.down.Store(false)

	// The refresh holds the lock while GHL works on it, until released.
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the fake's Close, which waits for the hook
	atGHL := make(chan struct{}, 1)
	d.Fake.SetOnTokenIssued(func(string) {
		atGHL <- struct{}{}
		<-release
	})
	refreshed := make(chan error, 1)
	go func() {
		_, err := r.Refresh(context.Background(), refresh.Request{LocationID: "locA", Force: true})
		refreshed <- err
	}()
	select {
	case <-atGHL:
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh never reached GHL")
	}
	if n := d.pending.CompleteOnce(context.Background()); n != 0 {
		t.Fatalf("completed %d connections while the refresh held the lock", n)
	}
	if len(d.keptIDs(t)) != 1 {
		t.Fatal("the kept connection is gone while the refresh ran")
	}
	releaseOnce()
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	// The refresh came after the consent: the database holds the newer
	// token, and the kept one is dropped rather than written over it.
	if n := d.pending.CompleteOnce(context.Background()); n != 0 || len(d.keptIDs(t)) != 0 {
		t.Fatalf("completed %d, kept %v after the refresh; want the kept connection dropped", n, d.keptIDs(t))
	}
	if !d.HoldsCurrent(t, "locA") {
		t.Fatal("the location does not hold GHL's newest token")
	}
}
