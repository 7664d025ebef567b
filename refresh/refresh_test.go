package refresh_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

type bundle struct {
	*storetest.Stack
	fake  *ghltest.Server
	store *store.Store
	redis redis.UniversalClient
	logs  *testenv.Buffer
}

func setup(t testing.TB, locations ...string) (*refresh.Refresher, *bundle) {
	t.Helper()
	return setupOn(t, storetest.NewStack(t, ghltest.Options{}), locations...)
}

// setupOn is setup on a stack of the test's own (a fake GHL configured
// otherwise).
func setupOn(t testing.TB, stack *storetest.Stack, locations ...string) (*refresh.Refresher, *bundle) {
	t.Helper()
	rc := stack.Redis(t)
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	r := &refresh.Refresher{
		Store:  stack.Store,
		GHL:    client.OAuth,
		Redis:  rc,
		Cipher: testenv.Cipher(t, stack.Key),
		Log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Window: 4 * time.Hour,
	}
	b := &bundle{Stack: stack, fake: stack.Fake, store: stack.Store, redis: rc, logs: logs}
	for _, loc := range locations {
		b.Connect(t, loc, time.Now().Add(time.Hour))
	}
	return r, b
}

// requireStoredCurrent checks that the database holds GHL's current token.
func (b *bundle) requireStoredCurrent(t testing.TB, loc string) {
	t.Helper()
	if !b.HoldsCurrent(t, loc) {
		t.Fatalf("%s: the database does not hold GHL's current, valid token of an active location", loc)
	}
}

func TestRefreshStoresNewToken(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != refresh.Refreshed || res.ExpiresIn < 86000 {
		t.Fatalf("result = %+v, want refreshed with a day to live", res)
	}
	b.requireStoredCurrent(t, "loc1")
	if got := b.fake.TokenCalls("loc1"); got != 1 {
		t.Fatalf("token calls = %d, want 1", got)
	}
	if !strings.Contains(b.logs.String(), "GHL token refreshed for location loc1; new token expires in 86399 seconds") {
		t.Fatalf("log does not say what happened:\n%s", b.logs)
	}
}

func TestNotDueIsFresh(t *testing.T) {
	t.Parallel()
	r, b := setup(t)
	b.Connect(t, "loc1", time.Now().Add(20*time.Hour))
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now()})
	if err != nil || res.Outcome != refresh.Fresh {
		t.Fatalf("Refresh = %+v, %v; want fresh", res, err)
	}
	if got := b.fake.TokenCalls("loc1"); got != 0 {
		t.Fatalf("token calls = %d, want 0", got)
	}
	res, err = r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("forced Refresh = %+v, %v; want refreshed", res, err)
	}
}

// A burst of concurrent requests made before any refresh completed costs
// one GHL call; a request made after it completed costs another.
func TestSingleFlight(t *testing.T) {
	t.Parallel()
	testSingleFlight(t, testenv.RedisURL)
}

func testSingleFlight(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1")
	// Slow GHL down so that the burst overlaps the call.
	b.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: 100 * time.Millisecond})
	requested := time.Now()
	var wg sync.WaitGroup
	var refreshed, fresh atomic.Int32
	for range 50 {
		wg.Go(func() {
			res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: requested, Force: true})
			if err != nil {
				t.Error(err)
			}
			switch res.Outcome {
			case refresh.Refreshed:
				refreshed.Add(1)
			case refresh.Fresh:
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if refreshed.Load() != 1 || fresh.Load() != 49 {
		t.Fatalf("refreshed %d, fresh %d; want 1 and 49", refreshed.Load(), fresh.Load())
	}
	if calls, reuse := b.fake.TokenCalls("loc1"), b.fake.SpentReuses("loc1"); calls != 1 || reuse != 0 {
		t.Fatalf("token calls %d, spent reuses %d; want 1 and 0", calls, reuse)
	}
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("later Refresh = %+v, %v; want refreshed", res, err)
	}
	if calls := b.fake.TokenCalls("loc1"); calls != 2 {
		t.Fatalf("token calls %d, want 2", calls)
	}
	b.requireStoredCurrent(t, "loc1")
}

