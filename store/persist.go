package store

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// Persist runs write until it succeeds, until final says an error is not
// worth retrying, or until limit passes, backing off from 100 ms to 5 s
// with jitter and giving each attempt 10 s. It is for writes that record
// what GHL already did: ctx's cancellation does not stop it, since losing
// such a write costs more than finishing it late.
// Its waits and its limit are on clk (nil: the real clock).
func Persist(ctx context.Context, clk clock.Clock, limit time.Duration, final func(error) bool, write func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	clk = clock.Or(clk)
	deadline := clk.Now().Add(limit)
	backoff := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := write(wctx)
		cancel()
		if err == nil || (final != nil && final(err)) || clk.Now().After(deadline) {
			return err
		}
		<-clk.After(backoff/2 + rand.N(backoff/2+1))
		backoff = min(backoff*2, 5*time.Second)
	}
}
