package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// Holder makes one of several processes the one that does something, such
// as exporting what all of them could export: each runs a Holder on the
// same key, and at any time at most one of them holds the lease (while
// Redis keeps its keys; see the package comment). A process that does not
// hold it tries to take it every Every, so when the holder stops or dies
// another takes over within Every, or within the TTL when the holder died
// without releasing it.
type Holder struct {
	Redis redis.UniversalClient
	Key   string
	// TTL of the lease; required.
	TTL time.Duration
	// Every is how often a process without the lease tries to take it; 1s.
	Every time.Duration
	Clock clock.Clock

	held atomic.Bool
}

// Held reports whether this process holds the lease now. It is safe for
// concurrent use.
func (h *Holder) Held() bool { return h.held.Load() }

// Run takes the lease whenever it is free and keeps it until ctx is done,
// then releases it and returns. Redis errors are retried at the next try.
func (h *Holder) Run(ctx context.Context) error {
	if h.Redis == nil || h.Key == "" || h.TTL <= 0 {
		return errors.New("lease.Holder: Redis, Key and TTL are required")
	}
	clk := clock.Or(h.Clock)
	every := h.Every
	if every <= 0 {
		every = time.Second
	}
	for {
		l, err := TryAcquire(ctx, h.Redis, h.Key, Options{TTL: h.TTL, Clock: h.Clock}, nil)
		if err == nil && l != nil {
			h.held.Store(true)
			<-l.Context().Done()
			// Not held from here on: the lease is lost or about to be
			// released, and another may take it at once.
			h.held.Store(false)
			l.Release(context.WithoutCancel(ctx), nil)
		}
		if err := clock.Sleep(ctx, clk, every); err != nil {
			return nil
		}
	}
}