func TestInvalidGrant(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1", "loc2", "loc3")
	b.fake.Revoke("loc2")
	for _, loc := range []string{"loc1", "loc2", "loc3"} {
		res, err := r.Refresh(context.Background(), refresh.Request{LocationID: loc, RequestedAt: time.Now(), Force: true})
		if loc == "loc2" {
			if !errors.Is(err, refresh.ErrNeedsReauth) || res.Outcome != refresh.NeedsReauth {
				t.Fatalf("revoked: %+v, %v; want needs_reauth", res, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
	}
	// Asking again costs GHL nothing: the location waits for a person.
	if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc2", RequestedAt: time.Now(), Force: true}); !errors.Is(err, refresh.ErrNeedsReauth) {
		t.Fatalf("second refresh: %v", err)
	}
	if calls := b.fake.TokenCalls("loc2"); calls != 1 {
		t.Fatalf("token calls for the revoked location = %d, want 1", calls)
	}
	c, _ := b.store.Credential(context.Background(), "loc2")
	if c.Status != store.StatusNeedsReauth {
		t.Fatalf("status = %s, want needs_reauth", c.Status)
	}
	b.requireStoredCurrent(t, "loc1")
	b.requireStoredCurrent(t, "loc3")
	if !strings.Contains(b.logs.String(), "/api/auth/connect") {
		t.Fatalf("log does not say how to reconnect:\n%s", b.logs)
	}
}

func TestInactiveKeepsToken(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	b.fake.SetInactive("loc1", true)
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if !errors.Is(err, refresh.ErrInactive) || res.Outcome != refresh.Inactive {
		t.Fatalf("Refresh = %+v, %v; want inactive", res, err)
	}
	c, _ := b.store.Credential(context.Background(), "loc1")
	if c.Status != store.StatusInactive {
		t.Fatalf("status = %s", c.Status)
	}
	b.fake.SetInactive("loc1", false)
	if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now()}); err != nil {
		t.Fatalf("after reactivation: %v", err)
	}
	b.requireStoredCurrent(t, "loc1")
}

// refusingStore is the store behind a database that refuses every write
// while down is set.
type refusingStore struct {
	*store.Store
	down *atomic.Bool
}

var errRefused = errors.New("test: the database refuses writes")

func (s refusingStore) SaveRefreshed(ctx context.Context, loc string, spent int64, t store.Tokens, at time.Time) error {
	if s.down.Load() {
		return errRefused
	}
	return s.Store.SaveRefreshed(ctx, loc, spent, t, at)
}

func (s refusingStore) SetRefreshStatus(ctx context.Context, loc string, spent int64, st store.Status, msg string) error {
	if s.down.Load() {
		return errRefused
	}
	return s.Store.SetRefreshStatus(ctx, loc, spent, st, msg)
}

// failWrites makes every write of r's store fail while on is set.
func failWrites(r *refresh.Refresher, st *store.Store, on *atomic.Bool) {
	r.Store = refusingStore{Store: st, down: on}
}

// The database refuses writes for 30 s right after GHL answered: the new
// token is stored when it comes back, and the next refresh works with it.
// The 30 s pass on a fake clock: whenever the refresher waits (its lock's
// keeper and its writer's backoff both pending), the clock moves to the
// next thing due.
func TestDurableAcrossDatabaseOutage(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	fake := clock.NewFake(time.Now())
	r.Clock = fake
	var down atomic.Bool
	failWrites(r, b.store, &down)
	var outageOver atomic.Int64
	b.fake.SetOnTokenIssued(func(loc string) {
		if down.CompareAndSwap(false, true) {
			outageOver.Store(fake.Now().Add(30 * time.Second).UnixNano()) // the outage being simulated
		}
	})
	done := make(chan struct{})
	go func() {
		for fake.WaitForWaiters(2, done) {
			fake.AdvanceToNext()
			if over := outageOver.Load(); over != 0 && fake.Now().UnixNano() >= over {
				down.Store(false)
			}
		}
	}()
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: fake.Now(), Force: true})
	close(done)
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("Refresh = %+v, %v", res, err)
	}
	if outageOver.Load() == 0 {
		t.Fatal("GHL issued no token: the outage never began")
	}
	if fake.Now().UnixNano() < outageOver.Load() {
		t.Fatal("Refresh returned before the outage ended: the write cannot have landed")
	}
	b.fake.SetOnTokenIssued(nil)
	b.requireStoredCurrent(t, "loc1")
	if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: fake.Now(), Force: true}); err != nil {
		t.Fatalf("next refresh: %v", err)
	}
	b.requireStoredCurrent(t, "loc1")
	if n := b.fake.InvalidGrants("loc1"); n != 0 {
		t.Fatalf("invalid grants = %d", n)
	}
}

