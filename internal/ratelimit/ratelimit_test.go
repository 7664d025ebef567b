package ratelimit_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/internal/testenv"
)

// setup returns a limiter of limit per interval (margin 20ms) on a Redis of
// the test's own, and a function making more limiters on the same Redis, as
// other worker processes would.
func setup(t *testing.T, limit int, interval time.Duration) (*ratelimit.Limiter, func() *ratelimit.Limiter) {
	t.Helper()
	return setupOn(t, testenv.RedisURL, limit, interval)
}

// setupOn is setup on the Redis that redisURL gives the test.
func setupOn(t *testing.T, redisURL func(testing.TB) string, limit int, interval time.Duration) (*ratelimit.Limiter, func() *ratelimit.Limiter) {
	t.Helper()
	u := redisURL(t)
	another := func() *ratelimit.Limiter {
		c := testenv.RedisClientOf(t, u)
		return &ratelimit.Limiter{Redis: c, Limit: limit, Interval: interval, Margin: 20 * time.Millisecond}
	}
	return another(), another
}

// wait returns a grant whose request is answered at once, without rate
// headers.
func wait(t *testing.T, l *ratelimit.Limiter, loc string) ratelimit.Grant {
	t.Helper()
	g := grant(t, l, loc)
	if err := l.Observe(t.Context(), loc, g, ratelimit.Rate{}); err != nil {
		t.Fatal(err)
	}
	return g
}

