package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/refresh"
)

// A request that the stored token answers (not due, or refreshed since it
// was made) costs no Redis command: no lock is taken, nothing is marked.
// The concurrent ones among them share their database reads.
func TestAnsweredRequestsTakeNoLock(t *testing.T) {
	t.Parallel()
	r, b := setup(t)
	const n = 40
	for i := range n {
		b.Connect(t, fmt.Sprintf("loc%02d", i), time.Now().Add(20*time.Hour))
	}
	counted := &commandCounter{}
	r.Redis.AddHook(counted)
	requested := time.Now().Add(-time.Minute) // before the connects: answered by them too
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := r.Refresh(context.Background(), refresh.Request{LocationID: fmt.Sprintf("loc%02d", i), RequestedAt: requested})
			if err != nil || res.Outcome != refresh.Fresh {
				t.Errorf("Refresh = %+v, %v; want fresh", res, err)
			}
		})
	}
	wg.Wait()
	if got := counted.n.Load(); got != 0 {
		t.Errorf("%d Redis commands for %d answered requests, want none", got, n)
	}
	// A forced request made now is not answered: it takes the lock and
	// spends the token, once.
	res, err := r.Refresh(context.Background(), refresh.Request{LocationID: "loc00", RequestedAt: time.Now(), Force: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("forced Refresh = %+v, %v; want refreshed", res, err)
	}
	if counted.n.Load() == 0 {
		t.Error("a refresh that spent the token sent no Redis command: it took no lock")
	}
	if calls := b.fake.TokenCalls("loc00"); calls != 1 {
		t.Errorf("token calls %d, want 1", calls)
	}
	b.requireStoredCurrent(t, "loc00")
}

// A request for an unknown location fails as before, through the shared
// reads.
func TestAnsweredReadOfUnknownLocation(t *testing.T) {
	t.Parallel()
	r, _ := setup(t, "loc1")
	if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: "nope", RequestedAt: time.Now()}); err == nil || !isUnknown(err) {
		t.Fatalf("Refresh of an unknown location: %v, want ErrUnknownLocation", err)
	}
}

func isUnknown(err error) bool { return err != nil && errors.Is(err, refresh.ErrUnknownLocation) }

type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