// A worker died after GHL rotated the token and before its answer arrived:
// the recovery pass retries with the same refresh token inside the grace
// window and the location keeps a valid token.
func TestRecoverInterruptedRefresh(t *testing.T) {
	t.Parallel()
	testRecoverInterruptedRefresh(t, testenv.RedisURL)
}

func testRecoverInterruptedRefresh(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1")
	r.LockTTL = 300 * time.Millisecond
	ctx := context.Background()

	// The dead worker: it took the lock, marked the refresh in flight and
	// spent the refresh token, then vanished.
	c, _ := b.store.Credential(ctx, "loc1")
	toks, _ := b.store.Tokens(c)
	b.redis.Set(ctx, "ghlsync:refresh:lock:loc1", "dead-worker", r.LockTTL)
	b.redis.ZAdd(ctx, "ghlsync:refresh:inflight", redis.Z{Score: markNow(), Member: "loc1"})
	client, _ := ghl.NewClient(ghl.Config{BaseURL: b.fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if _, _, err := client.OAuth.Refresh(ctx, toks.RefreshToken, "Location"); err != nil {
		t.Fatal(err)
	}

	r.RecoverOnce(ctx) // the lock is still held: nothing happens
	if calls := b.fake.TokenCalls("loc1"); calls != 1 {
		t.Fatalf("token calls while the dead worker's lock lives = %d, want 1", calls)
	}
	testenv.Eventually(t, 5*time.Second, "the dead worker's lock to expire", func() bool {
		return b.redis.Exists(ctx, "ghlsync:refresh:lock:loc1").Val() == 0
	})
	r.RecoverOnce(ctx)
	b.requireStoredCurrent(t, "loc1")
	if n := b.fake.GraceReuses("loc1"); n != 1 {
		t.Fatalf("grace reuses = %d, want 1", n)
	}
	if n := b.redis.ZCard(ctx, "ghlsync:refresh:inflight").Val(); n != 0 {
		t.Fatalf("in-flight set still holds %d", n)
	}
}

// A worker died after GHL answered but before the database took the token:
// the token waits in Redis and the next refresh stores it without calling
// GHL.
func TestPendingTokenIsStored(t *testing.T) {
	t.Parallel()
	testPendingTokenIsStored(t, testenv.RedisURL)
}

func testPendingTokenIsStored(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1")
	ctx := context.Background()
	var down atomic.Bool
	failWrites(r, b.store, &down)
	b.fake.SetOnTokenIssued(func(string) { down.Store(true) })
	r.SaveFor = 200 * time.Millisecond // the worker gives up (or dies) quickly
	requested := time.Now()
	if _, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: requested, Force: true}); err == nil {
		t.Fatal("Refresh succeeded while the database refused writes")
	}
	b.fake.SetOnTokenIssued(nil)
	down.Store(false)
	// A request made before that refresh was answered: the pending token
	// answers it.
	res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: requested, Force: true})
	if err != nil || res.Outcome != refresh.Fresh {
		t.Fatalf("Refresh = %+v, %v; want fresh from the pending token", res, err)
	}
	if calls := b.fake.TokenCalls("loc1"); calls != 1 {
		t.Fatalf("token calls = %d, want 1", calls)
	}
	b.requireStoredCurrent(t, "loc1")
}

func TestUnknownLocation(t *testing.T) {
	t.Parallel()
	r, _ := setup(t)
	_, err := r.Refresh(context.Background(), refresh.Request{LocationID: "nope"})
	if !errors.Is(err, refresh.ErrUnknownLocation) {
		t.Fatalf("err = %v", err)
	}
}

func TestUninstalledIsNotRefreshed(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	if err := b.store.SetStatus(context.Background(), "loc1", store.StatusUninstalled, "uninstalled"); err != nil {
		t.Fatal(err)
	}
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if !errors.Is(err, refresh.ErrNeedsReauth) || !strings.Contains(res.Message, "uninstalled") {
		t.Fatalf("Refresh = %+v, %v; want a refusal saying it was uninstalled", res, err)
	}
	if n := b.fake.TokenCalls("loc1"); n != 0 {
		t.Fatalf("token calls = %d, want 0", n)
	}
}

