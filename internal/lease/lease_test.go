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

// A kept lease outlives its TTL; taken by another, its holder is told.
func TestKeep(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	owner := lease.NewOwner()
	if !rc.SetNX(ctx, "k", owner, ttl).Val() {
		t.Fatal("SetNX failed")
	}
	stop := make(chan struct{})
	lost := make(chan error, 1)
	go lease.Keep(rc, "k", owner, ttl, stop, func(err error) { lost <- err })
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
	close(stop)
}
