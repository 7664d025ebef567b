package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/lease"
)

// ErrLocationBusy: another sync of the location kept its lock for longer
// than RedisLocks.Wait.
var ErrLocationBusy = errors.New("another sync of this location is running")

// errLeaseLost cancels a run whose lock could not be kept: another run may
// have taken the location over, so this one must stop calling GHL.
var errLeaseLost = errors.New("the location's sync lock was lost")

// RedisLocks lets one sync of a location run at a time, across every
// worker: both kinds take the same lock, since an appointment sync creates
// contacts too. A lock is a lease (SET NX PX) that its holder renews every
// TTL/3. A holder that dies frees the location within TTL; a holder that
// cannot renew for TTL/2 (Redis unreachable) stops itself before the lease
// can expire under it, so two holders never act at once while Redis keeps
// its keys.
type RedisLocks struct {
	Redis redis.UniversalClient
	// TTL of the lease; 15s when zero.
	TTL time.Duration
	// Wait bounds how long Acquire waits for a busy location; 5m when
	// zero. A run holds the lock for at most one batch.
	Wait time.Duration
}

var releaseLockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func syncLockKey(loc string) string { return "ghlsync:sync:lock:" + loc }

// Acquire takes loc's lock, waiting while another run holds it. It returns
// a context derived from ctx that is cancelled, with a cause wrapping
// errLeaseLost, as soon as the lease cannot be vouched for, and a release
// function to call when done.
func (l *RedisLocks) Acquire(ctx context.Context, loc string) (context.Context, func(), error) {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	maxWait := l.Wait
	if maxWait <= 0 {
		maxWait = 5 * time.Minute
	}
	owner := lease.NewOwner()
	key := syncLockKey(loc)
	deadline := time.Now().Add(maxWait)
	for {
		ok, err := l.Redis.SetNX(ctx, key, owner, ttl).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("sync lock %s: %w", loc, err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("sync of %s: %w (waited %s)", loc, ErrLocationBusy, maxWait)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("sync lock %s: %w", loc, context.Cause(ctx))
		case <-time.After(200*time.Millisecond + rand.N(300*time.Millisecond)):
		}
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lease.Keep(l.Redis, key, owner, ttl, stop, func(err error) { cancel(fmt.Errorf("%w: %w", errLeaseLost, err)) })
	}()
	release := func() {
		close(stop)
		<-done
		cancel(context.Canceled)
		releaseLockScript.Run(context.WithoutCancel(ctx), l.Redis, []string{key}, owner)
	}
	return runCtx, release, nil
}