// An in-flight mark older than the grace window is dropped only while no
// refresh holds the location's lock.
func TestRecoverDropsStaleMarkOnlyWhenFree(t *testing.T) {
	t.Parallel()
	testRecoverDropsStaleMarkOnlyWhenFree(t, testenv.RedisURL)
}

func testRecoverDropsStaleMarkOnlyWhenFree(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1")
	r.Grace = time.Millisecond
	ctx := context.Background()
	old := float64(time.Now().Add(-time.Minute).UnixMilli())
	b.redis.ZAdd(ctx, "ghlsync:refresh:inflight", redis.Z{Score: old, Member: "loc1"})
	b.redis.Set(ctx, "ghlsync:refresh:lock:loc1", "live-holder", time.Minute)
	r.RecoverOnce(ctx)
	if n := b.redis.ZCard(ctx, "ghlsync:refresh:inflight").Val(); n != 1 {
		t.Fatal("the mark of a location whose lock is held was dropped")
	}
	b.redis.Del(ctx, "ghlsync:refresh:lock:loc1")
	r.RecoverOnce(ctx)
	if n := b.redis.ZCard(ctx, "ghlsync:refresh:inflight").Val(); n != 0 {
		t.Fatal("a stale mark with a free lock was kept")
	}
	if n := b.fake.TokenCalls("loc1"); n != 0 {
		t.Fatalf("token calls = %d: a stale mark must not be retried", n)
	}
}

// gatedGHL holds the first refresh call before it reaches GHL until
// release is closed, as a slow GHL or a frozen worker would.
type gatedGHL struct {
	refresh.TokenSource
	entered, release chan struct{}
	once             sync.Once
}

func newGatedGHL(inner refresh.TokenSource) *gatedGHL {
	return &gatedGHL{TokenSource: inner, entered: make(chan struct{}), release: make(chan struct{})}
}

// wait returns once the held call has come, failing t if the refresh
// ended (on done) or nothing came for 10 s.
func (g *gatedGHL) wait(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case <-g.entered:
	case err := <-done:
		t.Fatalf("the refresh ended before calling GHL: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the held refresh never called GHL")
	}
}

func (g *gatedGHL) Refresh(ctx context.Context, rt, userType string) (*ghl.Token, *ghl.Response, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.TokenSource.Refresh(ctx, rt, userType)
}

// staleWriter starts a refresh of loc1 by a second refresher whose GHL
// call is held, takes its lock away (as an emptied Redis would) while the
// call waits, and refreshes twice with r meanwhile. It returns the held
// refresh's outcome channel and the gate that lets its call through.
func staleWriter(t *testing.T, r *refresh.Refresher, b *bundle) (*gatedGHL, <-chan error) {
	t.Helper()
	ctx := context.Background()
	gate := newGatedGHL(r.GHL)
	late := &refresh.Refresher{Store: r.Store, GHL: gate, Redis: r.Redis, Cipher: r.Cipher, Log: r.Log, Window: r.Window}
	done := make(chan error, 1)
	go func() {
		res, err := late.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		if err == nil && res.Outcome != refresh.Fresh {
			err = errors.New("the late refresh's outcome is " + string(res.Outcome) + ", want fresh: the newer token answers it")
		}
		done <- err
	}()
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the held refresh never called GHL")
	}
	if err := b.redis.Del(ctx, "ghlsync:refresh:lock:loc1").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		if err != nil || res.Outcome != refresh.Refreshed {
			t.Fatalf("newer refresh: %+v, %v", res, err)
		}
	}
	return gate, done
}

