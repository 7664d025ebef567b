package tasks

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
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

var (
	renewLockScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseLockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

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
	b := make([]byte, 12)
	crand.Read(b)
	owner := hex.EncodeToString(b)
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
		l.renew(key, owner, ttl, stop, cancel)
	}()
	release := func() {
		close(stop)
		<-done
		cancel(context.Canceled)
		releaseLockScript.Run(context.WithoutCancel(ctx), l.Redis, []string{key}, owner)
	}
	return runCtx, release, nil
}

// renew keeps the lease until stop is closed, and cancels the run when it
// is taken by someone else or not confirmed for ttl/2.
func (l *RedisLocks) renew(key, owner string, ttl time.Duration, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	confirmed := time.Now()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, done := context.WithTimeout(context.Background(), ttl/4)
		n, err := renewLockScript.Run(ctx, l.Redis, []string{key}, owner, ms).Int()
		done()
		switch {
		case err == nil && n == 1:
			confirmed = time.Now()
		case err == nil:
			cancel(fmt.Errorf("%w: another run holds it", errLeaseLost))
			return
		case time.Since(confirmed) > ttl/2:
			cancel(fmt.Errorf("%w: cannot renew it: %v", errLeaseLost, err))
			return
		}
	}
}
