package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/testenv"
)

// Of two Holders on one key exactly one holds it, through several of its
// renewals; when the holder stops, the other takes over; and one that
// finds its lease taken from it stops counting itself the holder.
func TestHolderOneAtATime(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	const ttl = 300 * time.Millisecond
	client := func() *redis.Client {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rc := redis.NewClient(opt)
		t.Cleanup(func() { rc.Close() })
		return rc
	}
	type run struct {
		h    *lease.Holder
		stop context.CancelFunc
		done chan struct{}
		err  error
	}
	start := func() *run {
		// Each its own client, as two processes would have.
		h := &lease.Holder{Redis: client(), Key: "ghlsync:test:holder", TTL: ttl, Every: 20 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		r := &run{h: h, stop: cancel, done: make(chan struct{})}
		go func() { defer close(r.done); r.err = h.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	a, b := start(), start()
	testenv.Eventually(t, 5*time.Second, "one holder to take the lease", func() bool { return a.h.Held() || b.h.Held() })
	holder, other := a, b
	if b.h.Held() {
		holder, other = b, a
	}
	// Over three TTLs (nine renewals) the holder keeps it, and the other,
	// trying every 20 ms, never has it too.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if other.h.Held() || !holder.h.Held() {
			t.Fatalf("held: holder %v, other %v: want the holder alone", holder.h.Held(), other.h.Held())
		}
	}

	holder.stop()
	<-holder.done
	if holder.err != nil {
		t.Fatalf("Run: %v", holder.err)
	}
	if holder.h.Held() {
		t.Error("a stopped holder still counts itself the holder")
	}
	testenv.Eventually(t, 2*time.Second, "the other to take over", other.h.Held)

	// A key overwritten behind the holder's back (Redis lost it and
	// someone else took it) ends its hold at its next renewal.
	client().Set(context.Background(), "ghlsync:test:holder", "someone-else", time.Minute)
	testenv.Eventually(t, 2*time.Second, "the overtaken holder to let go", func() bool { return !other.h.Held() })
}

// A Holder without its key or TTL refuses to run.
func TestHolderValidates(t *testing.T) {
	t.Parallel()
	if err := (&lease.Holder{Redis: testenv.RedisClient(t), Key: "k"}).Run(context.Background()); err == nil {
		t.Error("a Holder without a TTL ran")
	}
}