// A refresh whose lock was lost while GHL held its call, answered after
// two newer refreshes were stored: its answer (the rotation the first of
// them also received, by GHL's grace) is discarded with a WARN, and the
// newest token stays stored.
func TestLateAnswerNeverOverwritesNewerToken(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	gate, done := staleWriter(t, r, b)
	newest, _ := b.StoredTokens(t, "loc1")
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.fake.GraceReuses("loc1"); n != 1 {
		t.Fatalf("grace reuses = %d, want 1: the late call must have been answered with an older rotation", n)
	}
	b.requireStoredCurrent(t, "loc1")
	if got, _ := b.StoredTokens(t, "loc1"); got.RefreshToken != newest.RefreshToken {
		t.Fatal("the stored refresh token changed after the late answer")
	}
	if !strings.Contains(b.logs.String(), "level=WARN msg=\"GHL answered after a newer token was stored") {
		t.Fatalf("no WARN line about the discarded answer:\n%s", b.logs)
	}
	// The stored token still works.
	if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true}); err != nil {
		t.Fatal(err)
	}
	b.requireStoredCurrent(t, "loc1")
}

// The same, answered after GHL's grace window: GHL refuses the spent token,
// and that refusal does not mark a location needs_reauth whose stored
// token is newer.
func TestLateRefusalOfSpentTokenIsDiscarded(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{Grace: time.Nanosecond})
	r, b := setupOn(t, stack, "loc1")
	gate, done := staleWriter(t, r, b)
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.fake.InvalidGrants("loc1"); n != 1 {
		t.Fatalf("invalid grants = %d, want 1: the late call must have been refused", n)
	}
	b.requireStoredCurrent(t, "loc1")
	if !strings.Contains(b.logs.String(), "level=WARN msg=\"GHL refused a refresh token that a newer stored token had already replaced") {
		t.Fatalf("no WARN line about the discarded refusal:\n%s", b.logs)
	}
}

// A pending token (a refresh whose database write failed, kept in Redis)
// that is older than the stored one, because the database moved on
// meanwhile, is dropped, not stored over the newer token.
func TestStalePendingTokenIsDropped(t *testing.T) {
	t.Parallel()
	// No grace: storing the older token would leave a spent one.
	r, b := setupOn(t, storetest.NewStack(t, ghltest.Options{Grace: time.Nanosecond}), "loc1")
	ctx := context.Background()
	var down atomic.Bool
	failWrites(r, b.store, &down)
	b.fake.SetOnTokenIssued(func(string) { down.Store(true) })
	r.SaveFor = 200 * time.Millisecond
	if _, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true}); err == nil {
		t.Fatal("Refresh succeeded while the database refused writes")
	}
	b.fake.SetOnTokenIssued(nil)
	down.Store(false)
	if b.redis.Exists(ctx, "ghlsync:refresh:pending:loc1").Val() != 1 {
		t.Fatal("no pending token")
	}
	// Meanwhile the pending token was spent elsewhere and its successor
	// stored (as a connection, a newer token version).
	client, _ := ghl.NewClient(ghl.Config{BaseURL: b.fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	next, _, err := client.OAuth.Refresh(ctx, b.fake.CurrentRefreshToken("loc1"), "Location")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.Connect(ctx, store.Connection{LocationID: "loc1", CompanyID: "comp1", UserType: store.UserTypeLocation,
		Tokens: store.Tokens{AccessToken: next.AccessToken, RefreshToken: next.RefreshToken, ExpiresAt: next.Expiry}}); err != nil {
		t.Fatal(err)
	}

	res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("Refresh = %+v, %v; want refreshed with the stored token", res, err)
	}
	b.requireStoredCurrent(t, "loc1")
	if n := b.redis.Exists(ctx, "ghlsync:refresh:pending:loc1").Val(); n != 0 {
		t.Fatal("the stale pending token was kept")
	}
	if n := b.fake.InvalidGrants("loc1"); n != 0 {
		t.Fatalf("invalid grants = %d: a spent token was presented", n)
	}
	if !strings.Contains(b.logs.String(), "level=WARN msg=\"discarding a pending token older than the stored one") {
		t.Fatalf("no WARN line about the discarded pending token:\n%s", b.logs)
	}
}

// A worker died after GHL rotated the token, holding a lock that names it
// and would live a minute more: its heartbeat has gone, so the recovery
// pass takes the lock over at once and retries inside the grace window. A
// lock whose worker still beats is left alone.
func TestRecoverTakesOverDeadWorkersLock(t *testing.T) {
	t.Parallel()
	testRecoverTakesOverDeadWorkersLock(t, testenv.RedisURL)
}

