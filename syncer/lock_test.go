package syncer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/syncer"
)

func TestRedisLocksLetOneRunAtATime(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	rc := testenv.RedisClient(t)
	// Another run tries for four TTLs: its last try comes after the wait
	// ran out, long after an unrenewed lease would have expired.
	locks := &syncer.Locks{Redis: rc, TTL: ttl, Wait: 4 * ttl}
	ctx := context.Background()

	lk, err := locks.Acquire(ctx, "loc1")
	if err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	// Held past its TTL, by renewal: another run waits, then gives up.
	_, err = locks.Acquire(ctx, "loc1")
	if !errors.Is(err, syncer.ErrLocationBusy) {
		t.Fatalf("second Acquire = %v, want ErrLocationBusy", err)
	}
	if held := time.Since(taken); held < 2*ttl {
		t.Fatalf("second Acquire gave up %s after the lock was taken, before two TTLs: renewal was not tested", held)
	}
	if n, err := rc.Exists(ctx, "ghlsync:sync:lock:loc1").Result(); err != nil || n != 1 {
		t.Fatalf("the lock's key after two TTLs: exists = %d, %v; want it renewed", n, err)
	}
	if other, err := locks.Acquire(ctx, "loc2"); err != nil {
		t.Fatalf("another location: %v", err)
	} else if err := other.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	lk, err = locks.Acquire(ctx, "loc1")
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if err := lk.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// A run whose lock someone else took stops: its context ends, saying why.
func TestRedisLocksCancelARunThatLostItsLock(t *testing.T) {
	t.Parallel()
	rc := testenv.RedisClient(t)
	locks := &syncer.Locks{Redis: rc, TTL: 300 * time.Millisecond}
	lk, err := locks.Acquire(context.Background(), "loc1")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(context.Background(), nil)
	runCtx := lk.Context()
	if err := rc.Set(context.Background(), "ghlsync:sync:lock:loc1", "someone else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the run went on without its lock")
	}
	if cause := context.Cause(runCtx); cause == nil || !strings.Contains(cause.Error(), "lock was lost") {
		t.Errorf("cause = %v", cause)
	}
}