// grant returns a grant whose request is in flight until the test
// observes its answer.
func grant(t *testing.T, l *ratelimit.Limiter, loc string) ratelimit.Grant {
	t.Helper()
	g, err := l.Wait(t.Context(), loc)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestWaitGrantsUpToTheLimitThenWaitsForTheWindow(t *testing.T) {
	t.Parallel()
	testWaitGrantsUpToTheLimitThenWaitsForTheWindow(t, testenv.RedisURL)
}

func testWaitGrantsUpToTheLimitThenWaitsForTheWindow(t *testing.T, redisURL func(testing.TB) string) {
	l, _ := setupOn(t, redisURL, 5, 400*time.Millisecond)
	first := wait(t, l, "loc1")
	for range 4 {
		wait(t, l, "loc1")
	}
	wait(t, l, "loc2") // locations are counted apart
	sixth := wait(t, l, "loc1")
	if gap := time.Duration(sixth.At-first.At) * time.Microsecond; gap < 420*time.Millisecond {
		t.Errorf("sixth grant %s after the first, want at least the window of 420ms", gap)
	}
}

// However many limiters (workers) share the Redis, no window of
// interval+margin holds more than limit grants, and the grants keep coming
// at the limit.
func TestLimitHoldsAcrossLimiters(t *testing.T) {
	t.Parallel()
	testLimitHoldsAcrossLimiters(t, testenv.RedisURL)
}

func testLimitHoldsAcrossLimiters(t *testing.T, redisURL func(testing.TB) string) {
	const limit, interval = 10, 300 * time.Millisecond
	_, another := setupOn(t, redisURL, limit, interval)
	var mu sync.Mutex
	var grants []int64
	var wg sync.WaitGroup
	for range 4 {
		l := another()
		for range 3 {
			wg.Go(func() {
				for range 10 {
					g := wait(t, l, "loc1")
					mu.Lock()
					grants = append(grants, g.At)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.Sort(grants)
	window := (interval + 20*time.Millisecond).Microseconds()
	for i := range grants {
		j := i
		for j < len(grants) && grants[j]-grants[i] < window {
			j++
		}
		if j-i > limit {
			t.Fatalf("%d grants within %dµs from grant %d, limit %d", j-i, window, i, limit)
		}
	}
	// 120 grants at 10 per 320ms: the last comes after 11 windows, and not
	// much later.
	span := time.Duration(grants[len(grants)-1]-grants[0]) * time.Microsecond
	if span < 11*320*time.Millisecond || span > 11*320*time.Millisecond+time.Second {
		t.Errorf("120 grants took %s, want about %s", span, 11*320*time.Millisecond)
	}
}

func TestPauseStopsGrants(t *testing.T) {
	t.Parallel()
	testPauseStopsGrants(t, testenv.RedisURL)
}

func testPauseStopsGrants(t *testing.T, redisURL func(testing.TB) string) {
	l, another := setupOn(t, redisURL, 100, time.Second)
	start := wait(t, l, "loc1")
	left, err := l.Pause(t.Context(), "loc1", 300*time.Millisecond)
	if err != nil || left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("Pause = %s, %v", left, err)
	}
	// A shorter pause does not cut a longer one short.
	if left, err := l.Pause(t.Context(), "loc1", time.Millisecond); err != nil || left < 250*time.Millisecond {
		t.Errorf("shorter Pause = %s, %v, want the longer one kept", left, err)
	}
	wait(t, l, "loc2")
	g := wait(t, another(), "loc1")
	if gap := time.Duration(g.At-start.At) * time.Microsecond; gap < 300*time.Millisecond {
		t.Errorf("granted %s after a 300ms pause began", gap)
	}
}

func TestObserveSpendsQuotaSpentElsewhere(t *testing.T) {
	t.Parallel()
	testObserveSpendsQuotaSpentElsewhere(t, testenv.RedisURL)
}

func testObserveSpendsQuotaSpentElsewhere(t *testing.T, redisURL func(testing.TB) string) {
	l, _ := setupOn(t, redisURL, 10, 400*time.Millisecond)
	g := wait(t, l, "loc1")
	// GHL counted 7 requests where we sent 1: another client of the app
	// spends the location's quota.
	if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{Max: 10, Remaining: 3, Interval: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		wait(t, l, "loc1")
	}
	fourth := wait(t, l, "loc1")
	if gap := time.Duration(fourth.At-g.At) * time.Microsecond; gap < 400*time.Millisecond {
		t.Errorf("granted the 11th request counted by GHL %s after the first, want a window", gap)
	}
}

// GHL's count on the answer to a request may include our grants made
// after it, sent while it was in flight: one that travelled faster
// overtook it. None of them is booked as someone else's use.
func TestObserveBooksNoGrantOfOursAsForeign(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 10, 400*time.Millisecond)
	g := grant(t, l, "loc1")
	for range 5 {
		grant(t, l, "loc1") // granted after g; two of them reached GHL first
	}
	if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{Max: 10, Remaining: 7, Interval: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n := placeholders(t, l, "loc1"); n != 0 {
		t.Errorf("%d of our own grants booked as foreign use", n)
	}
	// 6 of 10 are spent: 4 more fit in the window at once.
	for range 4 {
		wait(t, l, "loc1")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, "loc1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an 11th grant in the window: %v", err)
	}
}

// Two requests in flight at once both hear of the same foreign use: it is
// booked once, not once per answer.
func TestObserveBooksForeignUseOnce(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 10, 400*time.Millisecond)
	g1, g2 := grant(t, l, "loc1"), grant(t, l, "loc1")
	// Another client sent 5. GHL counted them and g1 when g1 arrived, and
	// all of that and g2 when g2 arrived.
	for _, o := range []struct {
		g         ratelimit.Grant
		remaining int
	}{{g1, 4}, {g2, 3}} {
		if err := l.Observe(t.Context(), "loc1", o.g, ratelimit.Rate{Max: 10, Remaining: o.remaining, Interval: 400 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if n := placeholders(t, l, "loc1"); n != 5 {
		t.Errorf("%d requests booked as foreign use, want the other client's 5", n)
	}
}

// A grant counts for the window after its answer, however long the
// request was in flight: GHL may have counted it when it arrived, just
// before the answer.
func TestGrantCountsUntilAWindowAfterItsAnswer(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	l, _ := setup(t, 2, interval)
	g1, g2 := grant(t, l, "loc1"), grant(t, l, "loc1")
	// Both still in flight after more than a window: nothing is granted.
	ctx, cancel := context.WithTimeout(t.Context(), interval+100*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, "loc1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("granted while both requests of the window were in flight: %v", err)
	}
	answered := time.Now()
	for _, g := range []ratelimit.Grant{g1, g2} {
		if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{}); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, l, "loc1")
	if gap := time.Since(answered); gap < interval {
		t.Errorf("granted %s after the answers, want a window of %s", gap, interval)
	}
}

// A fake GHL counting arrivals over its own sliding window, with transit
// times in both directions far longer and more varied than the margin:
// GHL never counts more than the limit, and none of our grants is booked
// as foreign use.
func TestTransitTimesNeverMakeGHLCountOverTheLimit(t *testing.T) {
	t.Parallel()
	const limit, interval = 10, 300 * time.Millisecond
	_, another := setup(t, limit, interval)
	var mu sync.Mutex
	var arrivals []time.Time
	over := 0
	arrive := func() (remaining int) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		arrivals = slices.DeleteFunc(arrivals, func(a time.Time) bool { return !a.After(now.Add(-interval)) })
		if len(arrivals) >= limit {
			over++
			return 0
		}
		arrivals = append(arrivals, now)
		return limit - len(arrivals)
	}
	var wg sync.WaitGroup
	limiters := []*ratelimit.Limiter{another(), another()}
	for w := range 8 {
		l := limiters[w%2]
		wg.Go(func() {
			for range 12 {
				g := grant(t, l, "loc1")
				time.Sleep(time.Duration(rand.N(80)) * time.Millisecond) // to GHL
				remaining := arrive()
				time.Sleep(time.Duration(rand.N(80)) * time.Millisecond) // back
				if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{Max: limit, Remaining: remaining, Interval: interval}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if over > 0 {
		t.Errorf("GHL counted over its limit %d times in 96 requests", over)
	}
	if n := placeholders(t, limiters[0], "loc1"); n != 0 {
		t.Errorf("%d of our own grants booked as foreign use", n)
	}
}

// placeholders counts the foreign requests booked in loc's log.
func placeholders(t *testing.T, l *ratelimit.Limiter, loc string) int {
	t.Helper()
	members, err := l.Redis.ZRange(t.Context(), "ghlsync:ratelimit:{"+loc+"}:log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range members {
		if strings.Contains(m, ":") {
			n++
		}
	}
	return n
}

func TestObserveAdoptsGHLsLimit(t *testing.T) {
	t.Parallel()
	testObserveAdoptsGHLsLimit(t, testenv.RedisURL)
}

func testObserveAdoptsGHLsLimit(t *testing.T, redisURL func(testing.TB) string) {
	l, _ := setupOn(t, redisURL, 10, 400*time.Millisecond)
	g := wait(t, l, "loc1")
	if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{Max: 3, Remaining: 2, Interval: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	wait(t, l, "loc1")
	wait(t, l, "loc1")
	fourth := wait(t, l, "loc1")
	if gap := time.Duration(fourth.At-g.At) * time.Microsecond; gap < 400*time.Millisecond {
		t.Errorf("a fourth request granted %s after the first under GHL's max of 3", gap)
	}
	// Our own count explains GHL's: nothing is added.
	if err := l.Observe(t.Context(), "loc2", wait(t, l, "loc2"), ratelimit.Rate{Max: 10, Remaining: 9}); err != nil {
		t.Fatal(err)
	}
}

func TestWaitStopsWithTheContext(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 1, time.Hour)
	wait(t, l, "loc1")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, "loc1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want the context's deadline", err)
	}
}

// Below DailySlowBelow of GHL's daily quota the location is slowed in
// proportion to what remains: with a fifth of the slow mark left, a fifth
// of the burst limit is granted per window.
func TestDailyQuotaSlowsTheLocation(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 10, 300*time.Millisecond)
	g := wait(t, l, "loc1")
	// 1000 a day, slowed below 50: 10 left is a fifth of the mark.
	if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{DailyLimit: 1000, DailyRemaining: 10}); err != nil {
		t.Fatal(err)
	}
	first := wait(t, l, "loc1") // the second grant of the window: 2 of 10
	third := wait(t, l, "loc1")
	if gap := time.Duration(third.At-first.At) * time.Microsecond; gap < 250*time.Millisecond {
		t.Errorf("a third grant within %s of the second: not slowed to 2 per window", gap)
	}
	// Plenty left (GHL's day began again): the full limit at once.
	if err := l.Observe(t.Context(), "loc1", third, ratelimit.Rate{DailyLimit: 1000, DailyRemaining: 900}); err != nil {
		t.Fatal(err)
	}
	var last ratelimit.Grant
	for range 9 {
		last = wait(t, l, "loc1")
	}
	if gap := time.Duration(last.At-third.At) * time.Microsecond; gap >= 300*time.Millisecond {
		t.Errorf("ten grants took %s: still slowed with 900 of 1000 left", gap)
	}
}

// A spent daily quota pauses the location for DailyProbe; Wait does not
// hold a worker for it but says so (a *PausedError for the daily quota),
// and once the probe time has passed a request may ask GHL again.
func TestDailyQuotaSpentPausesTheLocation(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 10, time.Second)
	l.DailyProbe, l.MaxWait = 400*time.Millisecond, 50*time.Millisecond
	g := wait(t, l, "loc1")
	if err := l.Observe(t.Context(), "loc1", g, ratelimit.Rate{Max: 100, Remaining: 99, Interval: time.Second, DailyLimit: 1000, DailyRemaining: 0}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Wait(t.Context(), "loc1")
	var pe *ratelimit.PausedError
	if !errors.As(err, &pe) || !pe.Daily || pe.RetryAfter <= 50*time.Millisecond || pe.RetryAfter > 400*time.Millisecond {
		t.Fatalf("Wait = %v, want a daily pause of up to 400ms", err)
	}
	wait(t, l, "loc2") // other locations go on
	testenv.Eventually(t, 5*time.Second, "the probe time to pass", func() bool {
		_, err := l.Wait(t.Context(), "loc1")
		return err == nil
	})
	// A 429's own pause is no daily pause.
	if _, err := l.Pause(t.Context(), "loc3", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Wait(t.Context(), "loc3"); !errors.As(err, &pe) || pe.Daily || pe.RetryAfter < 59*time.Minute {
		t.Errorf("Wait after a long Pause = %v, want a pause that is not the daily quota's", err)
	}
}