func testRecoverTakesOverDeadWorkersLock(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1", "loc2")
	ctx := context.Background()
	for _, loc := range []string{"loc1", "loc2"} {
		c, _ := b.store.Credential(ctx, loc)
		toks, _ := b.store.Tokens(c)
		b.redis.ZAdd(ctx, "ghlsync:refresh:inflight", redis.Z{Score: markNow(), Member: loc})
		client, _ := ghl.NewClient(ghl.Config{BaseURL: b.fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
		if _, _, err := client.OAuth.Refresh(ctx, toks.RefreshToken, "Location"); err != nil {
			t.Fatal(err)
		}
	}
	b.redis.Set(ctx, "ghlsync:refresh:lock:loc1", "w:dead0001.abcdef", time.Minute)
	b.redis.Set(ctx, "ghlsync:refresh:lock:loc2", "w:alive002.abcdef", time.Minute)
	b.redis.Set(ctx, "ghlsync:refresh:worker:alive002", "host=x pid=1", time.Minute)

	r.RecoverOnce(ctx)
	b.requireStoredCurrent(t, "loc1")
	if n := b.fake.GraceReuses("loc1"); n != 1 {
		t.Fatalf("grace reuses of the dead worker's location = %d, want 1", n)
	}
	if calls := b.fake.TokenCalls("loc2"); calls != 1 {
		t.Fatalf("token calls of the live worker's location = %d, want 1 (its own)", calls)
	}
	if b.redis.Get(ctx, "ghlsync:refresh:lock:loc2").Val() != "w:alive002.abcdef" {
		t.Fatal("the live worker's lock was taken")
	}
	if !strings.Contains(b.logs.String(), "taking its refresh over") {
		t.Fatalf("no line about the take-over:\n%s", b.logs)
	}
}

// While Heartbeat runs, the locks a refresher takes name its worker and
// its key lives; stop deletes the key.
func TestHeartbeatNamesLocks(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	ctx := context.Background()
	r.GHL = newGatedGHL(r.GHL)
	gate := r.GHL.(*gatedGHL)
	stop, err := r.Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done <- err
	}()
	<-gate.entered
	owner := b.redis.Get(ctx, "ghlsync:refresh:lock:loc1").Val()
	worker, _, ok := strings.Cut(strings.TrimPrefix(owner, "w:"), ".")
	if !strings.HasPrefix(owner, "w:") || !ok {
		t.Fatalf("lock owner %q names no worker", owner)
	}
	if n := b.redis.Exists(ctx, "ghlsync:refresh:worker:"+worker).Val(); n != 1 {
		t.Fatal("the worker's heartbeat key is missing")
	}
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop()
	if n := b.redis.Exists(ctx, "ghlsync:refresh:worker:"+worker).Val(); n != 0 {
		t.Fatal("the heartbeat key outlived stop")
	}
}

// markNow is the score of an in-flight mark made now, rounded up to the
// millisecond as a worker's is.
func markNow() float64 { return float64(time.Now().Add(time.Millisecond).UnixMilli()) }

// blockingTokens holds the refresher just before it spends the token
// (reading the tokens is its last step before the call).
type blockingTokens struct {
	refresh.Credentials
	entered, release chan struct{}
}

func (s blockingTokens) Tokens(c *store.Credential) (store.Tokens, error) {
	close(s.entered)
	<-s.release
	return s.Credentials.Tokens(c)
}

// A worker whose heartbeat stopped being confirmed (Redis unreachable, the
// process stalled) for half its TTL spends no refresh token under a lock
// that names it: another worker may be taking that lock over.
func TestStalledHeartbeatSpendsNoToken(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	fake := clock.NewFake(time.Now())
	r.Clock = fake
	bt := blockingTokens{Credentials: b.store, entered: make(chan struct{}), release: make(chan struct{})}
	r.Store = bt
	ctx := context.Background()
	stop, err := r.Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done <- err
	}()
	<-bt.entered
	// The heartbeat stops beating, and 2 s (more than half its 3 s TTL)
	// pass without a confirmed renewal.
	stop()
	fake.Advance(2 * time.Second)
	close(bt.release)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "lost the lock before calling GHL") {
		t.Fatalf("Refresh = %v; want it to refuse to call GHL", err)
	}
	if n := b.fake.TokenCalls("loc1"); n != 0 {
		t.Fatalf("token calls = %d, want 0", n)
	}
}

