package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/testenv"
)

// A kept lease outlives its TTL; taken by another, its holder is told and
// its context ends.
func TestKeep(t *testing.T) {
	t.Parallel()
	rc := testenv.RedisClient(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	lost := make(chan error, 1)
	l, err := lease.TryAcquire(ctx, rc, "k", lease.Options{TTL: ttl, OnLost: func(err error) { lost <- err }}, nil)
	if err != nil || l == nil {
		t.Fatalf("TryAcquire = %v, %v", l, err)
	}
	owner := rc.Get(ctx, "k").Val()
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		if rc.Get(ctx, "k").Val() != owner {
			t.Fatal("the kept lease expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc.Set(ctx, "k", "someone-else", time.Minute)
	select {
	case err := <-lost:
		if !errors.Is(err, lease.ErrLost) {
			t.Fatalf("lost with %v, want ErrLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the holder was not told it lost the lease")
	}
	<-l.Context().Done()
	if !l.Lost() || !errors.Is(context.Cause(l.Context()), lease.ErrLost) {
		t.Fatalf("Lost = %v, cause %v", l.Lost(), context.Cause(l.Context()))
	}
	if err := l.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.Get(ctx, "k").Val(); got != "someone-else" {
		t.Fatalf("Release of a lost lease deleted the new holder's key (now %q)", got)
	}
}

// TryAcquire does not wait: a held key gives nil; commands added to its
// transaction see the key's state; Release runs its own in the same round.
func TestTryAcquireAndReleaseWith(t *testing.T) {
	t.Parallel()
	rc := testenv.RedisClient(t)
	ctx := context.Background()
	opt := lease.Options{TTL: time.Second}
	rc.Set(ctx, "side", "1", 0)
	var side *redis.IntCmd
	l, err := lease.TryAcquire(ctx, rc, "k", opt, func(p redis.Pipeliner, _ string) { side = p.Exists(ctx, "side") })
	if err != nil || l == nil || side.Val() != 1 {
		t.Fatalf("TryAcquire = %v, %v; side = %v", l, err, side)
	}
	if l2, err := lease.TryAcquire(ctx, rc, "k", opt, nil); err != nil || l2 != nil {
		t.Fatalf("second TryAcquire = %v, %v; want nil, nil", l2, err)
	}
	if err := l.Release(ctx, func(p redis.Pipeliner) { p.Del(ctx, "side") }); err != nil {
		t.Fatal(err)
	}
	if n := rc.Exists(ctx, "k", "side").Val(); n != 0 {
		t.Fatalf("after Release %d keys remain", n)
	}
	if err := l.Release(ctx, nil); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if l.Lost() {
		t.Fatal("a released lease counts as lost")
	}
}

// ReleaseAfter's commands run ahead of the deletion, in the same
// transaction: they find the key still held, and the key is gone after.
func TestReleaseAfter(t *testing.T) {
	t.Parallel()
	rc := testenv.RedisClient(t)
	ctx := context.Background()
	l, err := lease.TryAcquire(ctx, rc, "k", lease.Options{TTL: time.Second}, nil)
	if err != nil || l == nil {
		t.Fatalf("TryAcquire = %v, %v", l, err)
	}
	var held *redis.StringCmd
	if err := l.ReleaseAfter(ctx, func(p redis.Pipeliner) { held = p.Get(ctx, "k") }); err != nil {
		t.Fatal(err)
	}
	if held.Val() != l.Owner() {
		t.Fatalf("before the deletion the key held %q; want the owner %q", held.Val(), l.Owner())
	}
	if n := rc.Exists(ctx, "k").Val(); n != 0 {
		t.Fatal("after ReleaseAfter the key remains")
	}
}