// A refresh whose lock was taken over while GHL held its call, and whose
// answer still lands first, leaves the in-flight mark of the refresh that
// took over: only the lock's holder may end it.
func TestLostHolderLeavesNewHoldersMark(t *testing.T) {
	t.Parallel()
	testLostHolderLeavesNewHoldersMark(t, testenv.RedisURL)
}

func testLostHolderLeavesNewHoldersMark(t *testing.T, redisURL func(testing.TB) string) {
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, redisURL), "loc1")
	ctx := context.Background()
	gate1, gate2 := newGatedGHL(r.GHL), newGatedGHL(r.GHL)
	first := &refresh.Refresher{Store: r.Store, GHL: gate1, Redis: r.Redis, Cipher: r.Cipher, Log: r.Log, Window: r.Window}
	second := &refresh.Refresher{Store: r.Store, GHL: gate2, Redis: r.Redis, Cipher: r.Cipher, Log: r.Log, Window: r.Window}
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := first.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done1 <- err
	}()
	gate1.wait(t, done1)
	b.redis.Del(ctx, "ghlsync:refresh:lock:loc1")
	go func() {
		_, err := second.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done2 <- err
	}()
	gate2.wait(t, done2)
	mark := b.redis.ZScore(ctx, "ghlsync:refresh:inflight", "loc1").Val()
	close(gate1.release)
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	if got, err := b.redis.ZScore(ctx, "ghlsync:refresh:inflight", "loc1").Result(); err != nil || got != mark {
		t.Fatalf("the in-flight mark of the refresh that took over is %v, %v; want it kept (%v)", got, err, mark)
	}
	close(gate2.release)
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	b.requireStoredCurrent(t, "loc1")
}

func (s refusingStore) SaveRefreshedLogged(ctx context.Context, loc string, spent int64, t store.Tokens, at time.Time, run *store.RefreshRun) error {
	if s.down.Load() {
		return errRefused
	}
	return s.Store.SaveRefreshedLogged(ctx, loc, spent, t, at, run)
}

// While GHL holds the call the location is marked in flight, scored with
// Redis's clock in whole milliseconds, rounded up: between Redis's time
// before the refresh and after the mark.
func TestInFlightMarkOnRedisClock(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	ctx := context.Background()
	gate := newGatedGHL(r.GHL)
	r.GHL = gate
	before, err := b.redis.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done <- err
	}()
	gate.wait(t, done)
	mark, err := b.redis.ZScore(ctx, "ghlsync:refresh:inflight", "loc1").Result()
	after := b.redis.Time(ctx).Val()
	close(gate.release)
	if err != nil {
		t.Fatalf("no in-flight mark while GHL holds the call: %v", err)
	}
	lo, hi := float64(before.Truncate(time.Millisecond).UnixMilli()), float64(after.Add(time.Millisecond-1).Truncate(time.Millisecond).UnixMilli())
	if mark != float64(int64(mark)) || mark < lo || mark > hi {
		t.Errorf("in-flight mark %v; want whole milliseconds of Redis's clock in [%v, %v]", mark, lo, hi)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.redis.ZCard(ctx, "ghlsync:refresh:inflight").Val(); n != 0 {
		t.Errorf("%d in-flight marks after the refresh; want none", n)
	}
	b.requireStoredCurrent(t, "loc1")
}

// CallSlots bounds the token calls GHL answers at once, however many
// refreshes run, and every refresh still lands.
func TestCallSlotsBoundTokenCallsAtOnce(t *testing.T) {
	t.Parallel()
	locs := []string{"loc1", "loc2", "loc3", "loc4", "loc5", "loc6", "loc7", "loc8"}
	r, b := setup(t, locs...)
	r.CallSlots = 2
	b.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: 50 * time.Millisecond, Times: len(locs)})
	errs := make(chan error, len(locs))
	for _, loc := range locs {
		go func() {
			_, err := r.Refresh(context.Background(), refresh.Request{LocationID: loc, RequestedAt: time.Now(), Force: true})
			errs <- err
		}()
	}
	for range locs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, loc := range locs {
		b.requireStoredCurrent(t, loc)
	}
	if n := b.fake.Stats().MaxTokenCallsAtOnce; n != 2 {
		t.Fatalf("GHL answered up to %d token calls at once, want CallSlots' 2", n)
	}
}

// markChecker is a TokenSource that, as each call starts, measures how old
// the newest in-flight mark is.
type markChecker struct {
	refresh.TokenSource
	redis  redis.UniversalClient
	mu     sync.Mutex
	oldest time.Duration // the greatest age seen
}

func (m *markChecker) Refresh(ctx context.Context, rt, userType string) (*ghl.Token, *ghl.Response, error) {
	marks := m.redis.ZRangeWithScores(ctx, "ghlsync:refresh:inflight", -1, -1).Val()
	now := m.redis.Time(ctx).Val()
	if len(marks) == 1 {
		age := now.Sub(time.UnixMilli(int64(marks[0].Score)))
		m.mu.Lock()
		m.oldest = max(m.oldest, age)
		m.mu.Unlock()
	}
	return m.TokenSource.Refresh(ctx, rt, userType)
}

// A refresh marks its location in flight before it waits for a call
// slot, and marks it again when the wait was longer than a second: the
// mark Recover goes by is never more than that before GHL is asked.
func TestInFlightMarkIsRenewedAfterALongWaitForASlot(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1", "loc2")
	r.CallSlots = 1
	mc := &markChecker{TokenSource: r.GHL, redis: b.redis}
	r.GHL = mc
	b.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: 1500 * time.Millisecond, Times: 2})
	errs := make(chan error, 2)
	for _, loc := range []string{"loc1", "loc2"} {
		go func() {
			_, err := r.Refresh(context.Background(), refresh.Request{LocationID: loc, RequestedAt: time.Now(), Due: true})
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	b.requireStoredCurrent(t, "loc1")
	b.requireStoredCurrent(t, "loc2")
	// One refresh waited out the other's call (1.5 s) for the slot.
	if mc.oldest > time.Second+100*time.Millisecond {
		t.Errorf("a call started %s after its location's in-flight mark, want at most a second", mc.oldest)
	}
	if n := b.redis.ZCard(context.Background(), "ghlsync:refresh:inflight").Val(); n != 0 {
		t.Errorf("%d in-flight marks after the refreshes; want none", n)
	}
}

// Taking the lock marks the location in flight: a refresh that then finds
// nothing to do (refreshed since the request) clears its own mark, and
// one that finds an earlier refresh's mark keeps that mark's time,
// clearing it only when the database shows that refresh settled.
func TestLockMarkGoesWhenGHLWasNotAsked(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "fresh", "settled", "unsettled")
	ctx := context.Background()
	before, err := refresh.SharedTime(ctx, r.Redis)
	if err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{"fresh", "settled", "unsettled"} {
		if _, err := r.Refresh(ctx, refresh.Request{LocationID: loc, Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	inflight := func(loc string) (float64, bool) {
		s, err := b.redis.ZScore(ctx, "ghlsync:refresh:inflight", loc).Result()
		return s, err == nil
	}
	// An interrupted refresh's marks: one from before the refresh above
	// (it settled), one from after it (it did not).
	old := float64(before.Add(-time.Second).UnixMilli())
	later := markNow() + 1000
	b.redis.ZAdd(ctx, "ghlsync:refresh:inflight", redis.Z{Score: old, Member: "settled"}, redis.Z{Score: later, Member: "unsettled"})

	for _, loc := range []string{"fresh", "settled", "unsettled"} {
		res, err := r.Refresh(ctx, refresh.Request{LocationID: loc, RequestedAt: before, Due: true})
		if err != nil || res.Outcome != refresh.Fresh {
			t.Fatalf("%s: %+v, %v; want fresh", loc, res, err)
		}
		if calls := b.fake.TokenCalls(loc); calls != 1 {
			t.Errorf("%s: %d token calls, want the first refresh's", loc, calls)
		}
	}
	if _, ok := inflight("fresh"); ok {
		t.Error("fresh: the lock's own mark stayed")
	}
	if _, ok := inflight("settled"); ok {
		t.Error("settled: a settled refresh's mark stayed")
	}
	if s, ok := inflight("unsettled"); !ok || s != later {
		t.Errorf("unsettled: mark %v (present %t), want the interrupted refresh's %v", s, ok, later)
	}
}
